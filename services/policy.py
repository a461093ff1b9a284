"""A guild's rules, enforced before any credit is reserved or any API call is made.

``PolicyService.check`` must be cheap: it runs before the interaction is acknowledged. It works from
one cache entry per guild (the policy, a compiled ``Blocklist`` and the active bans), loaded from
storage in one go on first use and dropped by ``invalidate`` whenever an admin changes something.

Decisions (see also the module's tests):
- Order of the rules: DMs, banned, channel, role, safety, blocklist, jobs in flight, cooldown. A
  ban is the most final answer, so it comes first; prompt rules come before the rate rules, so a
  member is not told to wait only to be refused afterwards.
- Moderators (``RequestContext.is_moderator``) skip the cooldown only: channel and role rules, bans,
  the safety ceiling, the blocklist and the in-flight limit (which bounds spend) apply to them too.
- DMs have no guild and so no guild policy: they are refused unless the operator turned them on
  (``allow_dms``, default off); then ``dm_policy`` applies (defaults: no cooldown, 3 in flight,
  safety ceiling 4, no blocklist). A guild's own ``dms_enabled`` says whether the bot may DM that
  guild's members (reject notices, delivery fallbacks): see ``may_dm_members``.
- Safety: the ceiling is the age-restricted one in channels flagged age-restricted, else the normal
  one. A value the member asked for above it is refused; the default, when above it, is clamped
  with a note.
- A refusal is data (one ``PolicyRefusal`` subclass per rule, with the facts); the cogs turn it
  into the member's sentence, so no Discord markup is written here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from services.blocklist import Blocklist
from services.wording import Wording, said
from storage import Storage
from storage.models import Ban, GuildPolicy

log = logging.getLogger(__name__)

# The safety ceiling of a server whose moderators never set one (``/admin safety`` changes it).
DEFAULT_CEILING = GuildPolicy(guild_id=0).max_safety


def default_safety_warning(default_safety: int) -> str | None:
    """The operator's start-up warning when ``DEFAULT_SAFETY`` is above the default ceiling."""
    if default_safety <= DEFAULT_CEILING:
        return None
    return (
        f"DEFAULT_SAFETY={default_safety} is above the default server safety ceiling of"
        f" {DEFAULT_CEILING}: where moderators keep that ceiling, jobs are lowered to"
        f" {DEFAULT_CEILING} with a note (raise it with /admin safety, or set DEFAULT_SAFETY"
        f" to {DEFAULT_CEILING} or lower)"
    )


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Everything the rules need about one request; the job service builds it."""

    user_id: int
    guild_id: int | None
    channel_id: int
    role_ids: frozenset[int]
    is_moderator: bool  # Manage Server, or Manage Messages in that channel: skips the cooldown only
    age_restricted_channel: bool  # channel.nsfw
    prompt: str
    safety: int | None  # None: the member did not ask for a value
    in_flight: int  # the member's unfinished jobs in this guild
    last_job_at: datetime | None  # when the member's last job in this guild was created
    # A thread's (or forum post's) parent channel: allowing the parent allows its threads.
    parent_channel_id: int | None = None


class PolicyRefusal(Exception):
    """A rule said no. Each rule has a subclass carrying the facts the member is told (the cogs
    word them: cogs/refusals.py); ``str()`` is a plain line for the bot's log."""

    # channel | role | banned | cooldown | in_flight | dms | safety | blocklist
    rule: ClassVar[str] = ""

    def __init__(
        self, detail: str, *, frees_at: datetime | None = None, matched: str | None = None
    ) -> None:
        super().__init__(f"{self.rule}: {detail}")
        self.frees_at = frees_at  # when the rule stops applying, if known
        self.matched = matched  # the blocklist pattern that matched: for the moderators' log only


class DmsOff(PolicyRefusal):
    """A request in DMs while the operator keeps the studio to servers."""

    rule = "dms"

    def __init__(self) -> None:
        super().__init__("the studio is off in DMs")


class Banned(PolicyRefusal):
    rule = "banned"

    def __init__(self, until: datetime | None, reason: str | None) -> None:
        super().__init__(f"until {until or 'lifted'}", frees_at=until)
        self.until = until  # None: until a moderator lifts it
        self.reason = reason


