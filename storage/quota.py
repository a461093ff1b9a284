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

Where it lives: limits and standing in storage.quota_standing, ledger entries and the audit in
storage.ledger, settling a reservation in storage.settlement; QuotaStore below is the interface.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime

from storage.clock import Clock, next_midnight, quota_day, to_db
from storage.db import Database
from storage.ledger import admin_entry, audit, entry_from_row
from storage.models import Balance, LedgerEntry, LedgerKind
from storage.quota_standing import Standing, resettable, standing
from storage.settings import QuotaSettings
from storage.settlement import check_delivered_cost, settle_commit, settle_refund
from storage.validate import aware_time, opt_snowflake, snowflake, whole


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
            return admin_entry(
                conn,
                LedgerKind.GRANT,
                at,
                user_id=user_id,
                guild_id=guild_id,
                amount=amount,
                actor_id=actor_id,
                reason=reason,
            )

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
            return admin_entry(
                conn,
                LedgerKind.RESET,
                at,
                user_id=user_id,
                guild_id=guild_id,
                amount=amount,
                actor_id=actor_id,
                reason=reason,
            )

        return await self._db.write(run)

    async def _entries(self, sql: str, args: Sequence[object]) -> list[LedgerEntry]:
        def run(conn: sqlite3.Connection) -> list[LedgerEntry]:
            return [entry_from_row(r) for r in conn.execute(sql, args).fetchall()]

        return await self._db.query(run)

    async def ledger(
        self, user_id: int, guild_id: int | None, *, limit: int = 25
    ) -> list[LedgerEntry]:
        """The member's entries in this guild (None: DMs), newest first."""
        return await self._entries(
            "SELECT * FROM ledger WHERE user_id = ? AND guild_id IS ? ORDER BY id DESC LIMIT ?",
            (user_id, guild_id, limit),
        )

    async def audit(self) -> list[str]:
        """Check the books: every running counter equals its ledger sum, no member's day was
        given back more than it used, and every job's entries match its cost. Returns the
        discrepancies found (none: the books balance)."""
        return await self._db.read(audit)

    async def job_entries(self, job_id: str) -> list[LedgerEntry]:
        """Every entry of one job, oldest first (for audits and the moderators' log)."""
        return await self._entries("SELECT * FROM ledger WHERE job_id = ? ORDER BY id", (job_id,))
