"""The moderators' Refund against a real database: truthful about which day's credits it gives.

Credits are per UTC day. A job delivered on an earlier day is refunded on that day's books, which
the member can no longer spend, so the service also grants the amount for today; a day a reset
already gave back is not refunded twice, and the moderator is told why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cogs.i18n import ENGLISH as t
from cogs.modlog_outcomes import action_detail, action_text
from services.admin import AdminService
from services.moderation import ModerationService, ModLog, Outcome
from services.policy import PolicyService
from storage import JobKind, JobState, LedgerKind, NewJob, QuotaSettings, Storage

GUILD = 1001
MOD = 9009
USER = 2002
DAY_ONE = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = DAY_ONE

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def storage(tmp_path: Any, clock: Clock) -> AsyncIterator[Storage]:
    async with Storage.open(
        tmp_path / "studio.db", QuotaSettings(default_daily_credits=10), clock=clock
    ) as opened:
        yield opened


@pytest.fixture
def moderation(storage: Storage, clock: Clock) -> ModerationService:
    policy = PolicyService(storage, clock=clock)
    admin = AdminService(storage, policy, clock=clock)
    # Refund needs neither the job engine nor Discord: the log is there for its per-job lock.
    modlog = ModLog(storage, policy, None, None)  # type: ignore[arg-type]
    return ModerationService(
        storage,
        None,  # type: ignore[arg-type]
        policy,
        admin,
        modlog,
        None,  # type: ignore[arg-type]
        clock=clock,
    )


async def delivered_job(storage: Storage, cost: int) -> str:
    job = await storage.jobs.create_reserved(
        NewJob(
            kind=JobKind.IMAGINE,
            user_id=USER,
            guild_id=GUILD,
            channel_id=3003,
            prompt="a lighthouse",
            params={"num_images": cost, "resolution": "1K"},
            cost=cost,
        )
    )
    moved = await storage.jobs.transition(
        job.id, JobState.DELIVERED, result_urls=("https://example.invalid/1.png",)
    )
    assert moved is not None
    return job.id


async def remaining(storage: Storage) -> int:
    return (await storage.quota.balance(USER, GUILD)).remaining


async def test_a_refund_on_the_same_day_gives_todays_credits_back(
    storage: Storage, moderation: ModerationService
) -> None:
    job_id = await delivered_job(storage, 3)
    assert await remaining(storage) == 7
    result = await moderation.refund(GUILD, job_id, actor_id=MOD)
    assert result.done and action_text(t, result) == f"Refunded 3 credits to <@{USER}>."
    assert (result.outcome, result.amount) == (Outcome.REFUNDED, 3)
    assert action_detail(t, result) == ""
    assert await remaining(storage) == 10


async def test_a_refund_of_an_earlier_days_job_is_granted_for_today(
    storage: Storage, moderation: ModerationService, clock: Clock
) -> None:
    job_id = await delivered_job(storage, 3)
    clock.now = DAY_ONE + timedelta(days=1)
    await delivered_job(storage, 4)  # today's spending
    assert await remaining(storage) == 6
    result = await moderation.refund(GUILD, job_id, actor_id=MOD)
    assert result.done
    assert (result.outcome, result.day) == (Outcome.REFUNDED_TODAY, DAY_ONE.date())
    assert action_text(t, result) == (
        f"Refunded 3 credits to <@{USER}>: the job was on 2030-05-17 (UTC),"
        " so they were granted for today instead."
    )
    assert action_detail(t, result) == "job of 2030-05-17: granted for today"
    assert await remaining(storage) == 9  # the member can use them today
    grants = [e for e in await storage.quota.ledger(USER, GUILD) if e.kind == LedgerKind.GRANT]
    assert [(g.amount, g.actor_id) for g in grants] == [(3, MOD)]
    assert grants[0].reason == f"refund of job {job_id} from 2030-05-17"
    again = await moderation.refund(GUILD, job_id, actor_id=MOD)
    assert not again.done and action_text(t, again) == f"Job `{job_id}` was already refunded."
    assert await remaining(storage) == 9


async def test_a_refund_after_a_reset_of_that_day_says_so(
    storage: Storage, moderation: ModerationService
) -> None:
    job_id = await delivered_job(storage, 2)
    await storage.quota.reset_day(USER, GUILD, actor_id=MOD)
    assert await remaining(storage) == 10
    result = await moderation.refund(GUILD, job_id, actor_id=MOD)
    assert not result.done and result.outcome == Outcome.RESET
    assert action_text(t, result) == (
        f"Nothing to refund: job `{job_id}`'s credits were already given back by a reset"
        " of that day."
    )
    assert await remaining(storage) == 10
