"""Job leases: which bot process runs which unfinished job, for how long without renewing.

At start-up a process claims the unfinished jobs that are unleased, leased to it before (its
previous run: the same owner name, which only one live process can have) or whose lease has
expired; while it runs it takes over jobs whose holder's lease expired (it died or stalled) and
renews its own leases well before they expire. On PostgreSQL the
claim locks the rows it takes with ``FOR UPDATE SKIP LOCKED``: processes claiming at once never
wait for each other's rows, and each job goes to exactly one of them. On SQLite one process
holds every lease (the lock file keeps a second one out).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import datetime, timedelta

from storage.clock import Clock, to_db
from storage.db import Database
from storage.job_rows import job_from_row
from storage.migrations import UNFINISHED
from storage.models import Job, JobState

_CLAIM_SQL = f"""
UPDATE jobs SET lease_owner = :owner, lease_until = :until
WHERE id IN (
    SELECT id FROM jobs
    WHERE {UNFINISHED} AND ({{whose}})
    ORDER BY created_at LIMIT :limit{{lock}}
)
RETURNING *
"""
_START = "lease_owner IS NULL OR lease_owner = :owner OR lease_until < :now"
_TAKEOVER = "lease_owner <> :owner AND lease_until < :now"
_LOCK = {"sqlite": "", "postgresql": " FOR UPDATE SKIP LOCKED"}


class LeaseStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def until(self, ttl: timedelta) -> datetime:
        return self._clock() + ttl

    async def claim(
        self, owner: str, ttl: timedelta, *, takeover: bool = False, limit: int = 500
    ) -> list[Job]:
        """Lease to ``owner`` the jobs it may run, oldest first: at start-up (see the module
        docstring), or with ``takeover`` only those another process let expire."""
        now = self._clock()
        args = {"owner": owner, "until": to_db(now + ttl), "now": to_db(now), "limit": limit}
        sql = _CLAIM_SQL.format(
            whose=_TAKEOVER if takeover else _START, lock=_LOCK[self._db.dialect]
        )

        def run(conn: sqlite3.Connection) -> list[Job]:
            return [job_from_row(r) for r in conn.execute(sql, args).fetchall()]

        jobs = await self._db.write(run, what="claiming jobs")
        return sorted(jobs, key=lambda j: j.created_at)

    async def renew(self, owner: str, ttl: timedelta) -> int:
        """Extend every lease ``owner`` holds on an unfinished job; how many."""
        until = to_db(self._clock() + ttl)
        sql = f"UPDATE jobs SET lease_until = ? WHERE lease_owner = ? AND {UNFINISHED}"
        return await self._db.write(
            lambda c: c.execute(sql, (until, owner)).rowcount, what="renewing leases"
        )

    async def release(self, owner: str) -> int:
        """Let any process take ``owner``'s unfinished jobs now (a clean stop)."""
        sql = f"UPDATE jobs SET lease_until = ? WHERE lease_owner = ? AND {UNFINISHED}"
        now = to_db(self._clock())
        return await self._db.write(
            lambda c: c.execute(sql, (now, owner)).rowcount, what="releasing leases"
        )

    async def holders(self, job_ids: Collection[str]) -> dict[str, tuple[JobState, str | None]]:
        """Each job's state and lease holder (jobs that no longer exist are left out)."""
        ids = list(job_ids)
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        sql = f"SELECT id, state, lease_owner FROM jobs WHERE id IN ({marks})"
        rows = await self._db.query(lambda c: c.execute(sql, ids).fetchall())
        return {r["id"]: (JobState(r["state"]), r["lease_owner"]) for r in rows}
