"""The job ledger: every job from request to delivery, with a record of each state it entered.

A job's row is written before each side effect, so after a restart the bot can tell what
happened. :meth:`JobStore.create_reserved` holds the credits and writes the job in one
transaction; :meth:`JobStore.transition` is a compare-and-set on the state that also commits or
refunds the credits when the job ends, in the same transaction. Terminal states are final unless
the caller names them in ``expected`` (a second DELIVERED is refused, so a job is delivered and
charged once). Each state entered after creation is recorded in ``job_events`` by a database
trigger, so no code path can skip it; the creation itself is the job's ``created_at``.
The reads are in storage.job_queries, the row codec in storage.job_rows.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from storage.clock import Clock, from_db_opt, next_midnight, quota_day, to_db
from storage.db import Database
from storage.job_ids import new_job_id
from storage.job_queries import LAST_CREATED_SQL, MEMBER_IN_FLIGHT_SQL, JobQueries
from storage.job_rows import encode_fields, job_from_row, validate_new
from storage.job_transitions import transition_op
from storage.ledger import insert_entry
from storage.models import (
    CoolingDownError,
    FormAlreadySentError,
    InvalidSettingError,
    Job,
    JobState,
    LedgerKind,
    NewJob,
    StorageError,
    TooManyJobsError,
)
from storage.quota_standing import check_reservation, standing
from storage.settings import QuotaSettings
from storage.settlement import check_delivered_cost, fetch_one
from storage.validate import aware_time, whole

log = logging.getLogger(__name__)

_ID_ATTEMPTS = 8  # a clash of random id halves is retried this often

_INSERT_JOB = """
INSERT INTO jobs (
    id, kind, state, user_id, guild_id, channel_id, prompt, params, cost, quota_day,
    parent_job_id, interaction_token, token_expires_at, age_restricted_channel,
    created_at, updated_at, form_id, locale, acknowledged, lease_owner, lease_until
) VALUES (?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)
ON CONFLICT (id) DO NOTHING
"""

ABANDONED_ERROR = "the request was cancelled before its job was handed back; credits refunded"


class JobStore(JobQueries):
    def __init__(self, db: Database, settings: QuotaSettings, clock: Clock) -> None:
        super().__init__(db)
        self._settings = settings
        self._clock = clock

    async def create_reserved(
        self,
        new: NewJob,
        *,
        role_ids: Collection[int] = (),
        now: datetime | None = None,
        max_in_flight: int | None = None,
        cooldown: timedelta | None = None,
        lease: tuple[str, timedelta] | None = None,
    ) -> Job:
        """Hold the job's credits and write it (state RESERVED), in one transaction.

        Resolves the member's daily limit (see storage.quota), checks it, the guild daily cap and
        the global daily cap: QuotaExceededError names the limit passed. With ``max_in_flight``,
        also refuses (TooManyJobsError) when the member already has that many unfinished jobs in
        this guild (None: DMs), atomically, so a double click cannot slip past it. With
        ``cooldown``, refuses (CoolingDownError) when the member's last job here is more recent.

        If the caller is cancelled while this runs, either nothing was written, or the job was
        written and is then failed at once with its credits refunded (``ABANDONED_ERROR``), so
        a job nobody knows about never holds the member's credits or in-flight slot.

        ``lease`` (owner, time to live): the job is born leased to the process that will run it,
        so no other process takes it over (storage.leases).
        """
        kind, params, token_expires_at = validate_new(new)
        if max_in_flight is not None:
            whole("max_in_flight", max_in_flight, 1)
        now = aware_time("now", now or self._clock())
        day = quota_day(now)
        created = to_db(now)
        lease_owner, lease_until = (lease[0], to_db(now + lease[1])) if lease else (None, None)

        def run(conn: sqlite3.Connection) -> str:
            if new.form_id is not None:
                sent = conn.execute("SELECT id FROM jobs WHERE form_id = ?", (new.form_id,))
                found = sent.fetchone()
                if found is not None:
                    raise FormAlreadySentError(found[0])
            if max_in_flight is not None:
                in_flight = conn.execute(
                    MEMBER_IN_FLIGHT_SQL, (new.user_id, new.guild_id)
                ).fetchone()[0]
                if in_flight >= max_in_flight:
                    raise TooManyJobsError(in_flight=in_flight, allowed=max_in_flight)
            if cooldown is not None:
                last = from_db_opt(
                    conn.execute(LAST_CREATED_SQL, (new.user_id, new.guild_id)).fetchone()[0]
                )
                if last is not None and last + cooldown > now:
                    raise CoolingDownError(last_at=last)
            s = standing(conn, self._settings, new.user_id, new.guild_id, day, role_ids)
            check_reservation(s, new.cost, next_midnight(now))
            if (
                new.parent_job_id is not None
                and not conn.execute(
                    "SELECT 1 FROM jobs WHERE id = ?", (new.parent_job_id,)
                ).fetchone()
            ):
                raise InvalidSettingError("parent_job_id", f"no job with id {new.parent_job_id!r}")
            for _ in range(_ID_ATTEMPTS):
                job_id = new_job_id(now)
                inserted = conn.execute(
                    _INSERT_JOB,
                    (
                        job_id,
                        kind.value,
                        new.user_id,
                        new.guild_id,
                        new.channel_id,
                        new.prompt,
                        params,
                        new.cost,
                        day,
                        new.parent_job_id,
                        new.interaction_token,
                        token_expires_at,
                        int(new.age_restricted_channel),
                        created,
                        created,
                        new.form_id,
                        new.locale,
                        lease_owner,
                        lease_until,
                    ),
                ).rowcount
                if inserted:
                    break
            else:
                raise StorageError("could not allocate an unused job id")
            insert_entry(
                conn,
                LedgerKind.RESERVE,
                user_id=new.user_id,
                guild_id=new.guild_id,
                day=day,
                amount=new.cost,
                at=created,
                job_id=job_id,
            )
            return job_id

        def release(job_id: str) -> Callable[[sqlite3.Connection], Any]:
            log.warning(
                "job %s: its request was cancelled while it was reserved; releasing", job_id
            )
            failed = {"error": ABANDONED_ERROR}
            return transition_op(job_id, JobState.FAILED, (JobState.RESERVED,), failed, created)

        # The Job is built here, on the event loop, while the database thread runs other writes.
        job_id = await self._db.write(
            run, undo=release, what=f"a reservation for user {new.user_id}"
        )
        return Job(
            id=job_id,
            kind=kind,
            state=JobState.RESERVED,
            user_id=new.user_id,
            guild_id=new.guild_id,
            channel_id=new.channel_id,
            prompt=new.prompt,
            params=json.loads(params),  # the stored copy, not the caller's dict
            cost=new.cost,
            created_at=now,
            updated_at=now,
            parent_job_id=new.parent_job_id,
            interaction_token=new.interaction_token,
            token_expires_at=from_db_opt(token_expires_at),
            age_restricted_channel=new.age_restricted_channel,
            acknowledged=False,
        )

    async def transition(
        self,
        job_id: str,
        to: JobState,
        *,
        expected: Collection[JobState] | None = None,
        delivered_cost: int | None = None,
        **fields: Any,
    ) -> Job | None:
        """Compare-and-set the state; None (nothing changed) if the job is not in ``expected``.

        ``expected`` None means any unfinished state. Entering DELIVERED commits
        ``delivered_cost`` (default: the full cost) and refunds the rest; entering CANCELLED,
        FAILED or REJECTED refunds; both in this transaction and at most once per job. Leaving
        DELIVERED for REJECTED (named in ``expected``) refunds the committed credits, like
        QuotaStore.refund. ``fields`` (request_id, error, result_urls, status_message_id,
        result_message_id, log_message_id, interaction_token, token_expires_at) are written
        with the state.
        """
        to = JobState(to)
        encoded = encode_fields(fields)
        if delivered_cost is not None and to is not JobState.DELIVERED:
            raise InvalidSettingError("delivered_cost", "only applies to DELIVERED")
        check_delivered_cost(delivered_cost)
        states = None if expected is None else tuple(JobState(s) for s in expected)
        if states == ():
            return None
        at = to_db(self._clock())
        row = await self._db.write(transition_op(job_id, to, states, encoded, at, delivered_cost))
        return None if row is None else job_from_row(row)

    async def set_fields(self, job_id: str, **fields: Any) -> Job | None:
        """Write fields without changing the state; None if there is no such job."""
        encoded = encode_fields(fields)
        at = to_db(self._clock())
        assignments = "".join(f", {name} = ?" for name in encoded)
        sql = f"UPDATE jobs SET updated_at = ?{assignments} WHERE id = ? RETURNING *"

        def run(conn: sqlite3.Connection) -> Job | None:
            row = fetch_one(conn.execute(sql, (at, *encoded.values(), job_id)))
            return None if row is None else job_from_row(row)

        return await self._db.write(run)
