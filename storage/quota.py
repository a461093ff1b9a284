"""The quota ledger: credits reserved, committed, refunded, granted and reset.

Semantics (the contract the rest of the bot relies on):

- Cost: a job costs images x the resolution's weight (QuotaSettings.cost; 1K = 1 per image).
- A member's quota is per guild (``guild_id`` None: DMs) and per UTC day; it resets at UTC
  midnight (``Balance.resets_at``).
- The ledger is append-only (the database refuses UPDATE and DELETE on it); every entry is tied
  to a job (reserve, commit, refund) or to an admin's act (grant, reset: ``actor_id``). Balances
  derive from it: for a member, guild and day, ``used = reserve - refund``,
  ``granted = grant``, ``forgiven = reset`` (commit entries record, they don't move ``used``).
  Running per-day counters (tables ``user_day``, ``guild_day``, ``global_day``) are kept by
  triggers on the ledger insert, in the same transaction, so a reservation reads three rows
  instead of summing history; they always equal the ledger sums (:meth:`QuotaStore.audit`
  checks this).
- A job's entries count against the UTC day of its reservation (``jobs.quota_day``): a job
  reserved at 23:59 and committed or refunded at 00:01 settles yesterday's credits, never
  today's. So the day's counters always equal the day's ledger sums, and a late refund cannot
  raise today's allowance (yesterday's credits lapsed at midnight): no double credit.
- reserve: the full cost, before submitting. commit: what was delivered; the rest of the
  reservation is refunded in the same transaction. refund: the whole reservation when a job is
  cancelled, fails or is rejected. Commit and refund are idempotent per job: once a reservation
  is settled, repeating either changes nothing, so crash recovery may repeat them.
  A refund after delivery (a moderator's Refund, or REJECTED after DELIVERED) gives the
  committed credits back to the member, once; it does not lower the guild or global counters,
  because RunComfy was paid for that job. If a reset of that day came after the commit, the
  reset already gave those credits back, so the refund gives nothing (and returns False):
  a member is never credited twice for one job.
- The member's daily limit: per-user override > the highest of the member's role tiers > the
  guild default > the global default (``QuotaSettings.default_daily_credits``). The first that
  exists wins, even when lower than the next (a tier can restrict). In DMs only the global
  default applies.
- grant(amount): extra credits for today only (``granted``); they lapse at UTC midnight.
- reset_day: gives the member back today's used credits, as a 'reset' entry of the credits
  already settled today. Credits still held by jobs in flight stay held (their own commit or
  refund settles them), so reset credits can never be given back twice.
- A member's ``Balance.used`` is ``max(0, used - forgiven)`` and a reservation of ``cost`` is
  allowed when ``Balance.used + cost <= limit + granted``.
- Caps: the guild daily cap (``GuildPolicy.daily_cap``) and the global daily cap
  (``QuotaSettings.global_daily_cap``) bound the credits spent that day by everyone (reserve -
  refund, except refunds after delivery). Grants and resets raise a member's allowance, never a
  cap.
- A reservation resolves the limit, checks all three limits and writes the job and its
  'reserve' entry in one atomic operation on the single writer (``BEGIN IMMEDIATE``; see
  storage.db), so any number of concurrent reservations can never pass a limit. A refusal raises
  :class:`QuotaExceededError` naming the limit ("daily allowance", "guild daily cap" or "global
  daily cap") and when it frees (the next UTC midnight).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from storage.clock import Clock, from_db, next_midnight, quota_day, to_db
from storage.db import Database
from storage.migrations import UNFINISHED
from storage.models import (
    Balance,
    InvalidSettingError,
    JobNotFoundError,
    LedgerEntry,
    LedgerKind,
    QuotaExceededError,
)
from storage.settings import QuotaSettings
from storage.validate import aware_time, is_whole, opt_snowflake, snowflake, whole

DAILY_ALLOWANCE = "daily allowance"
GUILD_CAP = "guild daily cap"
GLOBAL_CAP = "global daily cap"

SOURCE_OVERRIDE = "user override"
SOURCE_TIER = "role tier"
SOURCE_GUILD = "guild default"
SOURCE_GLOBAL = "global default"

# Everything a reservation or a balance needs, in one statement. guild_key 0 is a DM.
_TIER_SQL = """(SELECT max(credits) FROM role_tiers
        WHERE guild_id = :g AND role_id IN (SELECT value FROM json_each(:roles)))"""
_LIMITS_SQL = """
SELECT
    (SELECT credits FROM user_overrides WHERE guild_id = :g AND user_id = :u) AS override,
    {tier} AS tier,
    gp.default_daily_credits AS guild_default,
    gp.daily_cap AS guild_cap,
    coalesce(ud.used, 0) AS used,
    coalesce(ud.granted, 0) AS granted,
    coalesce(ud.forgiven, 0) AS forgiven,
    coalesce(gd.used, 0) AS guild_used,
    coalesce(gl.used, 0) AS global_used
