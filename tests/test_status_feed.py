"""Status edits on the Discord side: throttled, the latest always shown, nothing after the end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from cogs.pacing import Pacing
from cogs.status_feed import StatusFeeds
from services.jobs import Progress
from services.settings import JobTiming
from storage.models import Job, JobKind, JobState

NOW = datetime.now(UTC)
JOB = Job(
    id="j1",
    kind=JobKind.IMAGINE,
    state=JobState.QUEUED,
    user_id=1,
    guild_id=2,
    channel_id=3,
    prompt="p",
    params={},
    cost=1,
    created_at=NOW,
    updated_at=NOW,
)


def feeds_with(interval: float) -> tuple[StatusFeeds, list[Progress]]:
    shown: list[Progress] = []

    async def show(job: Job, progress: Progress) -> None:
        shown.append(progress)

    timing = JobTiming(status_interval=interval, yield_window=0)
    return StatusFeeds(timing, Pacing(timing), show), shown


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_within_one_interval_only_the_latest_progress_is_shown_and_then_nothing() -> None:
    feeds, shown = feeds_with(30.0)
    feeds.push(JOB, Progress(JobState.SUBMITTED))
    feeds.push(JOB, Progress(JobState.QUEUED, 4))
    feeds.push(JOB, Progress(JobState.RUNNING))
    await settle()
    assert shown == []  # the acknowledgement was shown a moment ago: wait for the interval
    await feeds.finish(JOB.id)  # the result comes next: what was pending is dropped
    feeds.push(JOB, Progress(JobState.RUNNING))
    await settle()
    assert shown == []
    feeds.stop()


async def test_after_the_interval_the_latest_progress_is_shown_once() -> None:
    feeds, shown = feeds_with(0.05)
    feeds.push(JOB, Progress(JobState.SUBMITTED))
    feeds.push(JOB, Progress(JobState.QUEUED, 2))
    for _ in range(200):
        if shown:
            break
        await asyncio.sleep(0.01)
    await settle()
    assert shown == [Progress(JobState.QUEUED, 2)]
    await feeds.finish(JOB.id)
    feeds.forget(JOB.id)
    feeds.stop()
