"""Learned job-duration estimates, kept across restarts: one JSON object per timing key.

The values are whatever the RunComfy client exports (plain data); this store neither reads nor
checks their fields, the client does when it loads them. A row that is not a JSON object is
skipped on load, so a damaged row costs a cold start for that key, never a failed start-up.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from storage.clock import Clock, to_db
from storage.db import Database

MAX_KEYS = 1000  # far more than models x resolutions x counts; bounds a runaway caller


class EstimateStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def load(self) -> dict[str, dict[str, Any]]:
        """Every stored estimate by key."""
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT key, estimate FROM timing_estimates ORDER BY key LIMIT ?", (MAX_KEYS,)
            ).fetchall()
        )
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            try:
                value = json.loads(row["estimate"])
            except ValueError:
                continue
            if isinstance(value, dict):
                out[row["key"]] = value
        return out

    async def save(self, estimates: Mapping[str, Mapping[str, Any]]) -> None:
        """Insert or replace these keys' estimates (others stay), in one write."""
        at = to_db(self._clock())
        rows = [
            (str(key), json.dumps(dict(value), separators=(",", ":"), sort_keys=True), at)
            for key, value in list(estimates.items())[:MAX_KEYS]
        ]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO timing_estimates (key, estimate, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET estimate = excluded.estimate,"
                " updated_at = excluded.updated_at",
                rows,
            )

        if rows:
            await self._db.write(write, what="saving timing estimates")