FROM (SELECT 1)
LEFT JOIN guild_policy AS gp ON gp.guild_id = :g
LEFT JOIN user_day AS ud ON ud.day = :d AND ud.guild_key = :gk AND ud.user_id = :u
LEFT JOIN guild_day AS gd ON gd.day = :d AND gd.guild_key = :gk
LEFT JOIN global_day AS gl ON gl.day = :d
"""
# A member without roles (or in DMs) has no tier: skip that lookup.
_LIMITS_WITH_TIERS_SQL = _LIMITS_SQL.format(tier=_TIER_SQL)
_LIMITS_WITHOUT_TIERS_SQL = _LIMITS_SQL.format(tier="NULL")


@dataclass(frozen=True, slots=True)
class Standing:
    """A member's day, resolved: the inputs of every quota decision."""

    limit: int
    limit_source: str
    used: int  # max(0, used - forgiven)
    granted: int
    guild_cap: int | None
    guild_used: int
    global_cap: int | None
    global_used: int

    @property
    def allowance(self) -> int:
        return self.limit + self.granted


def _roles_json(role_ids: Collection[int]) -> str:
    return "[" + ",".join(str(int(r)) for r in role_ids) + "]"


def standing(
    conn: sqlite3.Connection,
    settings: QuotaSettings,
    user_id: int,
    guild_id: int | None,
    day: str,
    role_ids: Collection[int],
) -> Standing:
    params: dict[str, object] = {"g": guild_id, "gk": guild_id or 0, "u": user_id, "d": day}
    if role_ids and guild_id is not None:
        params["roles"] = _roles_json(role_ids)
        row = conn.execute(_LIMITS_WITH_TIERS_SQL, params).fetchone()
    else:
        row = conn.execute(_LIMITS_WITHOUT_TIERS_SQL, params).fetchone()
    if row["override"] is not None:
        limit, source = row["override"], SOURCE_OVERRIDE
    elif row["tier"] is not None:
        limit, source = row["tier"], SOURCE_TIER
    elif row["guild_default"] is not None:
        limit, source = row["guild_default"], SOURCE_GUILD
    else:
        limit, source = settings.default_daily_credits, SOURCE_GLOBAL
    return Standing(
        limit=limit,
        limit_source=source,
        used=max(0, row["used"] - row["forgiven"]),
        granted=row["granted"],
        guild_cap=row["guild_cap"] if guild_id is not None else None,
        guild_used=row["guild_used"],
        global_cap=settings.global_daily_cap,
        global_used=row["global_used"],
    )


def check_reservation(s: Standing, cost: int, resets_at: datetime) -> None:
    """Raise QuotaExceededError for the first limit ``cost`` more credits would pass."""
    # An allowance of 0 means "may not generate", even a job that happens to cost nothing.
    if s.used + cost > s.allowance or s.allowance == 0:
        raise QuotaExceededError(
            limit=DAILY_ALLOWANCE, allowed=s.allowance, used=s.used, cost=cost, resets_at=resets_at
        )
    if s.guild_cap is not None and s.guild_used + cost > s.guild_cap:
        raise QuotaExceededError(
            limit=GUILD_CAP, allowed=s.guild_cap, used=s.guild_used, cost=cost, resets_at=resets_at
        )
    if s.global_cap is not None and s.global_used + cost > s.global_cap:
        raise QuotaExceededError(
            limit=GLOBAL_CAP,
            allowed=s.global_cap,
            used=s.global_used,
            cost=cost,
            resets_at=resets_at,
        )


