"""The quota ledger's entries: appending them, reading them back, and auditing the books.

Entries are append-only; triggers on the insert keep the per-day counters (see storage.quota).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from storage.clock import from_db, quota_day, to_db
from storage.models import LedgerEntry, LedgerKind

_INSERT_LEDGER = """
INSERT INTO ledger
    (kind, user_id, guild_id, day, amount, job_id, actor_id, reason, counts_toward_caps, at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id
"""


def insert_entry(
    conn: sqlite3.Connection,
    kind: LedgerKind,
    *,
    user_id: int,
    guild_id: int | None,
    day: str,
    amount: int,
    at: str,
    job_id: str | None = None,
    actor_id: int | None = None,
    reason: str | None = None,
    counts_toward_caps: bool = True,
) -> int:
    """Append an entry (``at`` as stored text); returns its id. Triggers update the counters."""
    cursor = conn.execute(
        _INSERT_LEDGER,
        (
            kind.value,
            user_id,
            guild_id,
            day,
            amount,
            job_id,
            actor_id,
            reason,
            int(counts_toward_caps),
            at,
        ),
    )
    return cursor.fetchone()[0]


def entry_from_row(row: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(
        id=row["id"],
        kind=LedgerKind(row["kind"]),
        user_id=row["user_id"],
        guild_id=row["guild_id"],
        amount=row["amount"],
        job_id=row["job_id"],
        actor_id=row["actor_id"],
        reason=row["reason"],
        at=from_db(row["at"]),
    )


def admin_entry(
    conn: sqlite3.Connection,
    kind: LedgerKind,
    at: datetime,
    *,
    user_id: int,
    guild_id: int | None,
    amount: int,
    actor_id: int,
    reason: str | None,
) -> LedgerEntry:
    """Append an admin's act (grant, reset) on ``at``'s UTC day and return it as stored.

    Such an entry is tied to no job and raises a member's allowance, never a cap.
    """
    entry_id = insert_entry(
        conn,
        kind,
        user_id=user_id,
        guild_id=guild_id,
        day=quota_day(at),
        amount=amount,
        at=to_db(at),
        actor_id=actor_id,
        reason=reason,
        counts_toward_caps=False,
    )
    return entry_from_row(conn.execute("SELECT * FROM ledger WHERE id = ?", (entry_id,)).fetchone())


# Each counter row must equal its ledger sum, and each job's entries must match its cost.
_AUDIT_SQL = (
    (
        "user_day differs from the ledger",
        """
        WITH sums AS (
            SELECT day, coalesce(guild_id, 0) AS guild_key, user_id,
                sum(CASE kind WHEN 'reserve' THEN amount WHEN 'refund' THEN -amount ELSE 0 END),
                sum(CASE kind WHEN 'grant' THEN amount ELSE 0 END),
                sum(CASE kind WHEN 'reset' THEN amount ELSE 0 END)
            FROM ledger WHERE kind <> 'commit' GROUP BY 1, 2, 3
        )
        SELECT * FROM (SELECT * FROM sums EXCEPT SELECT * FROM user_day) AS a
        UNION ALL SELECT * FROM (SELECT * FROM user_day EXCEPT SELECT * FROM sums) AS b
        """,
    ),
    (
        "guild_day differs from the ledger",
        """
        WITH sums AS (
            SELECT day, coalesce(guild_id, 0) AS guild_key,
                sum(CASE kind WHEN 'reserve' THEN amount ELSE -amount END)
            FROM ledger WHERE counts_toward_caps <> 0 AND kind IN ('reserve', 'refund')
            GROUP BY 1, 2
        )
        SELECT * FROM (SELECT * FROM sums EXCEPT SELECT * FROM guild_day) AS a
        UNION ALL SELECT * FROM (SELECT * FROM guild_day EXCEPT SELECT * FROM sums) AS b
        """,
    ),
    (
        "global_day differs from the ledger",
        """
        WITH sums AS (
            SELECT day, sum(CASE kind WHEN 'reserve' THEN amount ELSE -amount END)
            FROM ledger WHERE counts_toward_caps <> 0 AND kind IN ('reserve', 'refund') GROUP BY 1
        )
        SELECT * FROM (SELECT * FROM sums EXCEPT SELECT * FROM global_day) AS a
        UNION ALL SELECT * FROM (SELECT * FROM global_day EXCEPT SELECT * FROM sums) AS b
        """,
    ),
    (
        # A reset forgives only credits still counted, so this means a double credit.
        "a member's day was given back more credits than it used",
        "SELECT day, guild_key, user_id, used, forgiven FROM user_day WHERE forgiven > used",
    ),
    (
        "a job's ledger entries do not match its cost and settlement",
        """
        SELECT j.id, j.cost, j.settled, j.committed, j.refunded,
            e.reserved, e.committed AS commit_entry, e.refunded AS refund_entries
        FROM jobs AS j
        LEFT JOIN (
            SELECT job_id,
                sum(CASE kind WHEN 'reserve' THEN amount END) AS reserved,
                sum(CASE kind WHEN 'commit' THEN amount END) AS committed,
                coalesce(sum(CASE kind WHEN 'refund' THEN amount END), 0) AS refunded
            FROM ledger WHERE job_id IS NOT NULL GROUP BY job_id
        ) AS e ON e.job_id = j.id
        WHERE e.reserved IS NOT j.cost
            OR e.committed IS NOT j.committed
            OR e.refunded IS NOT j.refunded
            OR (j.settled <> 0 AND j.refunded NOT IN (j.cost - coalesce(j.committed, 0), j.cost))
            OR (j.settled = 0 AND (j.committed IS NOT NULL OR j.refunded <> 0))
        """,
    ),
)


def audit(conn: sqlite3.Connection, *, limit: int = 20) -> list[str]:
    """The discrepancies in the books (at most ``limit`` per check); [] when they balance."""
    problems = []
    for what, sql in _AUDIT_SQL:
        for row in conn.execute(sql).fetchmany(limit):
            problems.append(f"{what}: {tuple(row)}")
    return problems
