"""The storage facade the bot opens once: ``async with Storage.open(target, quota) as storage``.

``target`` is an SQLite file's path, or a ``postgresql://`` URL (several bot processes can share
that database); the same stores, closures and behaviours run on either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from storage.clock import Clock, utc_now
from storage.cluster import ClusterStore
from storage.db import Database, integrity_problems
from storage.estimates import EstimateStore
from storage.jobs import JobStore
from storage.leases import LeaseStore
from storage.library import LibraryStore
from storage.migrations import migrate, refuse_newer
from storage.pg import is_postgres_url
from storage.policy import PolicyStore
from storage.presets import PresetStore, StyleStore
from storage.quota import QuotaStore
from storage.settings import QuotaSettings


class Storage:
    """One database: the job ledger, the quota ledger, guild policy, learned timings."""

    def __init__(
        self,
        db: Database,
        path: Path | str,
        quota: QuotaSettings,
        clock: Clock,
        schema_version: int,
        url: str | None = None,
    ) -> None:
        self.path = path
        self.schema_version = schema_version
        self._db = db
        self.jobs = JobStore(db, quota, clock)
        self.quota = QuotaStore(db, quota, clock)
        self.policy = PolicyStore(db, clock)
        self.estimates = EstimateStore(db, clock)  # job durations the client learned
        self.leases = LeaseStore(db, clock)  # which process runs which job
        self.cluster = ClusterStore(db, url)  # shard and leader locks, job signals
        self.presets = PresetStore(db, clock)  # members' defaults for /imagine and /edit
        self.styles = StyleStore(db, clock)  # servers' named styles
        self.library = LibraryStore(db, clock)  # members' references, favourites, history

    async def ping(self) -> None:
        """One trivial query: the database thread answers (for health checks)."""
        await self._db.query(lambda conn: conn.execute("SELECT 1").fetchone())

    async def integrity_check(self) -> list[str]:
        """SQLite's own check of the file plus foreign keys; [] when all is well."""
        return await self._db.read(integrity_problems)

    @property
    def db(self) -> Database:
        """The connection, for what is built on it (leases, signals, the copy tool)."""
        return self._db

    @property
    def dialect(self) -> str:
        return self._db.dialect

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: str | Path,
        quota: QuotaSettings | None = None,
        *,
        clock: Clock = utc_now,
    ) -> AsyncIterator[Storage]:
        """Open (creating the file and its folder), migrate, and close on exit.

        Raises DatabaseOpenError (a StorageError and an OSError) naming the path if it cannot be
        used (a directory, a folder that cannot be created, not an SQLite file, ...), and
        SchemaTooNewError, before writing anything, if the file comes from a newer version of
        the bot. ``clock`` (timezone-aware UTC ``now``) is for tests that move through days.
        """
        url = str(path) if is_postgres_url(path) else None
        if url is not None:
            db = await Database.connect_postgres(url)
            path = db.path  # the URL without its password
        else:
            path = Path(path)
            db = await Database.connect(path)
        try:
            await db.query(refuse_newer)
            await db.enable_wal()
            _, version = await db.query(migrate)
            yield cls(db, path, quota or QuotaSettings(), clock, version, url)
        finally:
            await db.close()