_INSERT_LEDGER = """
INSERT INTO ledger
    (kind, user_id, guild_id, day, amount, job_id, actor_id, reason, counts_toward_caps, at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
    return cursor.lastrowid


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


def _entry(conn: sqlite3.Connection, entry_id: int) -> LedgerEntry:
    return entry_from_row(conn.execute("SELECT * FROM ledger WHERE id = ?", (entry_id,)).fetchone())


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
    row = fetch_one(
        conn.execute(
            f"UPDATE jobs SET {SETTLE_COMMIT} WHERE id = ? AND settled = 0 RETURNING *",
            (delivered_cost, delivered_cost, job_id),
        )
    )
    if row is None:
        _require_job(conn, job_id)
        return False
    record_settlement(conn, row, at)
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
    row = fetch_one(
        conn.execute(
            f"UPDATE jobs SET {SETTLE_REFUND} WHERE id = ? AND settled = 0 RETURNING *", (job_id,)
        )
    )
    if row is not None:
        record_settlement(conn, row, at)
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


# Credits the member's unsettled jobs of that day hold. Unsettled jobs are always unfinished
# (every terminal state settles), so this reads the index jobs_unfinished_by_member.
_HELD_SQL = f"""
SELECT coalesce(sum(cost), 0) FROM jobs INDEXED BY jobs_unfinished_by_member
WHERE {UNFINISHED} AND user_id = ? AND guild_id IS ? AND quota_day = ? AND settled = 0
"""


def resettable(conn: sqlite3.Connection, user_id: int, guild_id: int | None, day: str) -> int:
    """What a reset would give back now: the day's settled credits not already forgiven."""
    row = conn.execute(
        "SELECT used - forgiven FROM user_day WHERE day = ? AND guild_key = ? AND user_id = ?",
        (day, guild_id or 0, user_id),
    ).fetchone()
    counted = 0 if row is None else row[0]
    held = conn.execute(_HELD_SQL, (user_id, guild_id, day)).fetchone()[0]
    return max(0, counted - held)


