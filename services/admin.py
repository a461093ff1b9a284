"""What the ``/admin`` commands (and later the moderators' buttons) do: validate, store, invalidate.

Every method takes the guild it acts on; every write to a guild's rules drops the policy cache for
that guild, so the next request sees the change (nothing needs a restart). Errors are ``AdminError``
subclasses carrying what went wrong (the field, the channel, role or member); results are stored
records or report dataclasses (both in services/admin_types.py). What the admin reads is worded by
the cogs (cogs/refusals.py, cogs/admin_render.py): nothing here writes Discord markup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from typing import Any

from client.models import SAFETY_LEVELS
from services.admin_types import (
    AdminError,
    AlreadyListed,
    BlocklistReport,
    InvalidSetting,
    LedgerReport,
    NotFound,
    SettingsSummary,
    StatsReport,
)
from services.blocklist import MAX_PATTERN_LENGTH, InvalidBlocklistEntry, validate_entry
from services.durations import MAX_BAN, MIN_BAN, parse_duration
from services.locks import KeyedLocks
from services.policy import PolicyService
from services.prompt_text import clean_text, has_visible_text
from services.wording import Wording
from storage import Storage
from storage.models import (
    Balance,
    Ban,
    BlocklistEntry,
    GuildPolicy,
    InvalidSettingError,
    LedgerEntry,
)

# Bounds on what admins may set; generous, but they keep a typo from doing damage.
MAX_CHANNELS = 25
MAX_ROLES = 25
MAX_CREDITS = 100_000  # a member's or a tier's daily credits
MAX_DAILY_CAP = 1_000_000  # the whole guild's daily credits
MAX_GRANT = 10_000
MAX_COOLDOWN_SECONDS = 86_400
MAX_IN_FLIGHT = 20
MAX_BLOCKLIST_ENTRIES = 500
MAX_REASON_LENGTH = 300


def _check_range(field: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidSetting(
            field, "must be a whole number from {low} to {high}", low=low, high=high
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AdminService:
    def __init__(
        self,
        storage: Storage,
        policy: PolicyService,
        *,
        global_default_credits: int | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._storage = storage
        self._policy = policy
        self._global_default_credits = (
            storage.quota.settings.default_daily_credits
            if global_default_credits is None
            else global_default_credits
        )
        self._clock = clock
        # Read-modify-write of a guild's channel and role lists: one admin command at a time.
        self._locks = KeyedLocks()  # one change at a time per guild

    @asynccontextmanager
    async def _changing(self, guild_id: int) -> AsyncIterator[None]:
        """Around a write to a guild's rules: storage's validation errors become ours, and the
        policy cache is dropped even if the write failed half-way (it is only a cache)."""
        try:
            yield
        except InvalidSettingError as exc:
            raise InvalidSetting(exc.field, "{problem}", problem=exc.problem) from exc
        finally:
            self._policy.invalidate(guild_id)

    async def _update(self, guild_id: int, **fields: Any) -> GuildPolicy:
        async with self._changing(guild_id):
            return await self._storage.policy.update(guild_id, **fields)

    async def policy(self, guild_id: int) -> GuildPolicy:
        """The guild's stored policy, fresh from storage (not the enforcement cache)."""
        return await self._storage.policy.get(guild_id)

    # -- channels and roles -------------------------------------------------------------------

    async def allow_channel(self, guild_id: int, channel_id: int) -> GuildPolicy:
        async with self._locks.hold(guild_id):
            current = (await self.policy(guild_id)).allowed_channel_ids
            if channel_id in current:
                raise AlreadyListed("channel", channel_id)
            if len(current) >= MAX_CHANNELS:
                raise InvalidSetting(
                    "channels", "at most {limit} allowed channels", limit=MAX_CHANNELS
                )
            return await self._update(guild_id, allowed_channel_ids=current | {channel_id})

    async def disallow_channel(self, guild_id: int, channel_id: int) -> GuildPolicy:
        async with self._locks.hold(guild_id):
            current = (await self.policy(guild_id)).allowed_channel_ids
            if channel_id not in current:
                raise NotFound("channel", channel_id)
            return await self._update(guild_id, allowed_channel_ids=current - {channel_id})

    async def clear_channels(self, guild_id: int) -> GuildPolicy:
        async with self._locks.hold(guild_id):
            return await self._update(guild_id, allowed_channel_ids=frozenset())

    async def allow_role(self, guild_id: int, role_id: int) -> GuildPolicy:
        async with self._locks.hold(guild_id):
            current = (await self.policy(guild_id)).allowed_role_ids
            if role_id in current:
                raise AlreadyListed("role", role_id)
            if len(current) >= MAX_ROLES:
                raise InvalidSetting("roles", "at most {limit} allowed roles", limit=MAX_ROLES)
            return await self._update(guild_id, allowed_role_ids=current | {role_id})

    async def disallow_role(self, guild_id: int, role_id: int) -> GuildPolicy:
        async with self._locks.hold(guild_id):
            current = (await self.policy(guild_id)).allowed_role_ids
            if role_id not in current:
                raise NotFound("role", role_id)
            return await self._update(guild_id, allowed_role_ids=current - {role_id})

    async def clear_roles(self, guild_id: int) -> GuildPolicy:
        async with self._locks.hold(guild_id):
            return await self._update(guild_id, allowed_role_ids=frozenset())

    # -- quota --------------------------------------------------------------------------------

    async def set_default_credits(self, guild_id: int, credits: int | None) -> GuildPolicy:
        """The guild's daily credits per member; None: back to the bot's global default."""
        if credits is not None:
            _check_range("credits", credits, 0, MAX_CREDITS)
        return await self._update(guild_id, default_daily_credits=credits)

    async def set_daily_cap(self, guild_id: int, credits: int | None) -> GuildPolicy:
        """The credits the whole guild may spend a day; None: no cap."""
        if credits is not None:
            _check_range("cap", credits, 0, MAX_DAILY_CAP)
        return await self._update(guild_id, daily_cap=credits)

    async def set_role_tier(self, guild_id: int, role_id: int, credits: int) -> GuildPolicy:
        _check_range("credits", credits, 0, MAX_CREDITS)
        async with self._changing(guild_id):
            await self._storage.policy.set_role_tier(guild_id, role_id, credits)
        return await self.policy(guild_id)

    async def remove_role_tier(self, guild_id: int, role_id: int) -> GuildPolicy:
        if role_id not in (await self.policy(guild_id)).role_tiers:
            raise NotFound("tier", role_id)
        async with self._changing(guild_id):
            await self._storage.policy.set_role_tier(guild_id, role_id, None)
        return await self.policy(guild_id)

    async def set_user_override(self, guild_id: int, user_id: int, credits: int | None) -> None:
        """A member's own daily credits, above any tier; None clears it."""
        if credits is None:
            if await self._storage.policy.get_user_override(guild_id, user_id) is None:
                raise NotFound("override", user_id)
        else:
            _check_range("credits", credits, 0, MAX_CREDITS)
        async with self._changing(guild_id):
            await self._storage.policy.set_user_override(guild_id, user_id, credits)

    async def grant(
        self, guild_id: int, user_id: int, amount: int, *, actor_id: int, reason: str | None = None
    ) -> LedgerEntry:
        """Extra credits for today, on top of the member's allowance."""
        _check_range("amount", amount, 1, MAX_GRANT)
        reason = _reason(reason)
        async with self._changing(guild_id):
            return await self._storage.quota.grant(
                user_id, guild_id, amount, actor_id=actor_id, reason=reason
            )

    async def reset_day(
        self, guild_id: int, user_id: int, *, actor_id: int, reason: str | None = None
    ) -> LedgerEntry:
        """Give a member back the credits they used today (jobs still running stay held)."""
        reason = _reason(reason)
        async with self._changing(guild_id):
            return await self._storage.quota.reset_day(
                user_id, guild_id, actor_id=actor_id, reason=reason
            )

    async def balance(
        self, guild_id: int, user_id: int, *, role_ids: Collection[int] = ()
    ) -> Balance:
        return await self._storage.quota.balance(user_id, guild_id, role_ids=role_ids)

    async def ledger(self, guild_id: int, user_id: int, *, limit: int = 15) -> list[LedgerEntry]:
        return await self._storage.quota.ledger(user_id, guild_id, limit=limit)

    async def ledger_report(
        self, guild_id: int, user_id: int, *, role_ids: Collection[int] = ()
    ) -> LedgerReport:
        return LedgerReport(
            user_id=user_id,
            balance=await self.balance(guild_id, user_id, role_ids=role_ids),
            entries=tuple(await self.ledger(guild_id, user_id)),
        )

    # -- safety and blocklist -----------------------------------------------------------------

    async def set_safety(
        self,
        guild_id: int,
        *,
        ceiling: int | None = None,
        age_restricted_ceiling: int | None = None,
    ) -> GuildPolicy:
        """The highest safety members may ask for, in normal and in age-restricted channels."""
        low, high = min(SAFETY_LEVELS), max(SAFETY_LEVELS)
        if ceiling is None and age_restricted_ceiling is None:
            raise InvalidSetting("safety", "give a ceiling, an age-restricted ceiling, or both")
        if ceiling is not None:
            _check_range("ceiling", ceiling, low, high)
        if age_restricted_ceiling is not None:
            _check_range("age_restricted_ceiling", age_restricted_ceiling, low, high)
        async with self._locks.hold(guild_id):
            current = await self.policy(guild_id)
            normal = current.max_safety if ceiling is None else ceiling
            aged = (
                current.max_safety_age_restricted
                if age_restricted_ceiling is None
                else age_restricted_ceiling
            )
            # An age-restricted channel is never stricter than a normal one.
            if aged < normal:
                raise InvalidSetting(
                    "age_restricted_ceiling",
                    "can't be lower than the normal ceiling ({normal}); set both together",
                    normal=normal,
                )
            return await self._update(guild_id, max_safety=normal, max_safety_age_restricted=aged)

    async def add_block(
        self, guild_id: int, pattern: str, *, is_regex: bool, actor_id: int
    ) -> BlocklistEntry:
        pattern = clean_text(pattern).strip()
        if not has_visible_text(pattern):
            raise InvalidSetting("pattern", "is empty")
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise InvalidSetting("pattern", "at most {limit} characters", limit=MAX_PATTERN_LENGTH)
        try:
            validate_entry(pattern, is_regex)  # an RE2 compile: microseconds
        except InvalidBlocklistEntry as exc:
            raise InvalidSetting("pattern", exc.reason.text, **exc.reason.args) from exc
        async with self._locks.hold(guild_id):
            entries = await self._storage.policy.blocklist(guild_id)
            if len(entries) >= MAX_BLOCKLIST_ENTRIES:
                raise InvalidSetting(
                    "blocklist", "at most {limit} entries", limit=MAX_BLOCKLIST_ENTRIES
                )
            for entry in entries:
                if entry.is_regex == is_regex and entry.pattern.casefold() == pattern.casefold():
                    raise AlreadyListed("blocklist", entry.id)
            async with self._changing(guild_id):
                return await self._storage.policy.add_block(
                    guild_id, pattern, is_regex=is_regex, added_by=actor_id
                )

    async def remove_block(self, guild_id: int, entry_id: int) -> None:
        async with self._changing(guild_id):
            removed = await self._storage.policy.remove_block(guild_id, entry_id)
        if not removed:
            raise NotFound("blocklist entry", entry_id)

    async def blocklist(self, guild_id: int) -> list[BlocklistEntry]:
        return await self._storage.policy.blocklist(guild_id)

    async def blocklist_problems(self, guild_id: int) -> dict[int, Wording]:
        """Stored entries that the enforced blocklist skipped (they failed validation, e.g.
        written before a rule tightened): entry id -> why. They match nothing."""
        compiled = await self._policy.blocklist(guild_id)
        return {entry_id: err.reason for entry_id, err in compiled.invalid}

    async def blocklist_report(self, guild_id: int) -> BlocklistReport:
        entries = tuple(await self.blocklist(guild_id))
        problems = await self.blocklist_problems(guild_id) if entries else {}
        return BlocklistReport(entries=entries, problems=problems)

    # -- moderation and limits ----------------------------------------------------------------

    async def set_log_channel(self, guild_id: int, channel_id: int | None) -> GuildPolicy:
        return await self._update(guild_id, log_channel_id=channel_id)

    async def set_approval(self, guild_id: int, enabled: bool) -> GuildPolicy:
        return await self._update(guild_id, approval_mode=enabled)

    async def set_cooldown(self, guild_id: int, seconds: int) -> GuildPolicy:
        _check_range("seconds", seconds, 0, MAX_COOLDOWN_SECONDS)
        return await self._update(guild_id, cooldown_seconds=seconds)

    async def set_max_in_flight(self, guild_id: int, jobs: int) -> GuildPolicy:
        _check_range("jobs", jobs, 1, MAX_IN_FLIGHT)
        return await self._update(guild_id, max_jobs_in_flight=jobs)

    async def set_dms(self, guild_id: int, enabled: bool) -> GuildPolicy:
        return await self._update(guild_id, dms_enabled=enabled)

    async def ban(
        self,
        guild_id: int,
        user_id: int,
        *,
        actor_id: int,
        reason: str | None = None,
        duration: str | timedelta | None = None,
    ) -> Ban:
        """Ban a member from the studio in this guild; ``duration`` None: until lifted."""
        if user_id == actor_id:
            raise InvalidSetting("member", "you can't ban yourself")
        if isinstance(duration, str):
            duration = parse_duration(duration) if duration.strip() else None
        elif duration is not None and not MIN_BAN <= duration <= MAX_BAN:
            raise InvalidSetting("duration", "must be between 1 minute and 365 days")
        until = self._clock() + duration if duration is not None else None
        reason = _reason(reason)
        async with self._changing(guild_id):
            return await self._storage.policy.ban(
                guild_id, user_id, reason=reason, banned_by=actor_id, until=until
            )

    async def unban(self, guild_id: int, user_id: int) -> None:
        async with self._changing(guild_id):
            lifted = await self._storage.policy.unban(guild_id, user_id)
        if not lifted:
            raise NotFound("ban", user_id)

    # -- reports ------------------------------------------------------------------------------

    async def settings(self, guild_id: int) -> SettingsSummary:
        store = self._storage.policy
        policy = await store.get(guild_id)
        entries = await store.blocklist(guild_id)
        bans = await store.bans(guild_id, now=self._clock())
        return SettingsSummary(
            policy=policy,
            blocklist_entries=len(entries),
            active_bans=tuple(bans),
            global_default_credits=self._global_default_credits,
        )

    async def stats(self, guild_id: int, *, top: int = 5) -> StatsReport:
        now = self._clock()
        midnight = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
        jobs = self._storage.jobs
        return StatsReport(
            today=await jobs.stats(guild_id, midnight, top=top),
            week=await jobs.stats(guild_id, now - timedelta(days=7), top=top),
        )


def _reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    flat = " ".join(reason.split())
    if len(flat) > MAX_REASON_LENGTH:
        raise InvalidSetting("reason", "at most {limit} characters", limit=MAX_REASON_LENGTH)
    return flat or None


__all__ = [
    "AdminError",
    "AdminService",
    "AlreadyListed",
    "BlocklistReport",
    "InvalidSetting",
    "LedgerReport",
    "NotFound",
    "SettingsSummary",
    "StatsReport",
    "parse_duration",
]