class WrongChannel(PolicyRefusal):
    rule = "channel"

    def __init__(self, allowed: Collection[int]) -> None:
        self.channel_ids = tuple(sorted(allowed))  # where the studio works
        super().__init__(f"only in channels {list(self.channel_ids)}")


class MissingRole(PolicyRefusal):
    rule = "role"

    def __init__(self, allowed: Collection[int]) -> None:
        self.role_ids = tuple(sorted(allowed))  # any one of them will do
        super().__init__(f"only for roles {list(self.role_ids)}")


class SafetyTooHigh(PolicyRefusal):
    rule = "safety"

    def __init__(self, asked: int, ceiling: int, *, age_restricted_ceiling: int | None) -> None:
        super().__init__(f"asked {asked}, ceiling {ceiling}")
        self.asked = asked
        self.ceiling = ceiling
        # Set when age-restricted channels would allow the value (worth telling the member).
        self.age_restricted_ceiling = age_restricted_ceiling


class PromptBlocked(PolicyRefusal):
    """The blocklist matched: the member is not told what (only the moderators' log is)."""

    rule = "blocklist"

    def __init__(self, matched: str) -> None:
        super().__init__("the blocklist matched", matched=matched)


class TooManyInFlight(PolicyRefusal):
    rule = "in_flight"

    def __init__(self, in_flight: int, limit: int) -> None:
        super().__init__(f"{in_flight} in flight, limit {limit}")
        self.in_flight = in_flight
        self.limit = limit


class CoolingDown(PolicyRefusal):
    rule = "cooldown"

    def __init__(self, frees_at: datetime, cooldown_seconds: int) -> None:
        super().__init__(f"until {frees_at}", frees_at=frees_at)
        self.cooldown_seconds = cooldown_seconds


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    safety_tolerance: int  # what to send
    notes: tuple[Wording, ...]  # things the member should be told, e.g. a clamped safety
    policy: GuildPolicy


