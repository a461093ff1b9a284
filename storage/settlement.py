"""Settling a job's reservation: commit what was delivered, refund the rest, once per job.

Used alone (QuotaStore.commit/refund) and inside a job's state transition (storage.job_transitions).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from storage.ledger import insert_entry
from storage.models import InvalidSettingError, JobNotFoundError, LedgerKind
from storage.validate import is_whole

# How a reservation is settled, as SET clauses: the UPDATE that settles it carries
# "AND settled = 0", so it settles a job at most once, and returns the row the ledger entries
# are written from. A transition into DELIVERED (or CANCELLED, ...) puts these in its own UPDATE.
SETTLE_COMMIT = "settled = 1, committed = coalesce(?, cost), refunded = cost - coalesce(?, cost)"
SETTLE_REFUND = "settled = 1, refunded = cost"


def fetch_one(cursor: sqlite3.Cursor) -> sqlite3.Row | None:
    # fetchall() steps the statement to its end, so an UPDATE/INSERT ... RETURNING is finished
    # before the next statement or the COMMIT.
    rows = cursor.fetchall()
    return rows[0] if rows else None


def check_delivered_cost(delivered_cost: int | None) -> None:
    """The part of the check that needs no job: a whole number of 0 or more, or None."""
    if delivered_cost is None:
        return
    if not is_whole(delivered_cost):
        raise InvalidSettingError("delivered_cost", "must be a whole number")
    if delivered_cost < 0:
        raise InvalidSettingError("delivered_cost", "must be 0 or more")


def record_settlement(conn: sqlite3.Connection, job: sqlite3.Row, at: str) -> None:
    """The ledger entries of a reservation just settled; ``job`` is its row after the UPDATE.

    Raises (so the caller's transaction rolls back) if more was committed than reserved.
    """
    cost, committed, refunded = job["cost"], job["committed"], job["refunded"]
    if committed is not None and committed > cost:
        raise InvalidSettingError("delivered_cost", f"must be from 0 to the job's cost ({cost})")
    scope = {"user_id": job["user_id"], "guild_id": job["guild_id"], "day": job["quota_day"]}
    if committed is not None:
        insert_entry(conn, LedgerKind.COMMIT, amount=committed, at=at, job_id=job["id"], **scope)
    if refunded:
        insert_entry(conn, LedgerKind.REFUND, amount=refunded, at=at, job_id=job["id"], **scope)


def apply_settlement(
    conn: sqlite3.Connection, sql: str, args: Sequence[Any], at: str
) -> sqlite3.Row | None:
    """Run an ``UPDATE jobs ... RETURNING *`` that settles (SETTLE_COMMIT or SETTLE_REFUND, only
    while ``settled = 0``) and write its ledger entries; the job's new row, or None if it matched
    nothing (no such job, or already settled)."""
    row = fetch_one(conn.execute(sql, args))
    if row is not None:
        record_settlement(conn, row, at)
    return row


def _require_job(conn: sqlite3.Connection, job_id: str) -> None:
    if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
        raise JobNotFoundError(job_id)


def settle_commit(
    conn: sqlite3.Connection, job_id: str, delivered_cost: int | None, at: str
) -> bool:
    """Commit ``delivered_cost`` (default: the full cost) and refund the rest, once per job.

    False (and nothing changes) if the reservation was already settled.
    """
    check_delivered_cost(delivered_cost)
    row = apply_settlement(
        conn,
        f"UPDATE jobs SET {SETTLE_COMMIT} WHERE id = ? AND settled = 0 RETURNING *",
        (delivered_cost, delivered_cost, job_id),
        at,
    )
    if row is None:
        _require_job(conn, job_id)
        return False
    return True


# A delivered job not yet refunded after delivery, and whether a reset of its day came after its
# commit (and so already gave the committed credits back). The reset lookup is a range scan of
# ledger_by_user.
_AFTER_DELIVERY_SQL = """
SELECT j.user_id, j.guild_id, j.quota_day, j.committed,
    EXISTS (
        SELECT 1 FROM ledger AS r
        WHERE r.user_id = j.user_id AND r.guild_id IS j.guild_id AND r.id > c.id
            AND r.kind = 'reset' AND r.day = j.quota_day
    ) AS forgiven
FROM jobs AS j JOIN ledger AS c ON c.job_id = j.id AND c.kind = 'commit'
WHERE j.id = ? AND j.committed > 0 AND j.refunded < j.cost
"""


def settle_refund(conn: sqlite3.Connection, job_id: str, at: str) -> bool:
    """Refund an unsettled reservation in full, or a delivered job's committed credits; once.

    False if nothing was left to refund (including credits a reset already gave back).
    """
    sql = f"UPDATE jobs SET {SETTLE_REFUND} WHERE id = ? AND settled = 0 RETURNING *"
    if apply_settlement(conn, sql, (job_id,), at) is not None:
        return True
    row = conn.execute(_AFTER_DELIVERY_SQL, (job_id,)).fetchone()
    if row is None:
        _require_job(conn, job_id)
        return False
    if row["forgiven"]:
        return False
    conn.execute("UPDATE jobs SET refunded = cost WHERE id = ?", (job_id,))
    # After delivery: the member gets the credits back; the caps keep counting them, since
    # RunComfy was paid for the job.
    insert_entry(
        conn,
        LedgerKind.REFUND,
        user_id=row["user_id"],
        guild_id=row["guild_id"],
        day=row["quota_day"],
        amount=row["committed"],
        at=at,
        job_id=job_id,
        reason="refund after delivery",
        counts_toward_caps=False,
    )
    return True
