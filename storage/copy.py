"""Moving an install: an SQLite database copied into an empty PostgreSQL database.

Everything is copied (jobs with their history, the ledger, guild policies, role tiers, member
overrides, blocklists, bans, learned timings, members' references, favourites and defaults,
servers' styles) in ONE PostgreSQL transaction, so a failed copy
leaves the target empty. The per-day counters are not copied: the ledger's triggers rebuild them
as its entries arrive, and the audit then checks them against the ledger on both sides. A target
with any row in it is refused. Stop the bot first: the source must not change meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage.pg import PgConnection, redact
from storage.store import Storage

# In an order the foreign keys accept (a job's parent is an older job), each with its ordering.
TABLES: tuple[tuple[str, str], ...] = (
    ("jobs", "rowid"),
    ("job_events", "id"),
    ("ledger", "id"),
    ("guild_policy", "guild_id"),
    ("role_tiers", "guild_id, role_id"),
    ("user_overrides", "guild_id, user_id"),
    ("blocklist", "id"),
    ("bans", "guild_id, user_id"),
    ("timing_estimates", "key"),
    ("member_references", "user_id, guild_key, name"),
    ("favourites", "user_id, job_id"),
    ("member_presets", "user_id"),
    ("guild_styles", "guild_id, name"),
)
# Counters the ledger's triggers keep: rebuilt on the target, never copied.
DERIVED = ("user_day", "guild_day", "global_day")
# Tables whose ids PostgreSQL generates: its sequence continues after the copied ids.
IDENTITY = ("job_events", "ledger", "blocklist")
BATCH = 2000


class CopyRefused(Exception):
    """The copy cannot start; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class CopyReport:
    rows: dict[str, int]
    source_audit: list[str]
    target_audit: list[str]


async def _row_counts(storage: Storage) -> dict[str, int]:
    tables = [t for t, _ in TABLES] + list(DERIVED)

    def run(conn: sqlite3.Connection) -> dict[str, int]:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}

    return await storage.db.read(run)


def _copy_op(source: Path) -> Callable[[PgConnection], dict[str, int]]:
    """The target's write: every table, batch by batch, read from the source file."""

    def run(conn: PgConnection) -> dict[str, int]:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        copied = {}
        try:
            for table, order in TABLES:
                cursor = src.execute(f"SELECT * FROM {table} ORDER BY {order}")
                columns = [d[0] for d in cursor.description]
                sql = (
                    f"INSERT INTO {table} ({', '.join(columns)})"
                    f" VALUES ({', '.join('?' * len(columns))})"
                )
                copied[table] = 0
                while rows := cursor.fetchmany(BATCH):
                    conn.executemany(sql, rows)
                    copied[table] += len(rows)
            for table in IDENTITY:
                conn.script(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                )
        finally:
            src.close()
        return copied

    return run


async def copy_database(source: Path, target_url: str) -> CopyReport:
    """Copy ``source`` (SQLite) into the empty PostgreSQL database at ``target_url``."""
    if not await asyncio.to_thread(source.is_file):
        raise CopyRefused(f"{source}: no such SQLite database")
    async with Storage.open(source) as src, Storage.open(target_url) as dst:
        if dst.dialect != "postgresql":
            raise CopyRefused("--to must be a postgresql:// URL")
        filled = {t: n for t, n in (await _row_counts(dst)).items() if n}
        if filled:
            listed = ", ".join(f"{n} rows in {t}" for t, n in filled.items())
            raise CopyRefused(f"{redact(target_url)} is not empty ({listed}); nothing copied")
        source_audit = await src.quota.audit()
        rows = await dst.db.write(_copy_op(source), what="copying the database")  # type: ignore[arg-type]
        return CopyReport(rows, source_audit, await dst.quota.audit())