@dataclass(slots=True)
class _GuildRules:
    """One guild's cached rules."""

    policy: GuildPolicy
    blocklist: Blocklist
    # user id -> ban; expired ones stay until the next reload and are ignored on use
    bans: dict[int, Ban] = field(default_factory=dict)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PolicyService:
    def __init__(
        self,
        storage: Storage,
        *,
        default_safety: int = 4,
        allow_dms: bool = False,
        dm_policy: GuildPolicy | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._storage = storage
        self._default_safety = default_safety
        self._allow_dms = allow_dms
        self._dm_policy = dm_policy or GuildPolicy(guild_id=0)
        self._clock = clock
        self._rules: dict[int, _GuildRules] = {}
        # One load per guild at a time: concurrent first requests share it.
        self._loading: dict[int, asyncio.Task[_GuildRules]] = {}
        # Bumped by invalidate(), so a load that started before the change is not cached.
        self._generation: dict[int, int] = {}

    # -- the cache -----------------------------------------------------------------------------

    def invalidate(self, guild_id: int) -> None:
        """Forget a guild's rules; the next request reloads them."""
        self._rules.pop(guild_id, None)
        self._loading.pop(guild_id, None)
        self._generation[guild_id] = self._generation.get(guild_id, 0) + 1

    def invalidate_all(self) -> None:
        """Forget every guild's rules (another process may have changed any of them)."""
        for guild_id in {*self._rules, *self._loading}:
            self.invalidate(guild_id)

    async def policy(self, guild_id: int) -> GuildPolicy:
        return (await self._guild(guild_id)).policy

    async def blocklist(self, guild_id: int) -> Blocklist:
        return (await self._guild(guild_id)).blocklist

    async def may_dm_members(self, guild_id: int) -> bool:
        """Whether the bot may DM this guild's members (the guild's DMs setting)."""
        return (await self.policy(guild_id)).dms_enabled

    async def _guild(self, guild_id: int) -> _GuildRules:
        rules = self._rules.get(guild_id)
        if rules is not None:
            return rules
        task = self._loading.get(guild_id)
        if task is None:
            task = asyncio.ensure_future(self._load(guild_id, self._generation.get(guild_id, 0)))
            # a failure every waiter gave up on is still retrieved (no "never retrieved" noise)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._loading[guild_id] = task
        # shield: one waiter being cancelled must not cancel the load the others wait on
        return await asyncio.shield(task)

    async def _load(self, guild_id: int, generation: int) -> _GuildRules:
        try:
            store = self._storage.policy
            policy = await store.get(guild_id)
            entries = await store.blocklist(guild_id)
            bans = await store.bans(guild_id)
            rules = _GuildRules(
                policy=policy,
                blocklist=Blocklist((e.id, e.pattern, e.is_regex) for e in entries),
                bans={b.user_id: b for b in bans},
            )
        finally:
            if self._generation.get(guild_id, 0) == generation:
                self._loading.pop(guild_id, None)
        if self._generation.get(guild_id, 0) == generation:
            self._rules[guild_id] = rules
        return rules

    # -- the rules ----------------------------------------------------------------------------

    async def check(self, ctx: RequestContext, *, now: datetime | None = None) -> PolicyDecision:
        """Apply every rule to a request; raise ``PolicyRefusal`` for the first one that says no."""
        now = now or self._clock()
        if ctx.guild_id is None:
            if not self._allow_dms:
                raise DmsOff()
            return self._check_request(ctx, self._dm_policy, None, now)
        rules = await self._guild(ctx.guild_id)
        self._check_member(ctx, rules, now)
        return self._check_request(ctx, rules.policy, rules.blocklist, now)

    async def check_presence(self, ctx: RequestContext, *, now: datetime | None = None) -> None:
        """Only the rules on who may use the studio where: DMs, bans, channels, roles.

        For actions that generate nothing and cost nothing (``/show`` re-posting a result):
        the prompt, safety, cooldown and in-flight rules do not apply to them.
        """
        now = now or self._clock()
        if ctx.guild_id is None:
            if not self._allow_dms:
                raise DmsOff()
            return
        self._check_member(ctx, await self._guild(ctx.guild_id), now)

    def _check_member(self, ctx: RequestContext, rules: _GuildRules, now: datetime) -> None:
        policy = rules.policy
        ban = rules.bans.get(ctx.user_id)
        if ban is not None and (ban.until is None or ban.until > now):
            raise Banned(ban.until, ban.reason)
        allowed = policy.allowed_channel_ids
        if allowed and ctx.channel_id not in allowed and ctx.parent_channel_id not in allowed:
            raise WrongChannel(allowed)
        if policy.allowed_role_ids and not (ctx.role_ids & policy.allowed_role_ids):
            raise MissingRole(policy.allowed_role_ids)

    def _check_request(
        self,
        ctx: RequestContext,
        policy: GuildPolicy,
        blocklist: Blocklist | None,
        now: datetime,
    ) -> PolicyDecision:
        safety, notes = self._safety(ctx, policy)
        if blocklist is not None:
            match = blocklist.check(ctx.prompt)
            if match is not None:
                raise PromptBlocked(match.pattern)
        limit = policy.max_jobs_in_flight
        if limit > 0 and ctx.in_flight >= limit:
            raise TooManyInFlight(ctx.in_flight, limit)
        if policy.cooldown_seconds > 0 and ctx.last_job_at is not None and not ctx.is_moderator:
            frees_at = ctx.last_job_at + timedelta(seconds=policy.cooldown_seconds)
            if frees_at > now:
                raise CoolingDown(frees_at, policy.cooldown_seconds)
        return PolicyDecision(safety_tolerance=safety, notes=notes, policy=policy)

    def _safety(self, ctx: RequestContext, policy: GuildPolicy) -> tuple[int, tuple[Wording, ...]]:
        aged = ctx.age_restricted_channel
        ceiling = policy.max_safety_age_restricted if aged else policy.max_safety
        if ctx.safety is None:
            if self._default_safety > ceiling:
                return ceiling, (
                    said("safety lowered to {ceiling}, this server's ceiling", ceiling=ceiling),
                )
            return self._default_safety, ()
        if ctx.safety > ceiling:
            elsewhere = policy.max_safety_age_restricted
            raise SafetyTooHigh(
                ctx.safety,
                ceiling,
                age_restricted_ceiling=elsewhere if not aged and elsewhere > ceiling else None,
            )
        return ctx.safety, ()


__all__ = [
    "Banned",
    "CoolingDown",
    "DmsOff",
    "MissingRole",
    "PolicyDecision",
    "PolicyRefusal",
    "PolicyService",
    "PromptBlocked",
    "RequestContext",
    "SafetyTooHigh",
    "TooManyInFlight",
    "WrongChannel",
]