class QuotaStore:
    def __init__(self, db: Database, settings: QuotaSettings, clock: Clock) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock

    @property
    def settings(self) -> QuotaSettings:
        return self._settings

    async def commit(self, job_id: str, delivered_cost: int | None = None) -> bool:
        """Settle the job's reservation as delivered; False if it was already settled."""
        check_delivered_cost(delivered_cost)
        at = to_db(self._clock())
        return await self._db.write(lambda c: settle_commit(c, job_id, delivered_cost, at))

    async def refund(self, job_id: str) -> bool:
        """Give the job's credits back; False if there is nothing (left) to refund."""
        at = to_db(self._clock())
        return await self._db.write(lambda c: settle_refund(c, job_id, at))

    async def balance(
        self,
        user_id: int,
        guild_id: int | None,
        *,
        role_ids: Collection[int] = (),
        now: datetime | None = None,
    ) -> Balance:
        now = aware_time("now", now or self._clock())
        day = quota_day(now)

        def run(conn: sqlite3.Connection) -> Standing:
            return standing(conn, self._settings, user_id, guild_id, day, role_ids)

        s = await self._db.query(run)
        return Balance(
            limit=s.limit,
            used=s.used,
            granted=s.granted,
            remaining=max(0, s.allowance - s.used),
            resets_at=next_midnight(now),
            limit_source=s.limit_source,
            guild_cap_remaining=None if s.guild_cap is None else max(0, s.guild_cap - s.guild_used),
            global_cap_remaining=(
                None if s.global_cap is None else max(0, s.global_cap - s.global_used)
            ),
        )

    async def grant(
        self,
        user_id: int,
        guild_id: int | None,
        amount: int,
        *,
        actor_id: int,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> LedgerEntry:
        """Extra credits for the member today (UTC); they lapse at midnight."""
        snowflake("user_id", user_id)
        opt_snowflake("guild_id", guild_id)
        whole("amount", amount, 1)
        at = aware_time("now", now or self._clock())

        def run(conn: sqlite3.Connection) -> LedgerEntry:
            entry_id = insert_entry(
                conn,
                LedgerKind.GRANT,
                user_id=user_id,
                guild_id=guild_id,
                day=quota_day(at),
                amount=amount,
                at=to_db(at),
                actor_id=actor_id,
                reason=reason,
                counts_toward_caps=False,
            )
            return _entry(conn, entry_id)

        return await self._db.write(run)

    async def reset_day(
        self,
        user_id: int,
        guild_id: int | None,
        *,
        actor_id: int,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> LedgerEntry:
        """Give back the credits the member has used today (settled ones; see module doc).

        Always writes a 'reset' entry (amount 0 if nothing was used), as a record of the act.
        """
        snowflake("user_id", user_id)
        opt_snowflake("guild_id", guild_id)
        at = aware_time("now", now or self._clock())
        day = quota_day(at)

        def run(conn: sqlite3.Connection) -> LedgerEntry:
            amount = resettable(conn, user_id, guild_id, day)
            entry_id = insert_entry(
                conn,
                LedgerKind.RESET,
                user_id=user_id,
                guild_id=guild_id,
                day=day,
                amount=amount,
                at=to_db(at),
                actor_id=actor_id,
                reason=reason,
                counts_toward_caps=False,
            )
            return _entry(conn, entry_id)

        return await self._db.write(run)

    async def ledger(
        self, user_id: int, guild_id: int | None, *, limit: int = 25
    ) -> list[LedgerEntry]:
        """The member's entries in this guild (None: DMs), newest first."""

        def run(conn: sqlite3.Connection) -> list[LedgerEntry]:
            rows = conn.execute(
                "SELECT * FROM ledger WHERE user_id = ? AND guild_id IS ? ORDER BY id DESC LIMIT ?",
                (user_id, guild_id, limit),
            ).fetchall()
            return [entry_from_row(r) for r in rows]

        return await self._db.query(run)

    async def audit(self) -> list[str]:
        """Check the books: every running counter equals its ledger sum, no member's day was
        given back more than it used, and every job's entries match its cost. Returns the
        discrepancies found (none: the books balance)."""
        return await self._db.read(audit)

    async def job_entries(self, job_id: str) -> list[LedgerEntry]:
        """Every entry of one job, oldest first (for audits and the moderators' log)."""

        def run(conn: sqlite3.Connection) -> list[LedgerEntry]:
            rows = conn.execute(
                "SELECT * FROM ledger WHERE job_id = ? ORDER BY id", (job_id,)
            ).fetchall()
            return [entry_from_row(r) for r in rows]

        return await self._db.query(run)


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
        SELECT * FROM (SELECT * FROM sums EXCEPT SELECT * FROM user_day)
        UNION ALL SELECT * FROM (SELECT * FROM user_day EXCEPT SELECT * FROM sums)
        """,
    ),
    (
        "guild_day differs from the ledger",
        """
        WITH sums AS (
            SELECT day, coalesce(guild_id, 0) AS guild_key,
                sum(CASE kind WHEN 'reserve' THEN amount ELSE -amount END)
            FROM ledger WHERE counts_toward_caps AND kind IN ('reserve', 'refund') GROUP BY 1, 2
        )
        SELECT * FROM (SELECT * FROM sums EXCEPT SELECT * FROM guild_day)
        UNION ALL SELECT * FROM (SELECT * FROM guild_day EXCEPT SELECT * FROM sums)
        """,
    ),
    (
        "global_day differs from the ledger",
        """
        WITH sums AS (
            SELECT day, sum(CASE kind WHEN 'reserve' THEN amount ELSE -amount END)
            FROM ledger WHERE counts_toward_caps AND kind IN ('reserve', 'refund') GROUP BY 1
        )
        SELECT * FROM (SELECT * FROM sums EXCEPT SELECT * FROM global_day)
        UNION ALL SELECT * FROM (SELECT * FROM global_day EXCEPT SELECT * FROM sums)
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
            OR (j.settled AND j.refunded NOT IN (j.cost - coalesce(j.committed, 0), j.cost))
            OR (NOT j.settled AND (j.committed IS NOT NULL OR j.refunded <> 0))
        """,
    ),
)


def audit(conn: sqlite3.Connection, *, limit: int = 20) -> list[str]:
    problems = []
    for what, sql in _AUDIT_SQL:
        for row in conn.execute(sql).fetchmany(limit):
            problems.append(f"{what}: {tuple(row)}")
    return problems
