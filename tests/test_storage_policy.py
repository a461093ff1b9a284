"""Guild policy: defaults, validated updates, tiers and overrides, blocklist, bans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from storage import GuildPolicy, InvalidSettingError
from tests.storage_fixtures import GUILD, OTHER_GUILD, T0, FakeClock, open_storage


async def test_an_unconfigured_guild_gets_the_defaults(db_target):
    async with open_storage(db_target) as storage:
        policy = await storage.policy.get(GUILD)
        assert policy == GuildPolicy(guild_id=GUILD)
        assert policy.allowed_channel_ids == frozenset()  # every channel
        assert policy.allowed_role_ids == frozenset()  # everyone
        assert (policy.max_safety, policy.max_safety_age_restricted) == (4, 6)
        assert (policy.default_daily_credits, policy.daily_cap) == (None, None)
        assert (policy.approval_mode, policy.dms_enabled) == (False, False)
        assert (policy.cooldown_seconds, policy.max_jobs_in_flight) == (0, 3)


async def test_update_changes_only_the_named_fields_and_persists(db_target):
    async with open_storage(db_target) as storage:
        await storage.policy.update(GUILD, allowed_channel_ids={10, 11}, cooldown_seconds=30)
        policy = await storage.policy.update(
            GUILD,
            allowed_role_ids=[20],
            default_daily_credits=12,
            daily_cap=500,
            max_safety=2,
            max_safety_age_restricted=5,
            log_channel_id=30,
            approval_mode=True,
            max_jobs_in_flight=1,
            dms_enabled=True,
        )
        expected = GuildPolicy(
            guild_id=GUILD,
            allowed_channel_ids=frozenset({10, 11}),
            allowed_role_ids=frozenset({20}),
            default_daily_credits=12,
            daily_cap=500,
            max_safety=2,
            max_safety_age_restricted=5,
            log_channel_id=30,
            approval_mode=True,
            cooldown_seconds=30,
            max_jobs_in_flight=1,
            dms_enabled=True,
        )
        assert policy == expected
    async with open_storage(db_target) as storage:
        assert await storage.policy.get(GUILD) == expected
        assert await storage.policy.get(OTHER_GUILD) == GuildPolicy(guild_id=OTHER_GUILD)
        # None puts an optional setting back to "not set".
        cleared = await storage.policy.update(GUILD, daily_cap=None, log_channel_id=None)
        assert (cleared.daily_cap, cleared.log_channel_id) == (None, None)
        assert (await storage.policy.update(GUILD, allowed_channel_ids=())).allowed_channel_ids == (
            frozenset()
        )


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"colour": "red"}, "colour"),
        ({"guild_id": 5}, "guild_id"),
        ({"role_tiers": {1: 2}}, "role_tiers"),
        ({"max_safety": 7}, "max_safety"),
        ({"max_safety_age_restricted": 0}, "max_safety_age_restricted"),
        ({"cooldown_seconds": -1}, "cooldown_seconds"),
        ({"max_jobs_in_flight": 0}, "max_jobs_in_flight"),
        ({"daily_cap": -10}, "daily_cap"),
        ({"default_daily_credits": "20"}, "default_daily_credits"),
        ({"approval_mode": 1}, "approval_mode"),
        ({"allowed_channel_ids": "123"}, "allowed_channel_ids"),
        ({"allowed_role_ids": [5, -2]}, "allowed_role_ids"),
        ({"log_channel_id": True}, "log_channel_id"),
        ({"cooldown_seconds": 10, "max_safety": 9}, "max_safety"),
    ],
)
async def test_update_rejects_bad_names_and_values_naming_the_field(db_target, fields, bad):
    async with open_storage(db_target) as storage:
        with pytest.raises(ValueError) as caught:
            await storage.policy.update(GUILD, **fields)
        assert isinstance(caught.value, InvalidSettingError)
        assert caught.value.field == bad
        assert str(caught.value).startswith(f"{bad}: ")
        # Nothing was written, not even the valid fields given alongside.
        assert await storage.policy.get(GUILD) == GuildPolicy(guild_id=GUILD)


async def test_role_tiers_and_user_overrides(db_target):
    async with open_storage(db_target) as storage:
        await storage.policy.set_role_tier(GUILD, 501, 30)
        await storage.policy.set_role_tier(GUILD, 502, 50)
        await storage.policy.set_role_tier(GUILD, 501, 35)
        assert (await storage.policy.get(GUILD)).role_tiers == {501: 35, 502: 50}
        await storage.policy.set_role_tier(GUILD, 502, None)
        assert (await storage.policy.get(GUILD)).role_tiers == {501: 35}
        assert (await storage.policy.get(OTHER_GUILD)).role_tiers == {}

        assert await storage.policy.get_user_override(GUILD, 7) is None
        await storage.policy.set_user_override(GUILD, 7, 0)  # zero: may not generate
        assert await storage.policy.get_user_override(GUILD, 7) == 0
        await storage.policy.set_user_override(GUILD, 7, None)
        assert await storage.policy.get_user_override(GUILD, 7) is None
        with pytest.raises(InvalidSettingError, match="credits"):
            await storage.policy.set_role_tier(GUILD, 501, -1)
        with pytest.raises(InvalidSettingError, match="role_id"):
            await storage.policy.set_role_tier(GUILD, 0, 5)


async def test_blocklist(db_target):
    async with open_storage(db_target) as storage:
        word = await storage.policy.add_block(GUILD, "  gore ", is_regex=False, added_by=9)
        assert (word.pattern, word.is_regex, word.added_by, word.at) == ("gore", False, 9, T0)
        regex = await storage.policy.add_block(GUILD, r"\bnsfw\d*\b", is_regex=True, added_by=9)
        again = await storage.policy.add_block(GUILD, "gore", is_regex=False, added_by=10)
        assert again == word  # adding twice is a no-op
        await storage.policy.add_block(OTHER_GUILD, "other", is_regex=False, added_by=None)
        assert await storage.policy.blocklist(GUILD) == [word, regex]
        assert await storage.policy.remove_block(GUILD, word.id) is True
        assert await storage.policy.remove_block(GUILD, word.id) is False
        assert await storage.policy.remove_block(OTHER_GUILD, regex.id) is False
        assert await storage.policy.blocklist(GUILD) == [regex]
        with pytest.raises(InvalidSettingError, match="pattern: not a valid regular expression"):
            await storage.policy.add_block(GUILD, "(unclosed", is_regex=True, added_by=9)
        with pytest.raises(InvalidSettingError, match="pattern"):
            await storage.policy.add_block(GUILD, "   ", is_regex=False, added_by=9)


async def test_bans_with_expiry(db_target):
    clock = FakeClock()
    async with open_storage(db_target, clock=clock) as storage:
        until = T0 + timedelta(hours=2)
        ban = await storage.policy.ban(GUILD, 7, reason="spam", banned_by=9, until=until)
        assert (ban.reason, ban.banned_by, ban.until, ban.at) == ("spam", 9, until, T0)
        assert await storage.policy.get_ban(GUILD, 7) == ban
        assert await storage.policy.get_ban(OTHER_GUILD, 7) is None
        assert await storage.policy.get_ban(GUILD, 7, now=until - timedelta(seconds=1)) == ban
        assert await storage.policy.get_ban(GUILD, 7, now=until) is None
        clock.advance(hours=3)
        assert await storage.policy.get_ban(GUILD, 7) is None
        assert await storage.policy.bans(GUILD) == []

        forever = await storage.policy.ban(GUILD, 7, reason=None, banned_by=9, until=None)
        assert await storage.policy.get_ban(GUILD, 7, now=T0 + timedelta(days=3650)) == forever
        assert await storage.policy.bans(GUILD) == [forever]
        assert await storage.policy.unban(GUILD, 7) is True
        assert await storage.policy.unban(GUILD, 7) is False
        assert await storage.policy.get_ban(GUILD, 7) is None


async def test_ban_times_must_be_timezone_aware(db_target):
    async with open_storage(db_target) as storage:
        with pytest.raises(InvalidSettingError) as caught:
            await storage.policy.ban(GUILD, 7, reason=None, banned_by=9, until=datetime(2030, 1, 1))
        assert caught.value.field == "until"
        # An aware time in another zone is stored as the same instant in UTC.
        tokyo = datetime(2030, 1, 1, 9, tzinfo=timezone(timedelta(hours=9)))
        await storage.policy.ban(GUILD, 7, reason=None, banned_by=9, until=tokyo)
        stored = await storage.policy.get_ban(GUILD, 7)
        assert stored.until == datetime(2030, 1, 1, 0, tzinfo=UTC)
        assert stored.until.tzinfo is UTC
