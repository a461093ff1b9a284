"""The job ledger: every job from request to delivery, with a record of each state it entered.

A job's row is written before each side effect, so after a restart the bot can tell what
happened. :meth:`JobStore.create_reserved` holds the credits and writes the job in one
transaction; :meth:`JobStore.transition` is a compare-and-set on the state that also commits or
refunds the credits when the job ends, in the same transaction. Terminal states are final unless
the caller names them in ``expected`` (a second DELIVERED is refused, so a job is delivered and
charged once). Each state entered after creation is recorded in ``job_events`` by a database
trigger, so no code path can skip it; the creation itself is the job's ``created_at``.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from storage.clock import Clock, from_db, from_db_opt, next_midnight, quota_day, to_db, to_db_opt
from storage.db import Database
from storage.migrations import UNFINISHED
from storage.models import (
    FormAlreadySentError,
    GuildStats,
    InvalidSettingError,
    Job,
    JobEvent,
    JobKind,
    JobNotFoundError,
    JobState,
    LedgerKind,
    NewJob,
    StorageError,
    TooManyJobsError,
)
from storage.quota import (
    SETTLE_COMMIT,
    SETTLE_REFUND,
    check_delivered_cost,
    check_reservation,
    fetch_one,
    insert_entry,
    record_settlement,
    settle_refund,
    standing,
)
from storage.settings import QuotaSettings
from storage.validate import aware_time, opt_aware_time, opt_snowflake, opt_text, whole

log = logging.getLogger(__name__)

# Job ids: 10 url-safe characters, 5 from the creation time (seconds) and 5 random (30 bits; a
# clash is retried). The alphabet is in ASCII order, so ids sort by creation time: new rows land
# at the end of every index keyed by job id instead of at random pages, which keeps writes
# cheap however many jobs are stored.
ID_ALPHABET = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 10
_ID_HALF = ID_LENGTH // 2
_ID_ATTEMPTS = 8
MAX_ERROR_LENGTH = 2000
TOP_USERS = 5

_REFUNDING = frozenset({JobState.CANCELLED, JobState.FAILED, JobState.REJECTED})

_INSERT_JOB = """
INSERT INTO jobs (
    id, kind, state, user_id, guild_id, channel_id, prompt, params, cost, quota_day,
    parent_job_id, interaction_token, token_expires_at, age_restricted_channel,
    created_at, updated_at, form_id, acknowledged
) VALUES (?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
ON CONFLICT (id) DO NOTHING
"""


def _opt_error(name: str, value: Any) -> str | None:
    text = opt_text(name, value)
    return None if text is None else text[:MAX_ERROR_LENGTH]


def _urls(name: str, value: Any) -> str:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidSettingError(name, "must be a list of URLs")
    if not all(isinstance(u, str) and u for u in value):
        raise InvalidSettingError(name, "each URL must be non-empty text")
    return _json_list(list(value))


def _opt_time(name: str, value: Any) -> str | None:
    return to_db_opt(opt_aware_time(name, value))


# The columns transition() and set_fields() may change, each with its encoder.
_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "request_id": opt_text,
    "error": _opt_error,
    "result_urls": _urls,
    "status_message_id": opt_snowflake,
    "result_message_id": opt_snowflake,
    "log_message_id": opt_snowflake,
    "interaction_token": opt_text,
    "token_expires_at": _opt_time,
    "acknowledged": lambda name, value: int(bool(value)),
}


def _encode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    encoded = {}
    for name, value in fields.items():
        encoder = _FIELDS.get(name)
        if encoder is None:
            known = ", ".join(_FIELDS)
            raise InvalidSettingError(name, f"not a job field that can be set ({known})")
        encoded[name] = encoder(name, value)
    return encoded


_json_list = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_KINDS = {k.value: k for k in JobKind}
_STATES = {s.value: s for s in JobState}


def job_from_row(row: sqlite3.Row) -> Job:
    urls = row["result_urls"]
    return Job(
        id=row["id"],
        kind=_KINDS[row["kind"]],
        state=_STATES[row["state"]],
        user_id=row["user_id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        prompt=row["prompt"],
        params=json.loads(row["params"]),
        cost=row["cost"],
        created_at=from_db(row["created_at"]),
        updated_at=from_db(row["updated_at"]),
        request_id=row["request_id"],
        parent_job_id=row["parent_job_id"],
        interaction_token=row["interaction_token"],
        token_expires_at=from_db_opt(row["token_expires_at"]),
        status_message_id=row["status_message_id"],
        result_message_id=row["result_message_id"],
        log_message_id=row["log_message_id"],
        error=row["error"],
        result_urls=tuple(json.loads(urls)) if urls != "[]" else (),
        committed=row["committed"],
        age_restricted_channel=bool(row["age_restricted_channel"]),
        acknowledged=bool(row["acknowledged"]),
    )


def _validate_new(new: NewJob) -> tuple[JobKind, str, str | None]:
    """Check what SQL would reject less clearly; returns (kind, params JSON, token expiry)."""
    try:
        kind = JobKind(new.kind)
    except ValueError:
        raise InvalidSettingError("kind", f"must be one of {', '.join(JobKind)}") from None
    for name in ("user_id", "channel_id"):
        if opt_snowflake(name, getattr(new, name)) is None:
            raise InvalidSettingError(name, "is required")
    opt_snowflake("guild_id", new.guild_id)
    whole("cost", new.cost, 0)
    if not isinstance(new.prompt, str):
        raise InvalidSettingError("prompt", "must be text")
    try:
        params = json.dumps(new.params, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidSettingError("params", f"must be JSON-serialisable: {exc}") from exc
    opt_text("interaction_token", new.interaction_token)
    return kind, params, _opt_time("token_expires_at", new.token_expires_at)


# Maps every byte to an alphabet character (256 is a multiple of 64, so each is equally likely).
_RANDOM_CHARS = bytes(ord(ID_ALPHABET[b % 64]) for b in range(256))


@functools.lru_cache(maxsize=4)
def _time_prefix(seconds: int) -> str:
    chars = []
    for _ in range(_ID_HALF):
        seconds, digit = divmod(seconds, 64)
        chars.append(ID_ALPHABET[digit])
    return "".join(reversed(chars))


def new_job_id(now: datetime) -> str:
    random_part = secrets.token_bytes(_ID_HALF).translate(_RANDOM_CHARS).decode("ascii")
    return _time_prefix(int(now.timestamp()) % 64**_ID_HALF) + random_part


@functools.lru_cache(maxsize=64)
def _transition_sql(fields: tuple[str, ...], states: int | None, settle: str = "") -> str:
    """The compare-and-set UPDATE; ``states`` None: from any unfinished state.

    With ``settle`` (SETTLE_COMMIT or SETTLE_REFUND) the same UPDATE also settles the
    reservation, and only matches a job whose reservation is still open.
    """
    # Column names come from _FIELDS (checked by _encode_fields), never from callers' strings.
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
            row = fetch_one(conn.execute(settle_sql, settle_args))
            if row is not None:
                record_settlement(conn, row, at)
                return row
        # The job is missing, in another state, or its reservation was settled before.
        row = fetch_one(conn.execute(plain_sql, (*head, *tail)))
        if row is not None and to in _REFUNDING and row["committed"]:
            # Already charged (e.g. rejected after delivery): give the committed credits back
            # (once, and not if a reset already gave them back; see settle_refund).
            settle_refund(conn, job_id, at)
        return row

    return run


# The member's unfinished jobs in one guild (guild_id None: DMs); index jobs_unfinished_by_member.
# INDEXED BY: a member's few unfinished jobs, never their whole history (SQLite's planner
# picks jobs_by_member once the table has the columns of migration 4).
_MEMBER_IN_FLIGHT_SQL = (
    "SELECT count(*) FROM jobs INDEXED BY jobs_unfinished_by_member"
    f" WHERE {UNFINISHED} AND user_id = ? AND guild_id IS ?"
)

ABANDONED_ERROR = "the request was cancelled before its job was handed back; credits refunded"


class JobStore:
    def __init__(self, db: Database, settings: QuotaSettings, clock: Clock) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock

    async def create_reserved(
        self,
        new: NewJob,
        *,
        role_ids: Collection[int] = (),
        now: datetime | None = None,
        max_in_flight: int | None = None,
    ) -> Job:
        """Hold the job's credits and write it (state RESERVED), in one transaction.

        Resolves the member's daily limit (see storage.quota), checks it, the guild daily cap and
        the global daily cap: QuotaExceededError names the limit passed. With ``max_in_flight``,
        also refuses (TooManyJobsError) when the member already has that many unfinished jobs in
        this guild (None: DMs), atomically, so a double click cannot slip past it.

        If the caller is cancelled while this runs, either nothing was written, or the job was
        written and is then failed at once with its credits refunded (``ABANDONED_ERROR``), so
        a job nobody knows about never holds the member's credits or in-flight slot.
        """
        kind, params, token_expires_at = _validate_new(new)
        if max_in_flight is not None:
            whole("max_in_flight", max_in_flight, 1)
        now = aware_time("now", now or self._clock())
        day = quota_day(now)
        created = to_db(now)

        def run(conn: sqlite3.Connection) -> str:
            if new.form_id is not None:
                sent = conn.execute("SELECT id FROM jobs WHERE form_id = ?", (new.form_id,))
                found = sent.fetchone()
                if found is not None:
                    raise FormAlreadySentError(found[0])
            if max_in_flight is not None:
                in_flight = conn.execute(
                    _MEMBER_IN_FLIGHT_SQL, (new.user_id, new.guild_id)
                ).fetchone()[0]
                if in_flight >= max_in_flight:
                    raise TooManyJobsError(in_flight=in_flight, allowed=max_in_flight)
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

    async def get(self, job_id: str) -> Job | None:
        row = await self._db.query(
            lambda c: c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        )
        return None if row is None else job_from_row(row)

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
        encoded = _encode_fields(fields)
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
        encoded = _encode_fields(fields)
        at = to_db(self._clock())
        assignments = "".join(f", {name} = ?" for name in encoded)
        sql = f"UPDATE jobs SET updated_at = ?{assignments} WHERE id = ? RETURNING *"

        def run(conn: sqlite3.Connection) -> Job | None:
            row = fetch_one(conn.execute(sql, (at, *encoded.values(), job_id)))
            return None if row is None else job_from_row(row)

        return await self._db.write(run)

    async def unfinished(self) -> list[Job]:
        """Every job not in a terminal state, oldest first: what a restart must resume."""

        def run(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                f"SELECT * FROM jobs WHERE {UNFINISHED} ORDER BY created_at, rowid"
            ).fetchall()
            return [job_from_row(r) for r in rows]

        return await self._db.query(run)

    async def recent_for_user(self, user_id: int, *, limit: int = 10) -> list[Job]:
        """The member's latest jobs in any guild or DM, newest first."""

        def run(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (user_id, limit),
            ).fetchall()
            return [job_from_row(r) for r in rows]

        return await self._db.query(run)

    async def member_in_flight(self, user_id: int, guild_id: int | None) -> int:
        """The member's unfinished jobs in one guild (None: in DMs), held ones included."""
        return await self._db.query(
            lambda c: c.execute(_MEMBER_IN_FLIGHT_SQL, (user_id, guild_id)).fetchone()[0]
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
            row = conn.execute(
                "SELECT max(created_at) FROM jobs WHERE user_id = ? AND guild_id IS ?",
                (user_id, guild_id),
            ).fetchone()
            return from_db_opt(row[0])

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
        return [JobEvent(job_id, _STATES[r["state"]], from_db(r["at"])) for r in rows]

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
                    coalesce(sum(state = 'delivered'), 0) AS delivered,
                    coalesce(sum(CASE WHEN state = 'delivered'
                        THEN json_array_length(result_urls) ELSE 0 END), 0) AS images,
                    coalesce(sum(state = 'failed'), 0) AS failed,
                    coalesce(sum(state = 'cancelled'), 0) AS cancelled,
                    coalesce(sum(state = 'rejected'), 0) AS rejected,
                    coalesce(sum({UNFINISHED}), 0) AS in_flight,
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
                GROUP BY user_id HAVING credits > 0
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

    async def require(self, job_id: str) -> Job:
        """Like get(), but a missing job is an error (JobNotFoundError)."""
        job = await self.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job
