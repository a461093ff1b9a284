"""PolicyService against a real SQLite database: every rule, clamp vs refuse, the cache.

Refusals are typed data; what the member reads is asserted through the cogs' wording of them
(``cogs.refusals.refusal_text``), which is the only place it is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cogs.i18n import ENGLISH as EN
from cogs.refusals import refusal_text
from services.policy import (
    Banned,
    CoolingDown,
    DmsOff,
    MissingRole,
    PolicyRefusal,
    PolicyService,
    PromptBlocked,
    RequestContext,
    SafetyTooHigh,
    TooManyInFlight,
    WrongChannel,
)
from storage import QuotaSettings, Storage
from storage.models import GuildPolicy

GUILD = 1001
USER = 2002
CHANNEL = 3003
NOW = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)


@pytest.fixture
async def storage(tmp_path) -> AsyncIterator[Storage]:
    async with Storage.open(tmp_path / "studio.db", QuotaSettings()) as opened:
        yield opened


@pytest.fixture
def service(storage: Storage) -> PolicyService:
    return PolicyService(storage, clock=lambda: NOW)


def ctx(**changes: object) -> RequestContext:
    base = RequestContext(
        user_id=USER,
        guild_id=GUILD,
        channel_id=CHANNEL,
        role_ids=frozenset(),
        is_moderator=False,
        age_restricted_channel=False,
        prompt="a lighthouse at dusk",
        safety=None,
        in_flight=0,
        last_job_at=None,
    )
    return replace(base, **changes)


async def refusal(service: PolicyService, context: RequestContext) -> PolicyRefusal:
    with pytest.raises(PolicyRefusal) as caught:
        await service.check(context)
    assert "<" not in str(caught.value)  # the log line: no Discord markup in services
    return caught.value


async def test_an_unconfigured_guild_allows_a_plain_request(service: PolicyService) -> None:
    decision = await service.check(ctx())
    assert decision.safety_tolerance == 4
    assert decision.notes == ()
    assert decision.policy == GuildPolicy(guild_id=GUILD)


# -- channels and roles -----------------------------------------------------------------------


async def test_wrong_channel_names_the_allowed_channels(storage, service) -> None:
    await storage.policy.update(GUILD, allowed_channel_ids=frozenset({11, 12}))
    refused = await refusal(service, ctx(channel_id=CHANNEL))
    assert refused.rule == "channel"
    assert isinstance(refused, WrongChannel) and refused.channel_ids == (11, 12)
    assert refusal_text(EN, refused) == "Image generation is only enabled in <#11> and <#12>."
    assert refused.frees_at is None
    assert (await service.check(ctx(channel_id=12))).safety_tolerance == 4


async def test_a_thread_is_allowed_by_itself_or_by_its_parent(storage, service) -> None:
    thread, forum, other = 31, 11, 12
    await storage.policy.update(GUILD, allowed_channel_ids=frozenset({forum}))
    # a thread (or forum post) in an allowed channel or forum
    await service.check(ctx(channel_id=thread, parent_channel_id=forum))
    assert (await refusal(service, ctx(channel_id=thread, parent_channel_id=other))).rule == (
        "channel"
    )
    # a thread allowed on its own, in a channel that is not
    await storage.policy.update(GUILD, allowed_channel_ids=frozenset({thread}))
    service.invalidate(GUILD)
    await service.check(ctx(channel_id=thread, parent_channel_id=other))
    assert (await refusal(service, ctx(channel_id=other))).rule == "channel"


async def test_a_long_channel_list_is_shortened(storage, service) -> None:
    await storage.policy.update(GUILD, allowed_channel_ids=frozenset(range(11, 19)))
    refused = await refusal(service, ctx())
    assert refusal_text(EN, refused).endswith("<#15>, and 3 more.")


async def test_moderators_follow_the_channel_rule_too(storage, service) -> None:
    await storage.policy.update(GUILD, allowed_channel_ids=frozenset({11}))
    assert (await refusal(service, ctx(is_moderator=True))).rule == "channel"


async def test_missing_role_names_the_roles(storage, service) -> None:
    await storage.policy.update(GUILD, allowed_role_ids=frozenset({77}))
    refused = await refusal(service, ctx(role_ids=frozenset({5, 6})))
    assert refused.rule == "role"
    assert refusal_text(EN, refused) == "The studio here is for members with the role <@&77>."
    await service.check(ctx(role_ids=frozenset({6, 77})))
    assert (await refusal(service, ctx(is_moderator=True))).rule == "role"


async def test_several_roles_are_listed(storage, service) -> None:
    await storage.policy.update(GUILD, allowed_role_ids=frozenset({77, 78}))
    refused = await refusal(service, ctx())
    assert refusal_text(EN, refused) == (
        "The studio here is for members with one of these roles: <@&77> and <@&78>."
    )


# -- bans -------------------------------------------------------------------------------------


async def test_a_permanent_ban_refuses_with_the_reason(storage, service) -> None:
    await storage.policy.ban(GUILD, USER, reason="spam\nspam", banned_by=9, until=None)
    refused = await refusal(service, ctx())
    assert refused.rule == "banned"
    assert refused.frees_at is None
    assert isinstance(refused, Banned) and refused.reason == "spam\nspam"
    assert (
        refusal_text(EN, refused)
        == "You're banned from the studio in this server. Reason: spam spam"
    )


async def test_a_timed_ban_says_when_it_ends_and_then_ends(storage) -> None:
    until = NOW + timedelta(hours=2)
    await storage.policy.ban(GUILD, USER, reason=None, banned_by=9, until=until)
    clock = [NOW]
    service = PolicyService(storage, clock=lambda: clock[0])
    refused = await refusal(service, ctx())
    assert refused.rule == "banned"
    assert refused.frees_at == until
    stamp = int(until.timestamp())
    assert refusal_text(EN, refused) == (
        f"You're banned from the studio in this server until <t:{stamp}:R>."
    )
    # The cached ban expires by itself: no invalidation needed.
    clock[0] = until + timedelta(seconds=1)
    await service.check(ctx())


async def test_a_ban_in_one_guild_does_not_apply_in_another(storage, service) -> None:
    await storage.policy.ban(GUILD, USER, reason=None, banned_by=9, until=None)
    await service.check(ctx(guild_id=GUILD + 1))
    await service.check(ctx(user_id=USER + 1))


async def test_a_ban_is_reported_before_the_channel_rule(storage, service) -> None:
    await storage.policy.update(GUILD, allowed_channel_ids=frozenset({11}))
    await storage.policy.ban(GUILD, USER, reason=None, banned_by=9, until=None)
    assert (await refusal(service, ctx(is_moderator=True))).rule == "banned"


# -- cooldown and jobs in flight --------------------------------------------------------------


async def test_cooldown_says_when_the_member_may_go_again(storage, service) -> None:
    await storage.policy.update(GUILD, cooldown_seconds=30)
    last = NOW - timedelta(seconds=10)
    refused = await refusal(service, ctx(last_job_at=last))
    frees_at = last + timedelta(seconds=30)
    assert refused.rule == "cooldown"
    assert refused.frees_at == frees_at
    assert isinstance(refused, CoolingDown) and refused.cooldown_seconds == 30
    assert refusal_text(EN, refused) == (
        f"You can use the studio again <t:{int(frees_at.timestamp())}:R> (cooldown: 30 sec)."
    )
    await service.check(ctx(last_job_at=NOW - timedelta(seconds=30)))
    await service.check(ctx(last_job_at=None))


async def test_moderators_skip_the_cooldown(storage, service) -> None:
    await storage.policy.update(GUILD, cooldown_seconds=600)
    await service.check(ctx(is_moderator=True, last_job_at=NOW))


async def test_too_many_jobs_in_flight(storage, service) -> None:
    await storage.policy.update(GUILD, max_jobs_in_flight=2)
    await service.check(ctx(in_flight=1))
    refused = await refusal(service, ctx(in_flight=2))
    assert refused.rule == "in_flight"
    assert refused.frees_at is None
    assert "2 jobs in progress (limit: 2 at a time)" in refusal_text(EN, refused)
    # The limit bounds spend, so it binds moderators as well.
    assert (await refusal(service, ctx(in_flight=2, is_moderator=True))).rule == "in_flight"


async def test_the_default_in_flight_limit_is_three(service) -> None:
    await service.check(ctx(in_flight=2))
    assert (await refusal(service, ctx(in_flight=3))).rule == "in_flight"


# -- DMs --------------------------------------------------------------------------------------


async def test_dms_are_refused_by_default(service) -> None:
    refused = await refusal(service, ctx(guild_id=None))
    assert refused.rule == "dms"
    assert (
        refusal_text(EN, refused) == "The studio doesn't work in DMs. Use it in a server instead."
    )


async def test_dms_when_the_operator_allows_them(storage) -> None:
    service = PolicyService(
        storage,
        allow_dms=True,
        dm_policy=GuildPolicy(guild_id=0, max_jobs_in_flight=1, max_safety=2),
        clock=lambda: NOW,
    )
    decision = await service.check(ctx(guild_id=None))
    assert decision.safety_tolerance == 2  # the default 4, clamped to the DM ceiling
    assert (await refusal(service, ctx(guild_id=None, in_flight=1))).rule == "in_flight"


async def test_the_guild_dms_setting_says_whether_members_may_be_dmed(storage, service) -> None:
    assert await service.may_dm_members(GUILD) is False
    await storage.policy.update(GUILD, dms_enabled=True)
    service.invalidate(GUILD)
    assert await service.may_dm_members(GUILD) is True


# -- safety -----------------------------------------------------------------------------------


async def test_asking_above_the_ceiling_is_refused(storage, service) -> None:
    await storage.policy.update(GUILD, max_safety=3, max_safety_age_restricted=3)
    refused = await refusal(service, ctx(safety=5))
    assert refused.rule == "safety"
    assert isinstance(refused, SafetyTooHigh)
    assert (refused.asked, refused.ceiling, refused.age_restricted_ceiling) == (5, 3, None)
    assert (
        refusal_text(EN, refused)
        == "Safety 5 is above this server's ceiling of 3. Pick 3 or lower."
    )


async def test_the_refusal_points_to_age_restricted_channels(service) -> None:
    refused = await refusal(service, ctx(safety=6))
    assert refusal_text(EN, refused) == (
        "Safety 6 is above this server's ceiling of 4 here"
        " (age-restricted channels allow up to 6). Pick 4 or lower."
    )


async def test_age_restricted_channels_use_their_own_ceiling(storage, service) -> None:
    decision = await service.check(ctx(safety=6, age_restricted_channel=True))
    assert decision.safety_tolerance == 6
    await storage.policy.update(GUILD, max_safety=2, max_safety_age_restricted=5)
    service.invalidate(GUILD)
    assert (await refusal(service, ctx(safety=6, age_restricted_channel=True))).rule == "safety"
    assert (await service.check(ctx(safety=5, age_restricted_channel=True))).safety_tolerance == 5


async def test_a_value_within_the_ceiling_is_sent_as_asked(service) -> None:
    decision = await service.check(ctx(safety=1))
    assert (decision.safety_tolerance, decision.notes) == (1, ())


async def test_the_default_is_clamped_with_a_note_when_the_member_did_not_ask(storage) -> None:
    await storage.policy.update(GUILD, max_safety=2)
    service = PolicyService(storage, default_safety=4)
    decision = await service.check(ctx(safety=None))
    assert decision.safety_tolerance == 2
    assert [str(n) for n in decision.notes] == ["safety lowered to 2, this server's ceiling"]


async def test_a_default_below_the_ceiling_is_kept(storage) -> None:
    service = PolicyService(storage, default_safety=2)
    decision = await service.check(ctx(safety=None, age_restricted_channel=True))
    assert (decision.safety_tolerance, decision.notes) == (2, ())


# -- blocklist --------------------------------------------------------------------------------


async def test_a_blocked_prompt_is_refused_without_echoing_it(storage, service) -> None:
    entry = await storage.policy.add_block(GUILD, "dragon", is_regex=False, added_by=9)
    refused = await refusal(service, ctx(prompt="A RED Dragon over the sea"))
    assert refused.rule == "blocklist"
    assert refused.matched == entry.pattern
    assert "dragon" not in refusal_text(EN, refused).lower()
    await service.check(ctx(prompt="a red wyvern over the sea"))


async def test_regex_entries_are_used(storage, service) -> None:
    await storage.policy.add_block(GUILD, r"castle\s*\d+", is_regex=True, added_by=9)
    assert (await refusal(service, ctx(prompt="castle 42 at night"))).rule == "blocklist"
    await service.check(ctx(prompt="castle at night"))


async def test_blocklists_are_per_guild(storage, service) -> None:
    await storage.policy.add_block(GUILD, "dragon", is_regex=False, added_by=9)
    await service.check(ctx(guild_id=GUILD + 1, prompt="a dragon"))


async def test_blocklist_comes_before_the_rate_rules(storage, service) -> None:
    await storage.policy.update(GUILD, cooldown_seconds=60)
    await storage.policy.add_block(GUILD, "dragon", is_regex=False, added_by=9)
    refused = await refusal(service, ctx(prompt="a dragon", last_job_at=NOW, in_flight=3))
    assert refused.rule == "blocklist"


# -- the cache --------------------------------------------------------------------------------


async def test_rules_are_cached_until_invalidated(storage, service) -> None:
    await service.check(ctx())
    await storage.policy.update(GUILD, allowed_channel_ids=frozenset({11}))
    await storage.policy.add_block(GUILD, "dragon", is_regex=False, added_by=9)
    await storage.policy.ban(GUILD, USER + 1, reason=None, banned_by=9, until=None)
    # Still the cached rules: the change went around the service.
    await service.check(ctx(prompt="a dragon"))
    await service.check(ctx(user_id=USER + 1))
    service.invalidate(GUILD)
    assert (await refusal(service, ctx(channel_id=11, prompt="a dragon"))).rule == "blocklist"
    assert (await refusal(service, ctx(channel_id=11, user_id=USER + 1))).rule == "banned"
    assert (await refusal(service, ctx())).rule == "channel"


async def test_invalidating_one_guild_keeps_the_others(storage, service) -> None:
    other = GUILD + 1
    await service.check(ctx())
    await service.check(ctx(guild_id=other))
    await storage.policy.update(other, cooldown_seconds=60)
    await storage.policy.update(GUILD, cooldown_seconds=60)
    service.invalidate(GUILD)
    assert (await refusal(service, ctx(last_job_at=NOW))).rule == "cooldown"
    await service.check(ctx(guild_id=other, last_job_at=NOW))


async def test_concurrent_first_requests_load_once(storage, service, monkeypatch) -> None:
    calls = 0
    real_get = storage.policy.get

    async def counting_get(guild_id: int) -> GuildPolicy:
        nonlocal calls
        calls += 1
        return await real_get(guild_id)

    monkeypatch.setattr(storage.policy, "get", counting_get)
    await asyncio.gather(*(service.check(ctx(user_id=u)) for u in range(50)))
    await service.check(ctx())
    assert calls == 1
    service.invalidate(GUILD)
    await service.check(ctx())
    assert calls == 2


async def test_a_load_started_before_invalidate_is_not_kept(storage, service, monkeypatch) -> None:
    release = asyncio.Event()
    real_get = storage.policy.get

    async def slow_get(guild_id: int) -> GuildPolicy:
        policy = await real_get(guild_id)
        await release.wait()
        return policy

    monkeypatch.setattr(storage.policy, "get", slow_get)
    first = asyncio.create_task(service.check(ctx()))
    await asyncio.sleep(0)
    await storage.policy.update(GUILD, allowed_channel_ids=frozenset({11}))
    service.invalidate(GUILD)
    release.set()
    await first  # answered from the (old) rules it loaded
    assert (await refusal(service, ctx())).rule == "channel"


async def test_a_failed_load_is_retried(storage, service, monkeypatch) -> None:
    real_get = storage.policy.get
    failures = [RuntimeError("database is locked")]

    async def flaky_get(guild_id: int) -> GuildPolicy:
        if failures:
            raise failures.pop()
        return await real_get(guild_id)

    monkeypatch.setattr(storage.policy, "get", flaky_get)
    with pytest.raises(RuntimeError):
        await service.check(ctx())
    await service.check(ctx())


async def test_policy_is_served_from_the_cache(storage, service) -> None:
    assert (await service.policy(GUILD)).cooldown_seconds == 0
    await storage.policy.update(GUILD, cooldown_seconds=5)
    assert (await service.policy(GUILD)).cooldown_seconds == 0
    service.invalidate(GUILD)
    assert (await service.policy(GUILD)).cooldown_seconds == 5


def test_every_rule_has_its_own_sentence() -> None:
    refusals = [
        DmsOff(),
        Banned(None, None),
        WrongChannel({11}),
        MissingRole({77}),
        SafetyTooHigh(5, 3, age_restricted_ceiling=None),
        PromptBlocked("dragon"),
        TooManyInFlight(3, 3),
        CoolingDown(NOW, 30),
    ]
    assert {type(r) for r in refusals} == set(PolicyRefusal.__subclasses__())
    told = {refusal_text(EN, r) for r in refusals}
    assert len(told) == len(refusals)
    assert "The studio can't take this request here right now." not in told


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 sec"),
        (45, "45 sec"),
        (90, "1 min 30 sec"),
        (3600, "1 hr"),
        (5400, "1 hr 30 min"),
        (86_400 * 3 + 3600 * 4 + 60, "3 days 4 hr"),
    ],
)
def test_format_duration(seconds: int, shown: str) -> None:
    assert EN.duration(seconds) == shown
