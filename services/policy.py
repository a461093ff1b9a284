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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.blocklist import Blocklist
from storage import Storage
from storage.models import Ban, GuildPolicy

log = logging.getLogger(__name__)

# How many channels or roles a refusal names before it says "and N more".
_MAX_LISTED = 5


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
    """A rule said no. ``str(err)`` is the short message for the member (sent ephemerally)."""

    def __init__(
        self,
        rule: str,
        message: str,
        *,
        frees_at: datetime | None = None,
        matched: str | None = None,
    ) -> None:
        super().__init__(message)
        # channel | role | banned | cooldown | in_flight | dms | safety | blocklist
        self.rule = rule
        self.message = message
        self.frees_at = frees_at  # when the rule stops applying, if known
        self.matched = matched  # the blocklist pattern that matched: for the moderators' log only


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    safety_tolerance: int  # what to send
    notes: tuple[str, ...]  # things the member should be told, e.g. a clamped safety
    policy: GuildPolicy


@dataclass(slots=True)
class _GuildRules:
    """One guild's cached rules."""

    policy: GuildPolicy
    blocklist: Blocklist
    # user id -> ban; expired ones stay until the next reload and are ignored on use
    bans: dict[int, Ban] = field(default_factory=dict)


def format_duration(seconds: int) -> str:
    """A short human duration, at most two units: 45 s, 1 min 30 s, 2 h, 3 d 4 h."""
    seconds = max(0, int(seconds))
    if seconds == 0:
        return "0 s"
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}")
    return " ".join(parts[:2])


def discord_time(at: datetime, style: str = "R") -> str:
    """A Discord timestamp tag, shown in each reader's own time zone."""
    return f"<t:{int(at.timestamp())}:{style}>"


def listed(tags: Sequence[str], *, limit: int = _MAX_LISTED) -> str:
    """``a, b, c and N more``: at most ``limit`` tags named ("" when there are none)."""
    shown = ", ".join(tags[:limit])
    if len(tags) > limit:
        shown += f" and {len(tags) - limit} more"
    return shown


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


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
                raise PolicyRefusal(
                    "dms", "The studio doesn't work in DMs. Use it in a server instead."
                )
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
                raise PolicyRefusal(
                    "dms", "The studio doesn't work in DMs. Use it in a server instead."
                )
            return
        self._check_member(ctx, await self._guild(ctx.guild_id), now)

    def _check_member(self, ctx: RequestContext, rules: _GuildRules, now: datetime) -> None:
        policy = rules.policy
        ban = rules.bans.get(ctx.user_id)
        if ban is not None and (ban.until is None or ban.until > now):
            raise _banned(ban)
        allowed = policy.allowed_channel_ids
        if allowed and ctx.channel_id not in allowed and ctx.parent_channel_id not in allowed:
            tags = [f"<#{c}>" for c in sorted(policy.allowed_channel_ids)]
            raise PolicyRefusal("channel", f"Image generation is only enabled in {listed(tags)}.")
        if policy.allowed_role_ids and not (ctx.role_ids & policy.allowed_role_ids):
            tags = [f"<@&{r}>" for r in sorted(policy.allowed_role_ids)]
            which = "the role" if len(tags) == 1 else "one of these roles:"
            raise PolicyRefusal(
                "role", f"The studio here is for members with {which} {listed(tags)}."
            )

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
                raise PolicyRefusal(
                    "blocklist",
                    "That prompt contains something this server doesn't allow, so it wasn't"
                    " sent. Please reword it.",
                    matched=match.pattern,
                )
        limit = policy.max_jobs_in_flight
        if limit > 0 and ctx.in_flight >= limit:
            jobs = "job" if limit == 1 else "jobs"
            raise PolicyRefusal(
                "in_flight",
                f"You already have {ctx.in_flight} {jobs} in progress (limit: {limit} at a time)."
                " Try again when one finishes.",
            )
        if policy.cooldown_seconds > 0 and ctx.last_job_at is not None and not ctx.is_moderator:
            frees_at = ctx.last_job_at + timedelta(seconds=policy.cooldown_seconds)
            if frees_at > now:
                raise PolicyRefusal(
                    "cooldown",
                    f"You can use the studio again {discord_time(frees_at)}"
                    f" (cooldown: {format_duration(policy.cooldown_seconds)}).",
                    frees_at=frees_at,
                )
        return PolicyDecision(safety_tolerance=safety, notes=notes, policy=policy)

    def _safety(self, ctx: RequestContext, policy: GuildPolicy) -> tuple[int, tuple[str, ...]]:
        aged = ctx.age_restricted_channel
        ceiling = policy.max_safety_age_restricted if aged else policy.max_safety
        if ctx.safety is None:
            if self._default_safety > ceiling:
                return ceiling, (f"safety lowered to {ceiling}, this server's ceiling",)
            return self._default_safety, ()
        if ctx.safety > ceiling:
            message = f"Safety {ctx.safety} is above this server's ceiling of {ceiling}"
            if not ctx.age_restricted_channel and policy.max_safety_age_restricted > ceiling:
                message += (
                    f" here (age-restricted channels allow up to"
                    f" {policy.max_safety_age_restricted})"
                )
            raise PolicyRefusal("safety", message + f". Pick {ceiling} or lower.")
        return ctx.safety, ()


def _banned(ban: Ban) -> PolicyRefusal:
    if ban.until is None:
        message = "You're banned from the studio in this server."
    else:
        message = f"You're banned from the studio in this server until {discord_time(ban.until)}."
    if ban.reason:
        message += f" Reason: {_one_line(ban.reason)}"
    return PolicyRefusal("banned", message, frees_at=ban.until)


__all__ = [
    "PolicyDecision",
    "PolicyRefusal",
    "PolicyService",
    "RequestContext",
    "discord_time",
    "format_duration",
    "listed",
]
