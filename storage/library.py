"""What members keep of their results: named references, favourites, and the history queries.

A reference is a result's image kept by (job id, image index), never by URL: Discord's
attachment URLs expire, so a fresh one is read when the reference is used. History and
favourites read delivered jobs (index jobs_delivered_by_guild), newest first, a page at a time.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from storage.clock import Clock, from_db, to_db
from storage.db import Database
from storage.job_rows import job_from_row
from storage.models import Job
from storage.validate import snowflake

# A removed result keeps state 'delivered' but loses its message (services/moderation).
_SHOWN = "state = 'delivered' AND result_message_id IS NOT NULL"


@dataclass(frozen=True, slots=True)
class Reference:
    user_id: int
    guild_key: int  # the guild id, 0 for DMs
    name: str
    job_id: str
    image_index: int  # 0-based, in the job's result_urls
    created_at: datetime


class Saved(enum.StrEnum):
    ADDED = "added"
    FULL = "full"  # the member already has the most references allowed
    TAKEN = "taken"  # the member already has a reference of that name


def guild_key(guild_id: int | None) -> int:
    return 0 if guild_id is None else guild_id


def _reference(row: sqlite3.Row) -> Reference:
    return Reference(
        user_id=row["user_id"],
        guild_key=row["guild_key"],
        name=row["name"],
        job_id=row["job_id"],
        image_index=row["image_index"],
        created_at=from_db(row["created_at"]),
    )


class LibraryStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # -- references ---------------------------------------------------------------------------

    async def references(self, user_id: int, guild_id: int | None) -> list[Reference]:
        """The member's references in this server (None: DMs), oldest first."""
        key = guild_key(guild_id)

        def run(conn: sqlite3.Connection) -> list[Reference]:
            rows = conn.execute(
                "SELECT * FROM member_references WHERE user_id = ? AND guild_key = ?"
                " ORDER BY created_at, name",
                (user_id, key),
            ).fetchall()
            return [_reference(r) for r in rows]

        return await self._db.query(run)

    async def add_reference(
        self,
        user_id: int,
        guild_id: int | None,
        name: str,
        job_id: str,
        image_index: int,
        *,
        limit: int,
    ) -> Saved:
        """Keep image ``image_index`` of ``job_id`` as ``name`` unless the set is full or the
        name (compared case-insensitively) is taken; checked and written in one step."""
        snowflake("user_id", user_id)
        key = guild_key(guild_id)
        at = to_db(self._clock())

        def run(conn: sqlite3.Connection) -> Saved:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM member_references WHERE user_id = ? AND guild_key = ?",
                    (user_id, key),
                ).fetchall()
            ]
            if name.casefold() in (n.casefold() for n in names):
                return Saved.TAKEN
            if len(names) >= limit:
                return Saved.FULL
            conn.execute(
                "INSERT INTO member_references"
                " (user_id, guild_key, name, job_id, image_index, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, key, name, job_id, image_index, at),
            )
            return Saved.ADDED

        return await self._db.write(run, what="saving a reference")

    async def remove_reference(self, user_id: int, guild_id: int | None, name: str) -> bool:
        key = guild_key(guild_id)

        def run(conn: sqlite3.Connection) -> bool:
            # Compared like add_reference does (SQLite's NOCASE folds ASCII letters only).
            names = conn.execute(
                "SELECT name FROM member_references WHERE user_id = ? AND guild_key = ?",
                (user_id, key),
            ).fetchall()
            found = [r[0] for r in names if r[0].casefold() == name.casefold()]
            for stored in found:
                conn.execute(
                    "DELETE FROM member_references WHERE user_id = ? AND guild_key = ?"
                    " AND name = ?",
                    (user_id, key, stored),
                )
            return bool(found)

        return await self._db.write(run, what="removing a reference")

    # -- favourites ---------------------------------------------------------------------------

    async def toggle_favourite(self, user_id: int, job_id: str) -> bool:
        """Add the job to the member's favourites, or take it out if it was one; True: added."""
        snowflake("user_id", user_id)
        at = to_db(self._clock())

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM favourites WHERE user_id = ? AND job_id = ?", (user_id, job_id)
            )
            if cursor.rowcount:
                return False
            conn.execute(
                "INSERT INTO favourites (user_id, job_id, created_at) VALUES (?, ?, ?)",
                (user_id, job_id, at),
            )
            return True

        return await self._db.write(run, what="saving a favourite")

    async def is_favourite(self, user_id: int, job_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            found = conn.execute(
                "SELECT 1 FROM favourites WHERE user_id = ? AND job_id = ?", (user_id, job_id)
            ).fetchone()
            return found is not None

        return await self._db.read(run)

    async def favourites(
        self, user_id: int, guild_id: int | None, *, offset: int, limit: int
    ) -> tuple[list[Job], int]:
        """The member's favourite results shown in this server, latest favourite first, and
        how many there are in all."""
        where = (
            "f.user_id = ? AND j.guild_id IS ? AND j.state = 'delivered'"
            " AND j.result_message_id IS NOT NULL"
        )
        args = (user_id, guild_id)

        def run(conn: sqlite3.Connection) -> tuple[list[Job], int]:
            rows = conn.execute(
                f"SELECT j.* FROM favourites f JOIN jobs j ON j.id = f.job_id WHERE {where}"
                " ORDER BY f.created_at DESC, j.id LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            total = conn.execute(
                f"SELECT count(*) FROM favourites f JOIN jobs j ON j.id = f.job_id WHERE {where}",
                args,
            ).fetchone()[0]
            return [job_from_row(r) for r in rows], total

        return await self._db.read(run)

    # -- history ------------------------------------------------------------------------------

    async def delivered(
        self,
        guild_id: int | None,
        *,
        user_id: int | None,
        include_removed: bool,
        offset: int,
        limit: int,
    ) -> tuple[list[Job], int]:
        """Delivered results in this server (None: DMs), of one member or all, newest first,
        and how many there are in all. ``include_removed``: also those a moderator removed."""
        where = "guild_id IS ? AND " + ("state = 'delivered'" if include_removed else _SHOWN)
        args: tuple[object, ...] = (guild_id,)
        if user_id is not None:
            where += " AND user_id = ?"
            args += (user_id,)

        def run(conn: sqlite3.Connection) -> tuple[list[Job], int]:
            rows = conn.execute(
                f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC, id DESC"
                " LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            total = conn.execute(f"SELECT count(*) FROM jobs WHERE {where}", args).fetchone()[0]
            return [job_from_row(r) for r in rows], total

        return await self._db.read(run)
