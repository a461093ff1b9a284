"""AdminService against a real SQLite database: validation, storage, and the policy cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from cogs.i18n import ENGLISH as EN
from cogs.refusals import admin_error_text
from services.admin import (
    AdminError,
    AdminService,
    AlreadyListed,
    InvalidSetting,
    NotFound,
    parse_duration,
)
from services.errors import StudioError
from services.policy import PolicyRefusal, PolicyService, RequestContext
from storage import (
    JobKind,
    JobState,
    LedgerKind,
    NewJob,
    QuotaExceededError,
    QuotaSettings,
    Storage,
)

GUILD = 1001
ADMIN = 9009
USER = 2002
NOW = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)


@pytest.fixture
async def storage(tmp_path) -> AsyncIterator[Storage]:
    async with Storage.open(
        tmp_path / "studio.db", QuotaSettings(default_daily_credits=10), clock=lambda: NOW
    ) as opened:
        yield opened


@pytest.fixture
def policy(storage: Storage) -> PolicyService:
    return PolicyService(storage, clock=lambda: NOW)


@pytest.fixture
def admin(storage: Storage, policy: PolicyService) -> AdminService:
    return AdminService(storage, policy, clock=lambda: NOW)


def ctx(**changes: object) -> RequestContext:
    values: dict[str, object] = {
        "user_id": USER,
        "guild_id": GUILD,
        "channel_id": 3003,
        "role_ids": frozenset(),
        "is_moderator": False,
        "age_restricted_channel": False,
        "prompt": "a lighthouse at dusk",
        "safety": None,
        "in_flight": 0,
        "last_job_at": None,
    }
    values.update(changes)
    return RequestContext(**values)  # type: ignore[arg-type]


async def rule(policy: PolicyService, context: RequestContext) -> str | None:
    """The rule that refuses the request, or None if it is allowed."""
    try:
        await policy.check(context)
    except PolicyRefusal as refusal:
        return refusal.rule
    return None


async def make_job(storage: Storage, *, user_id: int = USER, cost: int = 1, images: int = 1) -> str:
    job = await storage.jobs.create_reserved(
        NewJob(
            kind=JobKind.IMAGINE,
            user_id=user_id,
            guild_id=GUILD,
            channel_id=3003,
            prompt="a lighthouse",
            params={"num_images": images, "resolution": "1K"},
            cost=cost,
        )
    )
    return job.id


async def deliver(storage: Storage, job_id: str, images: int = 1) -> None:
    urls = tuple(f"https://example.invalid/{job_id}/{i}.png" for i in range(images))
    moved = await storage.jobs.transition(job_id, JobState.DELIVERED, result_urls=urls)
    assert moved is not None


def test_admin_errors_are_studio_errors_with_the_message() -> None:
    error = InvalidSetting("seconds", "must be from {low} to {high}", low=0, high=86400)
    assert isinstance(error, AdminError)
    assert isinstance(error, StudioError)
    assert str(error) == "seconds: must be from 0 to 86400"
    assert error.field == "seconds" and str(error.problem) == "must be from 0 to 86400"


# -- every change reaches enforcement at once (the policy cache is dropped) --------------------


async def test_channels_add_remove_clear(admin: AdminService, policy: PolicyService) -> None:
    assert await rule(policy, ctx(channel_id=3003)) is None  # caches the unconfigured guild
    updated = await admin.allow_channel(GUILD, 11)
    assert updated.allowed_channel_ids == {11}
    assert await rule(policy, ctx(channel_id=3003)) == "channel"
    assert await rule(policy, ctx(channel_id=11)) is None
    await admin.allow_channel(GUILD, 12)
    assert (await admin.disallow_channel(GUILD, 11)).allowed_channel_ids == {12}
    assert await rule(policy, ctx(channel_id=11)) == "channel"
    await admin.clear_channels(GUILD)
    assert await rule(policy, ctx(channel_id=3003)) is None


async def test_channel_errors(admin: AdminService) -> None:
    await admin.allow_channel(GUILD, 11)
    with pytest.raises(AlreadyListed) as already:
        await admin.allow_channel(GUILD, 11)
    assert (already.value.what, already.value.target_id) == ("channel", 11)
    assert admin_error_text(EN, already.value) == "<#11> is already an allowed channel."
    with pytest.raises(NotFound) as missing:
        await admin.disallow_channel(GUILD, 12)
    assert (missing.value.what, missing.value.target_id) == ("channel", 12)
    assert admin_error_text(EN, missing.value) == "<#12> is not in the allowed channels."
    for channel in range(12, 36):
        await admin.allow_channel(GUILD, channel)
    with pytest.raises(InvalidSetting, match="at most 25"):
        await admin.allow_channel(GUILD, 99)


async def test_roles_add_remove_clear(admin: AdminService, policy: PolicyService) -> None:
    assert await rule(policy, ctx()) is None
    await admin.allow_role(GUILD, 77)
    assert await rule(policy, ctx()) == "role"
    assert await rule(policy, ctx(role_ids=frozenset({77}))) is None
    with pytest.raises(AlreadyListed) as already:
        await admin.allow_role(GUILD, 77)
    assert admin_error_text(EN, already.value) == "<@&77> is already an allowed role."
    with pytest.raises(NotFound):
        await admin.disallow_role(GUILD, 78)
    await admin.disallow_role(GUILD, 77)
    assert await rule(policy, ctx()) is None
    await admin.allow_role(GUILD, 78)
    await admin.clear_roles(GUILD)
    assert await rule(policy, ctx()) is None


async def test_safety_ceilings(admin: AdminService, policy: PolicyService) -> None:
    assert await rule(policy, ctx(safety=4)) is None
    updated = await admin.set_safety(GUILD, ceiling=2)
    assert (updated.max_safety, updated.max_safety_age_restricted) == (2, 6)
    assert await rule(policy, ctx(safety=4)) == "safety"
    assert (await policy.check(ctx())).safety_tolerance == 2  # the default, clamped
    await admin.set_safety(GUILD, age_restricted_ceiling=3)
    assert await rule(policy, ctx(safety=4, age_restricted_channel=True)) == "safety"
    assert await rule(policy, ctx(safety=3, age_restricted_channel=True)) is None


async def test_safety_validation(admin: AdminService) -> None:
    with pytest.raises(InvalidSetting, match="give a ceiling"):
        await admin.set_safety(GUILD)
    with pytest.raises(InvalidSetting, match="from 1 to 6"):
        await admin.set_safety(GUILD, ceiling=7)
    with pytest.raises(InvalidSetting, match="can't be lower than the normal ceiling"):
        await admin.set_safety(GUILD, age_restricted_ceiling=3)  # normal ceiling is 4
    # Both at once is fine, whatever the order they would need one at a time.
    updated = await admin.set_safety(GUILD, ceiling=2, age_restricted_ceiling=3)
    assert (updated.max_safety, updated.max_safety_age_restricted) == (2, 3)


async def test_blocklist_add_list_remove(admin: AdminService, policy: PolicyService) -> None:
    assert await rule(policy, ctx(prompt="a dragon")) is None
    entry = await admin.add_block(GUILD, "  dragon ", is_regex=False, actor_id=ADMIN)
    assert (entry.pattern, entry.is_regex, entry.added_by) == ("dragon", False, ADMIN)
    assert await rule(policy, ctx(prompt="a d r a g o n")) == "blocklist"
    regex = await admin.add_block(GUILD, r"tower\s+\d+", is_regex=True, actor_id=ADMIN)
    assert [e.id for e in await admin.blocklist(GUILD)] == [entry.id, regex.id]
    await admin.remove_block(GUILD, entry.id)
    assert await rule(policy, ctx(prompt="a dragon")) is None
    with pytest.raises(NotFound) as missing:
        await admin.remove_block(GUILD, entry.id)
    assert admin_error_text(EN, missing.value) == f"There is no blocklist entry #{entry.id}."


async def test_blocklist_validation(admin: AdminService) -> None:
    with pytest.raises(InvalidSetting, match="pattern"):
        await admin.add_block(GUILD, "(unclosed", is_regex=True, actor_id=ADMIN)
    with pytest.raises(InvalidSetting, match="pattern"):
        await admin.add_block(GUILD, r"(a)\1", is_regex=True, actor_id=ADMIN)
    with pytest.raises(InvalidSetting, match="empty"):
        await admin.add_block(GUILD, "   ", is_regex=False, actor_id=ADMIN)
    with pytest.raises(InvalidSetting, match="at most 200"):
        await admin.add_block(GUILD, "x" * 201, is_regex=False, actor_id=ADMIN)
    entry = await admin.add_block(GUILD, "Dragon", is_regex=False, actor_id=ADMIN)
    with pytest.raises(AlreadyListed) as already:
        await admin.add_block(GUILD, "dragon", is_regex=False, actor_id=ADMIN)
    assert admin_error_text(EN, already.value) == (
        f"That's already on the blocklist (entry #{entry.id})."
    )
    assert len(await admin.blocklist(GUILD)) == 1


async def test_blocklists_are_per_guild(admin: AdminService) -> None:
    entry = await admin.add_block(GUILD, "dragon", is_regex=False, actor_id=ADMIN)
    with pytest.raises(NotFound):
        await admin.remove_block(GUILD + 1, entry.id)
    assert await admin.blocklist(GUILD + 1) == []


async def test_cooldown(admin: AdminService, policy: PolicyService) -> None:
    assert await rule(policy, ctx(last_job_at=NOW)) is None
    await admin.set_cooldown(GUILD, 45)
    assert await rule(policy, ctx(last_job_at=NOW - timedelta(seconds=44))) == "cooldown"
    assert await rule(policy, ctx(last_job_at=NOW - timedelta(seconds=45))) is None
    await admin.set_cooldown(GUILD, 0)
    assert await rule(policy, ctx(last_job_at=NOW)) is None
    for bad in (-1, 86_401):
        with pytest.raises(InvalidSetting, match="seconds"):
            await admin.set_cooldown(GUILD, bad)


async def test_max_in_flight(admin: AdminService, policy: PolicyService) -> None:
    assert await rule(policy, ctx(in_flight=1)) is None
    await admin.set_max_in_flight(GUILD, 1)
    assert await rule(policy, ctx(in_flight=1)) == "in_flight"
    for bad in (0, 21):
        with pytest.raises(InvalidSetting, match="jobs"):
            await admin.set_max_in_flight(GUILD, bad)


async def test_ban_and_unban(admin: AdminService, policy: PolicyService) -> None:
    assert await rule(policy, ctx()) is None
    ban = await admin.ban(GUILD, USER, actor_id=ADMIN, reason="  too   much spam ", duration="2h")
    assert ban.until == NOW + timedelta(hours=2)
    assert ban.reason == "too much spam"
    assert ban.banned_by == ADMIN
    assert await rule(policy, ctx()) == "banned"
    await admin.unban(GUILD, USER)
    assert await rule(policy, ctx()) is None
    with pytest.raises(NotFound) as missing:
        await admin.unban(GUILD, USER)
    assert admin_error_text(EN, missing.value) == f"<@{USER}> isn't banned from the studio."


async def test_a_ban_without_duration_lasts_until_lifted(admin: AdminService) -> None:
    ban = await admin.ban(GUILD, USER, actor_id=ADMIN, duration=None)
    assert (ban.until, ban.reason) == (None, None)
    ban = await admin.ban(GUILD, USER, actor_id=ADMIN, duration="  ")
    assert ban.until is None


async def test_ban_validation(admin: AdminService, policy: PolicyService) -> None:
    with pytest.raises(InvalidSetting, match="can't ban yourself"):
        await admin.ban(GUILD, ADMIN, actor_id=ADMIN)
    with pytest.raises(InvalidSetting, match="not a duration"):
        await admin.ban(GUILD, USER, actor_id=ADMIN, duration="soon")
    with pytest.raises(InvalidSetting, match="reason"):
        await admin.ban(GUILD, USER, actor_id=ADMIN, reason="x" * 301)
    assert await rule(policy, ctx()) is None  # nothing was written


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("2 hours", timedelta(hours=2)),
        ("3 days", timedelta(days=3)),
        ("45 min", timedelta(minutes=45)),
        ("2H", timedelta(hours=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "2", "h", "2x", "-2h", "2h and 3m", "30s", "400d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(InvalidSetting) as caught:
        parse_duration(text)
    assert caught.value.field == "duration"


async def test_log_channel_approval_and_dms(admin: AdminService, policy: PolicyService) -> None:
    assert (await admin.set_log_channel(GUILD, 55)).log_channel_id == 55
    assert (await policy.policy(GUILD)).log_channel_id == 55
    assert (await admin.set_log_channel(GUILD, None)).log_channel_id is None
    assert (await admin.set_approval(GUILD, True)).approval_mode is True
    assert (await policy.policy(GUILD)).approval_mode is True
    assert await policy.may_dm_members(GUILD) is False
    await admin.set_dms(GUILD, True)
    assert await policy.may_dm_members(GUILD) is True


# -- quota -------------------------------------------------------------------------------------


async def test_default_credits_and_cap(admin: AdminService, storage: Storage) -> None:
    assert (await admin.balance(GUILD, USER)).limit == 10  # the global default
    await admin.set_default_credits(GUILD, 3)
    balance = await admin.balance(GUILD, USER)
    assert (balance.limit, balance.limit_source) == (3, "guild default")
    await admin.set_default_credits(GUILD, None)
    assert (await admin.balance(GUILD, USER)).limit == 10
    await admin.set_daily_cap(GUILD, 1)
    await make_job(storage, user_id=USER + 1)
    with pytest.raises(QuotaExceededError, match="guild daily cap"):
        await make_job(storage)
    await admin.set_daily_cap(GUILD, None)
    await make_job(storage)
    with pytest.raises(InvalidSetting, match="credits"):
        await admin.set_default_credits(GUILD, -1)
    with pytest.raises(InvalidSetting, match="cap"):
        await admin.set_daily_cap(GUILD, 1_000_001)


async def test_role_tiers(admin: AdminService) -> None:
    updated = await admin.set_role_tier(GUILD, 77, 50)
    assert updated.role_tiers == {77: 50}
    balance = await admin.balance(GUILD, USER, role_ids=[77])
    assert (balance.limit, balance.limit_source) == (50, "role tier")
    await admin.remove_role_tier(GUILD, 77)
    assert (await admin.balance(GUILD, USER, role_ids=[77])).limit == 10
    with pytest.raises(NotFound) as missing:
        await admin.remove_role_tier(GUILD, 77)
    assert admin_error_text(EN, missing.value) == "<@&77> has no credit tier."
    with pytest.raises(InvalidSetting):
        await admin.set_role_tier(GUILD, 77, 100_001)


async def test_user_override(admin: AdminService, storage: Storage) -> None:
    await admin.set_role_tier(GUILD, 77, 50)
    await admin.set_user_override(GUILD, USER, 2)
    assert await storage.policy.get_user_override(GUILD, USER) == 2
    balance = await admin.balance(GUILD, USER, role_ids=[77])
    assert (balance.limit, balance.limit_source) == (2, "user override")
    await admin.set_user_override(GUILD, USER, None)
    assert (await admin.balance(GUILD, USER, role_ids=[77])).limit == 50
    with pytest.raises(NotFound) as missing:
        await admin.set_user_override(GUILD, USER, None)
    assert admin_error_text(EN, missing.value) == f"<@{USER}> has no personal daily credits set."


async def test_grant_reset_and_ledger(admin: AdminService, storage: Storage) -> None:
    await admin.set_default_credits(GUILD, 2)
    for _ in range(2):
        await deliver(storage, await make_job(storage))
    with pytest.raises(QuotaExceededError, match="daily allowance"):
        await make_job(storage)
    grant = await admin.grant(GUILD, USER, 3, actor_id=ADMIN, reason="contest winner")
    assert (grant.kind, grant.amount, grant.actor_id) == (LedgerKind.GRANT, 3, ADMIN)
    assert (await admin.balance(GUILD, USER)).remaining == 3
    await admin.reset_day(GUILD, USER, actor_id=ADMIN)
    assert (await admin.balance(GUILD, USER)).remaining == 5
    kinds = [e.kind for e in await admin.ledger(GUILD, USER)]
    assert kinds[:2] == [LedgerKind.RESET, LedgerKind.GRANT]
    assert kinds.count(LedgerKind.RESERVE) == 2
    for bad in (0, 10_001):
        with pytest.raises(InvalidSetting, match="amount"):
            await admin.grant(GUILD, USER, bad, actor_id=ADMIN)


async def test_blocklist_problems_name_stored_entries_that_match_nothing(
    admin: AdminService, storage: Storage
) -> None:
    good = await admin.add_block(GUILD, "dragon", is_regex=False, actor_id=ADMIN)
    # stored before validation tightened (storage itself only checks the length)
    bad = await storage.policy.add_block(GUILD, r"(a)\1", is_regex=True, added_by=ADMIN)
    problems = await admin.blocklist_problems(GUILD)
    assert list(problems) == [bad.id] and good.id not in problems
    assert problems[bad.id]


# -- reports -----------------------------------------------------------------------------------


async def test_settings_summary(admin: AdminService) -> None:
    summary = await admin.settings(GUILD)
    assert summary.policy.guild_id == GUILD
    assert (summary.blocklist_entries, summary.active_bans) == (0, ())
    assert summary.global_default_credits == 10
    await admin.allow_channel(GUILD, 11)
    await admin.add_block(GUILD, "dragon", is_regex=False, actor_id=ADMIN)
    await admin.ban(GUILD, USER, actor_id=ADMIN, reason="spam")
    await admin.ban(GUILD, USER + 1, actor_id=ADMIN, duration="1h")
    summary = await admin.settings(GUILD)
    assert summary.policy.allowed_channel_ids == {11}
    assert summary.blocklist_entries == 1
    assert {b.user_id for b in summary.active_bans} == {USER, USER + 1}


async def test_stats(admin: AdminService, storage: Storage) -> None:
    await admin.set_default_credits(GUILD, 100)
    for images in (1, 2):
        await deliver(storage, await make_job(storage, cost=images, images=images), images)
    failed = await make_job(storage, user_id=USER + 1)
    await storage.jobs.transition(failed, JobState.FAILED, error="boom")
    await deliver(storage, await make_job(storage, user_id=USER + 1, cost=4))
    report = await admin.stats(GUILD)
    for stats in (report.today, report.week):
        assert (stats.jobs, stats.images_delivered, stats.failures) == (4, 4, 1)
        assert stats.credits_spent == 7
        assert stats.top_users == ((USER + 1, 4), (USER, 3))
    assert report.today.since == datetime(2030, 5, 17, tzinfo=UTC)
    assert report.week.since == NOW - timedelta(days=7)
    assert (await admin.stats(GUILD + 1)).today.jobs == 0
