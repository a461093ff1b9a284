"""The quota ledger: costs, atomic reservations under races, limits, commit/refund, grant/reset."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from storage import (
    InvalidSettingError,
    JobState,
    LedgerKind,
    QuotaExceededError,
    QuotaSettings,
    TooManyJobsError,
)
from tests.storage_fixtures import GUILD, OTHER_GUILD, T0, FakeClock, new_job, open_storage

MIDNIGHT = datetime(2025, 3, 15, tzinfo=UTC)


def _outcomes(results):
    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    return granted, refused


# --- settings -------------------------------------------------------------------------------


def test_cost_is_images_times_the_resolution_weight():
    quota = QuotaSettings()
    assert quota.cost(3, "1K") == 3
    assert quota.cost(2, "4K") == 8
    assert quota.cost(1, "0.5K") == 1
    custom = QuotaSettings(resolution_weights={"2K": 3})
    assert custom.cost(2, "2K") == 6
    assert custom.cost(2, "4K") == 8  # unnamed resolutions keep their default


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"default_daily_credits": -1}, "default_daily_credits"),
        ({"global_daily_cap": -5}, "global_daily_cap"),
        ({"resolution_weights": {"8K": 9}}, "resolution_weights"),
        ({"resolution_weights": {"1K": -1}}, "resolution_weights"),
    ],
)
def test_bad_quota_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        QuotaSettings(**kwargs)


def test_cost_rejects_unknown_resolutions_and_counts():
    with pytest.raises(ValueError, match="resolution"):
        QuotaSettings().cost(1, "3K")
    with pytest.raises(ValueError, match="num_images"):
        QuotaSettings().cost(0, "1K")


def test_quota_settings_from_the_environment():
    assert QuotaSettings.from_env({}) == QuotaSettings()
    quota = QuotaSettings.from_env(
        {
            "QUOTA_DAILY_CREDITS": "50",
            "QUOTA_GLOBAL_DAILY_CREDITS": "1000",
            "QUOTA_RESOLUTION_WEIGHTS": "2K=3, 4K=6",
        }
    )
    assert (quota.default_daily_credits, quota.global_daily_cap) == (50, 1000)
    assert dict(quota.resolution_weights) == {"0.5K": 1, "1K": 1, "2K": 3, "4K": 6}
    assert QuotaSettings.from_env({"QUOTA_GLOBAL_DAILY_CREDITS": ""}).global_daily_cap is None
    for env, name in [
        ({"QUOTA_DAILY_CREDITS": "lots"}, "QUOTA_DAILY_CREDITS"),
        ({"QUOTA_GLOBAL_DAILY_CREDITS": "-1"}, "QUOTA_GLOBAL_DAILY_CREDITS"),
        ({"QUOTA_RESOLUTION_WEIGHTS": "8K=2"}, "QUOTA_RESOLUTION_WEIGHTS"),
    ]:
        with pytest.raises(ValueError, match=name):
            QuotaSettings.from_env(env)


# --- races ----------------------------------------------------------------------------------


async def test_500_concurrent_reservations_against_a_limit_of_37_grant_exactly_37(db_target):
    async with open_storage(db_target, default_daily_credits=37) as storage:
        results = await asyncio.gather(
            *(storage.jobs.create_reserved(new_job(user_id=5)) for _ in range(500)),
            return_exceptions=True,
        )
        granted, refused = _outcomes(results)
        assert len(granted) == 37
        assert len(refused) == 463
        assert all(isinstance(e, QuotaExceededError) for e in refused)
        assert {e.limit for e in refused} == {"daily allowance"}
        assert len({j.id for j in granted}) == 37
        balance = await storage.quota.balance(5, GUILD)
        assert (balance.used, balance.remaining) == (37, 0)
        assert await storage.jobs.in_flight_count(user_id=5) == 37
        assert await storage.quota.audit() == []


async def test_two_connections_racing_on_one_file_still_grant_exactly_the_limit(db_target):
    # Two bot processes (or a bot and a maintenance script) on the same file: the write lock,
    # taken at BEGIN IMMEDIATE, serialises them; the busy timeout makes the loser wait.
    clock = FakeClock()
    async with (
        open_storage(db_target, clock=clock, default_daily_credits=37) as first,
        open_storage(db_target, clock=clock, default_daily_credits=37) as second,
    ):
        results = await asyncio.gather(
            *(
                store.jobs.create_reserved(new_job(user_id=5))
                for _ in range(150)
                for store in (first, second)
            ),
            return_exceptions=True,
        )
        granted, refused = _outcomes(results)
        assert len(granted) == 37
        assert all(isinstance(e, QuotaExceededError) for e in refused)
        assert (await second.quota.balance(5, GUILD)).used == 37
        assert await first.quota.audit() == []


async def test_guild_cap_race_across_many_members(db_target):
    async with open_storage(db_target, default_daily_credits=100) as storage:
        await storage.policy.update(GUILD, daily_cap=23)
        results = await asyncio.gather(
            *(
                storage.jobs.create_reserved(new_job(user_id=u % 50 + 1, cost=1))
                for u in range(300)
            ),
            return_exceptions=True,
        )
        granted, refused = _outcomes(results)
        assert len(granted) == 23
        assert {e.limit for e in refused} == {"guild daily cap"}
        assert refused[0].allowed == 23
        # Another guild is not affected by this guild's cap.
        other = await storage.jobs.create_reserved(new_job(user_id=1, guild_id=OTHER_GUILD))
        assert other.guild_id == OTHER_GUILD
        balance = await storage.quota.balance(1, GUILD)
        assert balance.guild_cap_remaining == 0
        assert await storage.quota.audit() == []


async def test_global_cap_race_across_guilds_and_dms(db_target):
    async with open_storage(db_target, default_daily_credits=100, global_daily_cap=29) as storage:
        guilds = [GUILD, OTHER_GUILD, None]
        results = await asyncio.gather(
            *(
                storage.jobs.create_reserved(new_job(user_id=u % 40 + 1, guild_id=guilds[u % 3]))
                for u in range(400)
            ),
            return_exceptions=True,
        )
        granted, refused = _outcomes(results)
        assert len(granted) == 29
        assert {e.limit for e in refused} == {"global daily cap"}
        assert (await storage.quota.balance(1, None)).global_cap_remaining == 0
        assert await storage.quota.audit() == []


async def test_refused_reservations_leave_no_trace(db_target):
    async with open_storage(db_target, default_daily_credits=2) as storage:
        await storage.jobs.create_reserved(new_job(cost=2))
        with pytest.raises(QuotaExceededError):
            await storage.jobs.create_reserved(new_job(cost=1))
        assert len(await storage.jobs.recent_for_user(1)) == 1
        assert len(await storage.quota.ledger(1, GUILD)) == 1


async def test_quota_error_says_which_limit_and_when_it_frees(db_target):
    async with open_storage(db_target, default_daily_credits=5) as storage:
        await storage.jobs.create_reserved(new_job(cost=4))
        with pytest.raises(QuotaExceededError) as caught:
            await storage.jobs.create_reserved(new_job(cost=2))
        error = caught.value
        assert (error.limit, error.allowed, error.used, error.cost) == ("daily allowance", 5, 4, 2)
        assert error.resets_at == MIDNIGHT
        assert "daily allowance" in str(error)


async def test_max_in_flight_is_enforced_atomically(db_target):
    async with open_storage(db_target, default_daily_credits=100) as storage:
        results = await asyncio.gather(
            *(storage.jobs.create_reserved(new_job(), max_in_flight=3) for _ in range(20)),
            return_exceptions=True,
        )
        granted, refused = _outcomes(results)
        assert len(granted) == 3
        assert all(isinstance(e, TooManyJobsError) and e.allowed == 3 for e in refused)
        await storage.jobs.transition(granted[0].id, JobState.FAILED, error="x")
        assert await storage.jobs.create_reserved(new_job(), max_in_flight=3)


# --- commit and refund ----------------------------------------------------------------------


async def test_commit_and_refund_twice_change_nothing(db_target):
    async with open_storage(db_target) as storage:
        delivered = await storage.jobs.create_reserved(new_job(cost=3))
        assert await storage.quota.commit(delivered.id) is True
        assert await storage.quota.commit(delivered.id) is False
        assert await storage.quota.commit(delivered.id, 1) is False
        failed = await storage.jobs.create_reserved(new_job(cost=2))
        assert await storage.quota.refund(failed.id) is True
        assert await storage.quota.refund(failed.id) is False
        assert await storage.quota.commit(failed.id) is False  # refunded: nothing to commit
        entries = [(e.kind, e.amount, e.job_id) for e in await storage.quota.ledger(1, GUILD)]
        assert sorted(entries) == sorted(
            [
                (LedgerKind.RESERVE, 3, delivered.id),
                (LedgerKind.COMMIT, 3, delivered.id),
                (LedgerKind.RESERVE, 2, failed.id),
                (LedgerKind.REFUND, 2, failed.id),
            ]
        )
        assert (await storage.quota.balance(1, GUILD)).used == 3
        assert (await storage.jobs.get(delivered.id)).committed == 3
        assert await storage.quota.audit() == []


async def test_partial_delivery_commits_what_was_delivered_and_refunds_the_rest(db_target):
    async with open_storage(db_target) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=4))
        done = await storage.jobs.transition(job.id, JobState.DELIVERED, delivered_cost=1)
        assert done.committed == 1
        assert (await storage.quota.balance(1, GUILD)).used == 1
        kinds = [(e.kind, e.amount) for e in await storage.quota.job_entries(job.id)]
        assert kinds == [(LedgerKind.RESERVE, 4), (LedgerKind.COMMIT, 1), (LedgerKind.REFUND, 3)]


async def test_delivered_cost_must_fit_the_reservation(db_target):
    async with open_storage(db_target) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=2))
        with pytest.raises(InvalidSettingError) as caught:
            await storage.jobs.transition(job.id, JobState.DELIVERED, delivered_cost=3)
        assert caught.value.field == "delivered_cost"
        # Nothing happened: the job is still reserved and its credits held.
        assert (await storage.jobs.get(job.id)).state is JobState.RESERVED
        assert (await storage.quota.balance(1, GUILD)).used == 2
        with pytest.raises(InvalidSettingError, match="delivered_cost"):
            await storage.jobs.transition(job.id, JobState.FAILED, delivered_cost=1)


async def test_refund_after_delivery_returns_credits_to_the_member_once(db_target):
    async with open_storage(db_target, default_daily_credits=10) as storage:
        await storage.policy.update(GUILD, daily_cap=6)
        job = await storage.jobs.create_reserved(new_job(cost=4))
        await storage.jobs.transition(job.id, JobState.DELIVERED)
        assert await storage.quota.refund(job.id) is True
        assert await storage.quota.refund(job.id) is False
        balance = await storage.quota.balance(1, GUILD)
        assert (balance.used, balance.remaining) == (0, 10)
        # RunComfy was paid for that job, so the guild's cap still counts it.
        assert balance.guild_cap_remaining == 2
        with pytest.raises(QuotaExceededError) as caught:
            await storage.jobs.create_reserved(new_job(cost=3))
        assert caught.value.limit == "guild daily cap"
        assert await storage.quota.audit() == []


@pytest.mark.parametrize("end", [JobState.CANCELLED, JobState.FAILED, JobState.REJECTED])
async def test_ending_without_delivery_refunds_in_full(db_target, end):
    async with open_storage(db_target, default_daily_credits=5) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=5))
        await storage.jobs.transition(job.id, JobState.RUNNING)
        await storage.jobs.transition(job.id, end)
        assert (await storage.quota.balance(1, GUILD)).remaining == 5
        assert await storage.quota.refund(job.id) is False


async def test_commit_of_an_unknown_job_is_an_error(db_target):
    from storage import JobNotFoundError

    async with open_storage(db_target) as storage:
        with pytest.raises(JobNotFoundError):
            await storage.quota.commit("nope")


# --- limits ---------------------------------------------------------------------------------


async def test_limit_precedence_override_then_best_tier_then_guild_then_global(db_target):
    tier_low, tier_high, other_role = 501, 502, 503
    async with open_storage(db_target, default_daily_credits=20) as storage:
        balance = await storage.quota.balance(1, GUILD, role_ids=[tier_low, tier_high])
        assert (balance.limit, balance.limit_source) == (20, "global default")

        await storage.policy.update(GUILD, default_daily_credits=15)
        balance = await storage.quota.balance(1, GUILD, role_ids=[tier_low, tier_high])
        assert (balance.limit, balance.limit_source) == (15, "guild default")

        await storage.policy.set_role_tier(GUILD, tier_low, 5)
        await storage.policy.set_role_tier(GUILD, tier_high, 40)
        balance = await storage.quota.balance(1, GUILD, role_ids=[tier_low, tier_high, other_role])
        assert (balance.limit, balance.limit_source) == (40, "role tier")
        # A tier wins over the guild default even when lower: tiers can restrict.
        balance = await storage.quota.balance(1, GUILD, role_ids=[tier_low])
        assert (balance.limit, balance.limit_source) == (5, "role tier")
        # Without a tiered role the guild default applies.
        balance = await storage.quota.balance(1, GUILD, role_ids=[other_role])
        assert balance.limit_source == "guild default"

        await storage.policy.set_user_override(GUILD, 1, 2)
        balance = await storage.quota.balance(1, GUILD, role_ids=[tier_high])
        assert (balance.limit, balance.limit_source) == (2, "user override")
        # The reservation enforces the same resolution.
        await storage.jobs.create_reserved(new_job(cost=2), role_ids=[tier_high])
        with pytest.raises(QuotaExceededError):
            await storage.jobs.create_reserved(new_job(cost=1), role_ids=[tier_high])

        # Other guilds and DMs don't see this guild's rules.
        assert (await storage.quota.balance(1, OTHER_GUILD)).limit_source == "global default"
        assert (await storage.quota.balance(1, None, role_ids=[tier_high])).limit == 20

        await storage.policy.set_user_override(GUILD, 1, None)
        balance = await storage.quota.balance(1, GUILD, role_ids=[tier_high])
        assert balance.limit_source == "role tier"


async def test_an_allowance_of_zero_refuses_even_free_jobs(db_target):
    async with open_storage(db_target) as storage:
        await storage.policy.set_user_override(GUILD, 1, 0)
        with pytest.raises(QuotaExceededError) as caught:
            await storage.jobs.create_reserved(new_job(cost=0))
        assert (caught.value.limit, caught.value.allowed) == ("daily allowance", 0)
        assert (await storage.jobs.create_reserved(new_job(user_id=2, cost=0))).cost == 0


async def test_quota_is_per_guild_and_dms_are_their_own(db_target):
    async with open_storage(db_target, default_daily_credits=3) as storage:
        await storage.jobs.create_reserved(new_job(cost=3))
        await storage.jobs.create_reserved(new_job(cost=3, guild_id=OTHER_GUILD))
        await storage.jobs.create_reserved(new_job(cost=3, guild_id=None))
        for guild in (GUILD, OTHER_GUILD, None):
            assert (await storage.quota.balance(1, guild)).remaining == 0


async def test_the_allowance_resets_at_utc_midnight(db_target):
    clock = FakeClock(datetime(2025, 3, 14, 23, 59, tzinfo=UTC))
    async with open_storage(db_target, clock=clock, default_daily_credits=4) as storage:
        late = await storage.jobs.create_reserved(new_job(cost=4))
        balance = await storage.quota.balance(1, GUILD)
        assert (balance.remaining, balance.resets_at) == (0, MIDNIGHT)
        clock.advance(minutes=2)
        balance = await storage.quota.balance(1, GUILD)
        assert (balance.used, balance.remaining) == (0, 4)
        assert balance.resets_at == datetime(2025, 3, 16, tzinfo=UTC)
        # Yesterday's job failing after midnight refunds yesterday, not today.
        await storage.jobs.create_reserved(new_job(cost=4))
        await storage.jobs.transition(late.id, JobState.FAILED)
        assert (await storage.quota.balance(1, GUILD)).remaining == 0
        yesterday = await storage.quota.balance(1, GUILD, now=datetime(2025, 3, 14, 23, tzinfo=UTC))
        assert yesterday.used == 0
        assert await storage.quota.audit() == []


# --- grant and reset ------------------------------------------------------------------------


async def test_a_grant_adds_credits_for_today_only(db_target):
    clock = FakeClock()
    async with open_storage(db_target, clock=clock, default_daily_credits=2) as storage:
        await storage.jobs.create_reserved(new_job(cost=2))
        entry = await storage.quota.grant(1, GUILD, 3, actor_id=99, reason="contest winner")
        assert (entry.kind, entry.amount, entry.actor_id, entry.reason) == (
            LedgerKind.GRANT,
            3,
            99,
            "contest winner",
        )
        assert entry.at == T0
        balance = await storage.quota.balance(1, GUILD)
        assert (balance.limit, balance.granted, balance.used, balance.remaining) == (2, 3, 2, 3)
        await storage.jobs.create_reserved(new_job(cost=3))
        with pytest.raises(QuotaExceededError) as caught:
            await storage.jobs.create_reserved(new_job(cost=1))
        assert caught.value.allowed == 5
        clock.advance(days=1)
        balance = await storage.quota.balance(1, GUILD)
        assert (balance.granted, balance.remaining) == (0, 2)


async def test_grant_does_not_raise_the_guild_cap(db_target):
    async with open_storage(db_target, default_daily_credits=2) as storage:
        await storage.policy.update(GUILD, daily_cap=2)
        await storage.quota.grant(1, GUILD, 10, actor_id=99)
        await storage.jobs.create_reserved(new_job(cost=2))
        with pytest.raises(QuotaExceededError) as caught:
            await storage.jobs.create_reserved(new_job(cost=1))
        assert caught.value.limit == "guild daily cap"


async def test_failed_and_undelivered_credits_free_the_caps(db_target):
    async with open_storage(db_target, default_daily_credits=100, global_daily_cap=10) as storage:
        await storage.policy.update(GUILD, daily_cap=6)
        failed = await storage.jobs.create_reserved(new_job(user_id=1, cost=4))
        partial = await storage.jobs.create_reserved(new_job(user_id=2, cost=2))
        with pytest.raises(QuotaExceededError):
            await storage.jobs.create_reserved(new_job(user_id=3, cost=1))
        await storage.jobs.transition(failed.id, JobState.FAILED, error="boom")
        await storage.jobs.transition(partial.id, JobState.DELIVERED, delivered_cost=1)
        balance = await storage.quota.balance(3, GUILD)
        assert (balance.guild_cap_remaining, balance.global_cap_remaining) == (5, 9)
        await storage.jobs.create_reserved(new_job(user_id=3, cost=5))


async def test_grant_rejects_non_positive_amounts(db_target):
    async with open_storage(db_target) as storage:
        for amount in (0, -3, True):
            with pytest.raises(InvalidSettingError) as caught:
                await storage.quota.grant(1, GUILD, amount, actor_id=99)
            assert caught.value.field == "amount"


async def test_reset_gives_back_settled_credits_and_keeps_in_flight_ones_held(db_target):
    async with open_storage(db_target, default_daily_credits=10) as storage:
        done = await storage.jobs.create_reserved(new_job(cost=4))
        await storage.jobs.transition(done.id, JobState.DELIVERED)
        running = await storage.jobs.create_reserved(new_job(cost=3))
        entry = await storage.quota.reset_day(1, GUILD, actor_id=99)
        assert (entry.kind, entry.amount, entry.actor_id) == (LedgerKind.RESET, 4, 99)
        balance = await storage.quota.balance(1, GUILD)
        assert (balance.used, balance.remaining) == (3, 7)
        # The running job ends either way without the member gaining or losing credits.
        await storage.jobs.transition(running.id, JobState.FAILED)
        assert (await storage.quota.balance(1, GUILD)).used == 0
        # Resetting again has nothing to give back, but is recorded.
        again = await storage.quota.reset_day(1, GUILD, actor_id=99)
        assert again.amount == 0
        assert (await storage.quota.balance(1, GUILD)).remaining == 10
        assert await storage.quota.audit() == []


async def test_reset_does_not_lift_the_guild_cap(db_target):
    async with open_storage(db_target, default_daily_credits=10) as storage:
        await storage.policy.update(GUILD, daily_cap=4)
        job = await storage.jobs.create_reserved(new_job(cost=4))
        await storage.jobs.transition(job.id, JobState.DELIVERED)
        await storage.quota.reset_day(1, GUILD, actor_id=99)
        assert (await storage.quota.balance(1, GUILD)).remaining == 10
        with pytest.raises(QuotaExceededError) as caught:
            await storage.jobs.create_reserved(new_job(cost=1))
        assert caught.value.limit == "guild daily cap"


async def test_ledger_lists_newest_first_per_guild(db_target):
    async with open_storage(db_target) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=2))
        await storage.quota.grant(1, GUILD, 1, actor_id=99)
        await storage.jobs.create_reserved(new_job(cost=1, guild_id=OTHER_GUILD))
        entries = await storage.quota.ledger(1, GUILD)
        assert [e.kind for e in entries] == [LedgerKind.GRANT, LedgerKind.RESERVE]
        assert entries[1].job_id == job.id
        assert len(await storage.quota.ledger(1, GUILD, limit=1)) == 1


@pytest.mark.parametrize("how", ["refund", "reject"])
async def test_a_refund_after_a_reset_never_gives_the_same_credits_back_twice(db_target, how):
    async with open_storage(db_target, default_daily_credits=10) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=4))
        await storage.jobs.transition(job.id, JobState.DELIVERED)
        reset = await storage.quota.reset_day(1, GUILD, actor_id=99)
        assert reset.amount == 4  # the member has their 10 credits back
        if how == "refund":
            assert await storage.quota.refund(job.id) is False  # nothing left to give back
        else:
            rejected = await storage.jobs.transition(
                job.id, JobState.REJECTED, expected=[JobState.DELIVERED]
            )
            assert rejected.state is JobState.REJECTED
        balance = await storage.quota.balance(1, GUILD)
        assert (balance.used, balance.remaining) == (0, 10)
        # Ten credits to spend today, not fourteen.
        await storage.jobs.create_reserved(new_job(cost=10))
        with pytest.raises(QuotaExceededError) as caught:
            await storage.jobs.create_reserved(new_job(cost=1))
        assert caught.value.limit == "daily allowance"
        assert await storage.quota.audit() == []


async def test_a_job_delivered_after_a_reset_can_still_be_refunded(db_target):
    async with open_storage(db_target, default_daily_credits=10) as storage:
        before = await storage.jobs.create_reserved(new_job(cost=2))
        await storage.jobs.transition(before.id, JobState.DELIVERED)
        running = await storage.jobs.create_reserved(new_job(cost=3))
        assert (await storage.quota.reset_day(1, GUILD, actor_id=99)).amount == 2
        await storage.jobs.transition(running.id, JobState.DELIVERED)  # held at the reset
        assert await storage.quota.refund(running.id) is True
        assert await storage.quota.refund(before.id) is False  # the reset gave it back
        balance = await storage.quota.balance(1, GUILD)
        assert (balance.used, balance.remaining) == (0, 10)
        assert await storage.quota.audit() == []


async def test_a_job_reserved_before_midnight_settles_the_day_it_was_reserved(db_target):
    clock = FakeClock(datetime(2025, 3, 14, 23, 59, 59, 999999, tzinfo=UTC))
    late_evening = datetime(2025, 3, 14, 23, tzinfo=UTC)
    async with open_storage(db_target, clock=clock, default_daily_credits=4) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=4))
        clock.now = MIDNIGHT  # delivered one microsecond later, on the next UTC day
        done = await storage.jobs.transition(job.id, JobState.DELIVERED, delivered_cost=1)
        assert done.committed == 1
        yesterday = await storage.quota.balance(1, GUILD, now=late_evening)
        today = await storage.quota.balance(1, GUILD)
        assert (yesterday.used, today.used, today.remaining) == (1, 0, 4)
        # Today's reset has nothing of yesterday's to give back.
        assert (await storage.quota.reset_day(1, GUILD, actor_id=99)).amount == 0
        # A refund after midnight gives yesterday's credit back to yesterday, which is over:
        # today's allowance stays 4, so the member is not credited twice.
        assert await storage.quota.refund(job.id) is True
        assert (await storage.quota.balance(1, GUILD, now=late_evening)).used == 0
        assert (await storage.quota.balance(1, GUILD)).remaining == 4
        await storage.jobs.create_reserved(new_job(cost=4))
        with pytest.raises(QuotaExceededError) as caught:
            await storage.jobs.create_reserved(new_job(cost=1))
        assert caught.value.resets_at == datetime(2025, 3, 16, tzinfo=UTC)
        assert await storage.quota.audit() == []


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_balances_equal_the_ledger_through_any_mix_of_operations(db_target, seed):
    """Random days of reservations, deliveries, failures, rejections, refunds, grants and resets
    (crossing midnights): every member's day equals the sum of its entries, and no day is ever
    given back more than it used (a double credit)."""
    rng = random.Random(seed)
    clock = FakeClock(datetime(2025, 3, 14, 20, tzinfo=UTC))
    members = [(u, g) for u in (1, 2, 3) for g in (GUILD, None)]
    async with open_storage(db_target, clock=clock, default_daily_credits=12) as storage:
        live, delivered = [], []
        for _ in range(150):
            clock.advance(minutes=rng.randint(0, 40))
            user, guild = rng.choice(members)
            roll = rng.random()
            if roll < 0.35 or not (live or delivered):
                try:
                    job = await storage.jobs.create_reserved(
                        new_job(user, guild, cost=rng.randint(0, 4))
                    )
                    live.append(job.id)
                except QuotaExceededError:
                    pass
            elif roll < 0.6 and live:
                job_id = live.pop(rng.randrange(len(live)))
                cost = (await storage.jobs.get(job_id)).cost
                await storage.jobs.transition(
                    job_id, JobState.DELIVERED, delivered_cost=rng.randint(0, cost)
                )
                delivered.append(job_id)
            elif roll < 0.7 and live:
                end = rng.choice([JobState.FAILED, JobState.CANCELLED, JobState.REJECTED])
                await storage.jobs.transition(live.pop(rng.randrange(len(live))), end)
            elif roll < 0.8 and delivered:
                await storage.quota.refund(rng.choice(delivered))
            elif roll < 0.85 and delivered:
                await storage.jobs.transition(
                    rng.choice(delivered), JobState.REJECTED, expected=[JobState.DELIVERED]
                )
            elif roll < 0.92:
                await storage.quota.grant(user, guild, rng.randint(1, 3), actor_id=99)
            else:
                await storage.quota.reset_day(user, guild, actor_id=99)
        assert await storage.quota.audit() == []

        created = {}
        for user, guild in members:
            per_day: dict[str, list[int]] = {}
            for entry in await storage.quota.ledger(user, guild, limit=10_000):
                if entry.job_id is not None:
                    if entry.job_id not in created:
                        created[entry.job_id] = (await storage.jobs.get(entry.job_id)).created_at
                    day = created[entry.job_id].date().isoformat()
                else:
                    day = entry.at.date().isoformat()
                sums = per_day.setdefault(day, [0, 0, 0])  # used, granted, forgiven
                if entry.kind is LedgerKind.RESERVE:
                    sums[0] += entry.amount
                elif entry.kind is LedgerKind.REFUND:
                    sums[0] -= entry.amount
                elif entry.kind is LedgerKind.GRANT:
                    sums[1] += entry.amount
                elif entry.kind is LedgerKind.RESET:
                    sums[2] += entry.amount
            for day, (used, granted, forgiven) in per_day.items():
                assert used - forgiven >= 0, (user, guild, day, used, forgiven)
                noon = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
                balance = await storage.quota.balance(user, guild, now=noon)
                assert (balance.used, balance.granted) == (used - forgiven, granted)


async def test_all_limits_hold_together_across_two_connections(db_target):
    clock = FakeClock()
    settings = {"default_daily_credits": 100, "global_daily_cap": 25}
    async with (
        open_storage(db_target, clock=clock, **settings) as first,
        open_storage(db_target, clock=clock, **settings) as second,
    ):
        await first.policy.update(GUILD, daily_cap=15)
        members = [(u, GUILD) for u in range(1, 11)] + [(u, OTHER_GUILD) for u in range(11, 21)]
        results = await asyncio.gather(
            *(
                store.jobs.create_reserved(new_job(user, guild), max_in_flight=2)
                for _ in range(8)
                for user, guild in members
                for store in (first, second)
            ),
            return_exceptions=True,
        )
        granted, refused = _outcomes(results)
        assert all(isinstance(e, QuotaExceededError | TooManyJobsError) for e in refused)
        per_member = Counter((j.user_id, j.guild_id) for j in granted)
        assert max(per_member.values()) <= 2
        assert sum(n for (_, g), n in per_member.items() if g == GUILD) <= 15
        assert len(granted) == 25
        for user, guild in members:
            assert await first.jobs.in_flight_count(user_id=user, guild_id=guild) <= 2
        assert (await second.quota.balance(1, GUILD)).global_cap_remaining == 0
        assert await first.quota.audit() == []
