"""A job's state change as one compare-and-set UPDATE, settling its credits when it ends.

Built here, run on the database thread by JobStore.transition (and by create_reserved's undo).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from typing import Any

from storage.migrations import UNFINISHED
from storage.models import JobState
from storage.settlement import (
    SETTLE_COMMIT,
    SETTLE_REFUND,
    apply_settlement,
    fetch_one,
    settle_refund,
)

_REFUNDING = frozenset({JobState.CANCELLED, JobState.FAILED, JobState.REJECTED})


@functools.lru_cache(maxsize=64)
def _transition_sql(fields: tuple[str, ...], states: int | None, settle: str = "") -> str:
    """The compare-and-set UPDATE; ``states`` None: from any unfinished state.

    With ``settle`` (SETTLE_COMMIT or SETTLE_REFUND) the same UPDATE also settles the
    reservation, and only matches a job whose reservation is still open.
    """
    # Column names come from job_rows._FIELDS (checked by encode_fields), never from callers.
    assignments = "".join(f", {name} = ?" for name in fields)
    condition = UNFINISHED if states is None else f"state IN ({', '.join('?' * states)})"
    if settle:
        assignments += f", {settle}"
        condition += " AND settled = 0"
    return (
        f"UPDATE jobs SET state = ?, updated_at = ?{assignments}"
        f" WHERE id = ? AND {condition} RETURNING *"
    )


def transition_op(
    job_id: str,
    to: JobState,
    states: tuple[JobState, ...] | None,
    encoded: dict[str, Any],
    at: str,
    delivered_cost: int | None = None,
) -> Callable[[sqlite3.Connection], sqlite3.Row | None]:
    """The write behind JobStore.transition (arguments already checked); returns the new row.

    Entering DELIVERED settles the reservation as a commit, entering CANCELLED/FAILED/REJECTED as
    a refund, in the same UPDATE (``settled = 0`` in its WHERE makes that happen once per job).
    """
    n_states = None if states is None else len(states)
    head = (to.value, at, *encoded.values())
    tail = (job_id, *(s.value for s in states or ()))
    plain_sql = _transition_sql(tuple(encoded), n_states)
    settle_sql, settle_args = "", ()
    if to is JobState.DELIVERED:
        settle_sql = _transition_sql(tuple(encoded), n_states, SETTLE_COMMIT)
        settle_args = (*head, delivered_cost, delivered_cost, *tail)
    elif to in _REFUNDING:
        settle_sql = _transition_sql(tuple(encoded), n_states, SETTLE_REFUND)
        settle_args = (*head, *tail)

    def run(conn: sqlite3.Connection) -> sqlite3.Row | None:
        if settle_sql:
            # The usual case: the state changes and the reservation settles, in one UPDATE.
            row = apply_settlement(conn, settle_sql, settle_args, at)
            if row is not None:
                return row
        # The job is missing, in another state, or its reservation was settled before.
        row = fetch_one(conn.execute(plain_sql, (*head, *tail)))
        if row is not None and to in _REFUNDING and row["committed"]:
            # Already charged (e.g. rejected after delivery): give the committed credits back
            # (once, and not if a reset already gave them back; see settle_refund).
            settle_refund(conn, job_id, at)
        return row

    return run
