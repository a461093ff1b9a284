"""The job ledger's reads: single jobs, what is in flight, a job's history, guild reports.

JobStore (storage.jobs) is this class plus the writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from storage.clock import from_db_opt, to_db
from storage.db import Database
from storage.job_rows import event_from_row, job_from_row
from storage.migrations import UNFINISHED
from storage.models import GuildStats, Job, JobEvent
from storage.validate import aware_time

TOP_USERS = 5

# The member's unfinished jobs in one guild (guild_id None: DMs); index jobs_unfinished_by_member.
# INDEXED BY: a member's few unfinished jobs, never their whole history (SQLite's planner
# picks jobs_by_member once the table has the columns of migration 4).
MEMBER_IN_FLIGHT_SQL = (
    "SELECT count(*) FROM jobs INDEXED BY jobs_unfinished_by_member"
    f" WHERE {UNFINISHED} AND user_id = ? AND guild_id IS ?"
)


LAST_CREATED_SQL = "SELECT max(created_at) FROM jobs WHERE user_id = ? AND guild_id IS ?"


class JobQueries:
    """The reading half of JobStore."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, job_id: str) -> Job | None:
        row = await self._db.query(
            lambda c: c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        )
        return None if row is None else job_from_row(row)

    async def _jobs(self, sql: str, args: Sequence[object] = ()) -> list[Job]:
        def run(conn: sqlite3.Connection) -> list[Job]:
            return [job_from_row(r) for r in conn.execute(sql, args).fetchall()]

        return await self._db.query(run)

    async def unfinished(self) -> list[Job]:
        """Every job not in a terminal state, oldest first: what a restart must resume."""
        return await self._jobs(f"SELECT * FROM jobs WHERE {UNFINISHED} ORDER BY created_at, rowid")

    async def recent_for_user(self, user_id: int, *, limit: int = 10) -> list[Job]:
        """The member's latest jobs in any guild or DM, newest first."""
        return await self._jobs(
            "SELECT * FROM jobs WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (user_id, limit),
        )

    async def member_in_flight(self, user_id: int, guild_id: int | None) -> int:
        """The member's unfinished jobs in one guild (None: in DMs), held ones included."""
        return await self._db.query(
            lambda c: c.execute(MEMBER_IN_FLIGHT_SQL, (user_id, guild_id)).fetchone()[0]
        )

    async def in_flight_count(
        self, *, user_id: int | None = None, guild_id: int | None = None
    ) -> int:
        """Unfinished jobs, optionally of one member and/or one guild (None: not filtered)."""
        index = " INDEXED BY jobs_unfinished_by_member" if user_id is not None else ""
        sql = f"SELECT count(*) FROM jobs{index} WHERE {UNFINISHED}"
        args: list[int] = []
        if user_id is not None:
            sql += " AND user_id = ?"
            args.append(user_id)
        if guild_id is not None:
            # Unary + keeps SQLite from walking the guild's whole history in jobs_by_guild
            # instead of the few unfinished jobs in jobs_unfinished(_by_member).
            sql += " AND +guild_id = ?" if user_id is None else " AND guild_id = ?"
            args.append(guild_id)
        return await self._db.query(lambda c: c.execute(sql, args).fetchone()[0])

    async def last_created_at(self, user_id: int, guild_id: int | None) -> datetime | None:
        """When the member last asked for a job in this guild (None: DMs), for cooldowns."""

        def run(conn: sqlite3.Connection) -> datetime | None:
            return from_db_opt(conn.execute(LAST_CREATED_SQL, (user_id, guild_id)).fetchone()[0])

        return await self._db.query(run)

    async def events(self, job_id: str) -> list[JobEvent]:
        """Each state the job entered and when, in order."""

        def run(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            # The job's creation (always RESERVED) is its first event; the rest are job_events.
            return conn.execute(
                "SELECT 'reserved' AS state, created_at AS at, 0 AS seq FROM jobs WHERE id = ?"
                " UNION ALL SELECT state, at, id FROM job_events WHERE job_id = ?"
                " ORDER BY seq",
                (job_id, job_id),
            ).fetchall()

        rows = await self._db.read(run)
        return [event_from_row(job_id, r) for r in rows]

    async def stats(
        self, guild_id: int | None, since: datetime, *, top: int = TOP_USERS
    ) -> GuildStats:
        """What the guild (None: DMs) generated from ``since`` on, for moderators."""
        since = aware_time("since", since)
        start = to_db(since)

        def run(conn: sqlite3.Connection) -> GuildStats:
            row = conn.execute(
                f"""
                SELECT
                    count(*) AS jobs,
                    count(*) FILTER (WHERE state = 'delivered') AS delivered,
                    coalesce(sum(CASE WHEN state = 'delivered'
                        THEN json_array_length(result_urls) ELSE 0 END), 0) AS images,
                    count(*) FILTER (WHERE state = 'failed') AS failed,
                    count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
                    count(*) FILTER (WHERE state = 'rejected') AS rejected,
                    count(*) FILTER (WHERE {UNFINISHED}) AS in_flight,
                    coalesce(sum(CASE WHEN committed IS NOT NULL
                        THEN cost - refunded ELSE 0 END), 0) AS spent
                FROM jobs WHERE guild_id IS ? AND created_at >= ?
                """,
                (guild_id, start),
            ).fetchone()
            users = conn.execute(
                """
                SELECT user_id, sum(cost - refunded) AS credits FROM jobs
                WHERE guild_id IS ? AND created_at >= ? AND committed IS NOT NULL
                GROUP BY user_id HAVING sum(cost - refunded) > 0
                ORDER BY credits DESC, user_id LIMIT ?
                """,
                (guild_id, start, top),
            ).fetchall()
            return GuildStats(
                guild_id=guild_id,
                since=since,
                jobs=row["jobs"],
                delivered=row["delivered"],
                images_delivered=row["images"],
                failures=row["failed"],
                cancelled=row["cancelled"],
                rejected=row["rejected"],
                in_flight=row["in_flight"],
                credits_spent=row["spent"],
                top_users=tuple((r["user_id"], r["credits"]) for r in users),
            )

        return await self._db.read(run)
