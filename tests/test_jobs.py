"""The job engine on its own: a real database, the fake RunComfy, a recording presenter.

The presenter here stands in for the Discord cog (it is our own protocol); everything else is
real. End-to-end behaviour through Discord is in tests/test_bot_e2e.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from client import RunComfyClient
from client.models import DownloadedImage, EditRequest, GenerationOptions
from client.settings import ClientSettings
from cogs.pacing import Pacing
from services.errors import InvalidInput, NotAllowed, RepeatedRequest, StudioClosing
from services.jobs import (
    NEVER_ACKNOWLEDGED,
    RESTART_LOST_SUBMIT,
    CancelResult,
    Delivery,
    JobRequest,
    JobService,
    JobSpec,
    Progress,
    Requester,
    Reservation,
    Step,
    spec_of,
)
from services.policy import PolicyRefusal, PolicyService
from services.settings import JobTiming
from services.wording import Wording
from storage import QuotaExceededError, QuotaSettings, Storage
from storage.models import Job, JobKind, JobState, NewJob, TooManyJobsError
from tests.fakes.runcomfy import FakeRunComfy, JobScript
from tests.helpers import FAST_POLLING, FAST_RETRY, FOREVER, finish_now, job_task, wait_job_state

GUILD = 1001
CHANNEL = 2002
USER = 3003


@dataclass
class RecordingPresenter:
    """Remembers what the engine asked to show."""

    progress: list[tuple[str, Progress]] = field(default_factory=list)
    delivered: list[tuple[str, int, tuple[str, ...]]] = field(default_factory=list)
    outcomes: list[tuple[str, JobState, str | None]] = field(default_factory=list)
    events: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    fail_delivery: int = 0  # how many deliveries fail before they work
    withdrawn: list[str] = field(default_factory=list)

    pacing: Pacing | None = None  # the Discord side's pacing, when a test wants it

    def pace(self, step: Step) -> AbstractAsyncContextManager[None]:
        return self.pacing.step(step) if self.pacing else contextlib.nullcontext()

    def show_progress(self, job: Job, progress: Progress) -> None:
        self.progress.append((job.id, progress))

    async def show_held(self, job: Job) -> None:
        self.events.put_nowait(f"held {job.id}")

    async def deliver(
        self, job: Job, images: Sequence[DownloadedImage], missing: Sequence[str]
    ) -> Delivery:
        if self.fail_delivery > 0:
            self.fail_delivery -= 1
            self.events.put_nowait(f"delivery failed {job.id}")
            raise RuntimeError("discord is down")
        assert all(i.data for i in images)
        self.delivered.append((job.id, len(images), tuple(missing)))
        self.events.put_nowait(f"delivered {job.id}")
        return Delivery(message_id=777)

    async def show_outcome(self, job: Job) -> None:
        self.outcomes.append((job.id, job.state, job.error))
        self.events.put_nowait(f"{job.state.value} {job.id}")

    async def withdraw(self, job: Job) -> None:
        self.withdrawn.append(job.id)


@dataclass
class Engine:
    fake: FakeRunComfy
    storage: Storage
    jobs: JobService
    presenter: RecordingPresenter
    client: RunComfyClient
    policy: PolicyService


WHO = Requester(
    user_id=USER,
    guild_id=GUILD,
    channel_id=CHANNEL,
    interaction_token="secret-token",
    token_expires_at=datetime.now(UTC) + timedelta(minutes=14),
)


@dataclass
class RecordingEvents:
    """What the moderators' log would hear (``broken``: a log bug, which must break nothing)."""

    ended_jobs: list[tuple[str, JobState]] = field(default_factory=list)
    held_jobs: list[str] = field(default_factory=list)
    broken: bool = False

    async def ended(self, job: Job) -> None:
        self.ended_jobs.append((job.id, job.state))
        if self.broken:
            raise RuntimeError("a log bug")

    async def held(self, job: Job) -> None:
        self.held_jobs.append(job.id)

    def refused(self, spec: JobSpec, who: Requester, refusal: PolicyRefusal) -> None:
        return None


def engine_for(
    storage: Storage,
    client: RunComfyClient,
    fake: FakeRunComfy,
    *,
    job_timeout: float = 30.0,
    events: RecordingEvents | None = None,
) -> Engine:
    policy = PolicyService(storage)
    presenter = RecordingPresenter()
    jobs = JobService(
        storage,
        client,
        policy,
        presenter,
        quota=QuotaSettings(default_daily_credits=10),
        timing=JobTiming(
            job_timeout=job_timeout, submit_grace=2.0, yield_window=0, delivery_retry=0.01
        ),
        events=events,
    )
    return Engine(fake, storage, jobs, presenter, client, policy)


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[FakeRunComfy, Storage, RunComfyClient]]:
    async with (
        FakeRunComfy(token="t") as fake,
        aiohttp.ClientSession() as session,
        Storage.open(tmp_path / "db.sqlite3", QuotaSettings(default_daily_credits=10)) as storage,
    ):
        settings = ClientSettings(api_token="t", api_base=fake.base_url)
        client = RunComfyClient(session, settings, retry=FAST_RETRY, polling=FAST_POLLING)
        yield fake, storage, client


@pytest.fixture
async def engine(parts: tuple[FakeRunComfy, Storage, RunComfyClient]) -> AsyncIterator[Engine]:
    fake, storage, client = parts
    built = engine_for(storage, client, fake)
    yield built
    await built.jobs.close()


wait_state = wait_job_state


async def until(check: Callable[[], object], timeout: float = 15.0) -> None:  # noqa: ASYNC109
    """Until ``check()`` holds; the deadline (loop time) only stops a broken test from hanging."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.002)


async def used_today(storage: Storage) -> int:
    return (await storage.quota.balance(USER, GUILD)).used


async def cancel_as(
    engine: Engine, job_id: str, actor: int, guild: int | None = GUILD, *, manage: bool = False
) -> str:
    return await engine.jobs.cancel(job_id, actor_id=actor, guild_id=guild, may_manage=manage)


async def run_one(engine: Engine, spec: JobSpec, who: Requester = WHO) -> Job:
    reservation = await engine.jobs.reserve(spec, who)
    await engine.jobs.accepted(reservation.job)  # as the cog does once Discord took the answer
    return reservation.job


# -- the happy path ------------------------------------------------------------------------------


async def test_imagine_goes_through_every_state_and_is_charged_once(engine: Engine) -> None:
    spec = JobSpec(kind=JobKind.IMAGINE, prompt="a banana", num_images=2)
    job = await run_one(engine, spec)
    assert job.state == JobState.RESERVED and job.cost == 2
    done = await wait_state(engine.storage, job.id, JobState.DELIVERED)

    assert engine.presenter.delivered == [(job.id, 2, ())]
    assert done.result_message_id == 777 and done.committed == 2
    states = [e.state for e in await engine.storage.jobs.events(job.id)]
    assert states[:3] == [JobState.RESERVED, JobState.SUBMITTING, JobState.SUBMITTED]
    assert states[-2:] == [JobState.COMPLETED, JobState.DELIVERED]
    assert await used_today(engine.storage) == 2
    assert await engine.jobs.in_flight(USER, GUILD) == 0
    # the request carried a seed we chose (shown to the member, reused by Re-roll)
    submitted = [r.json for r in engine.fake.requests if r.endpoint == "submit"]
    assert submitted[0]["seed"] == done.params["seed"]
    assert submitted[0]["num_images"] == 2 and submitted[0]["safety_tolerance"] == 4


@pytest.mark.expect_errors(logger="services.jobs", match="the moderators' log failed")
async def test_the_log_hears_of_every_ending_and_its_failures_break_nothing(
    parts: tuple[FakeRunComfy, Storage, RunComfyClient],
) -> None:
    fake, storage, client = parts
    events = RecordingEvents(broken=True)
    engine = engine_for(storage, client, fake, events=events)
    try:
        fake.script(JobScript(), JobScript(outcome="fail"))
        good = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="fine"))
        await wait_state(storage, good.id, JobState.DELIVERED)
        bad = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="fails"))
        await wait_state(storage, bad.id, JobState.FAILED)
        await until(lambda: len(events.ended_jobs) == 2)
        assert events.ended_jobs == [(good.id, JobState.DELIVERED), (bad.id, JobState.FAILED)]
        assert [d[0] for d in engine.presenter.delivered] == [good.id]
    finally:
        await engine.jobs.close()


async def test_edit_sends_the_image_urls(engine: Engine) -> None:
    urls = ("https://cdn.example/a.png", "https://cdn.example/b.webp")
    job = await run_one(engine, JobSpec(kind=JobKind.EDIT, prompt="make it blue", image_urls=urls))
    await wait_state(engine.storage, job.id, JobState.DELIVERED)
    (submit,) = [r for r in engine.fake.requests if r.endpoint == "submit"]
    assert submit.path.endswith("/edit")
    assert submit.json["image_urls"] == list(urls)


async def test_reroll_spec_keeps_everything_but_the_seed(engine: Engine) -> None:
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="cat", seed=7, num_images=1))
    done = await wait_state(engine.storage, job.id, JobState.DELIVERED)
    again = spec_of(done, seed=None)
    assert again.prompt == "cat" and again.seed is None and again.parent_job_id == job.id
    rerolled = await run_one(engine, again)
    second = await wait_state(engine.storage, rerolled.id, JobState.DELIVERED)
    seeds = [r.json["seed"] for r in engine.fake.requests if r.endpoint == "submit"]
    assert seeds[0] == 7 and len(seeds) == 2 and second.params["seed"] == seeds[1]
    assert second.parent_job_id == job.id


async def test_reroll_of_a_default_safety_clamps_to_a_lowered_ceiling(engine: Engine) -> None:
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="default safety"))
    done = await wait_state(engine.storage, job.id, JobState.DELIVERED)
    assert done.params["safety_tolerance"] == 4
    await engine.storage.policy.update(GUILD, max_safety=2)
    engine.policy.invalidate(GUILD)
    again = spec_of(done, seed=None)
    assert again.safety is None  # the member never chose it
    rerolled = await engine.jobs.reserve(again, WHO)  # clamped, not refused
    assert rerolled.job.params["safety_tolerance"] == 2
    chosen = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="mine", safety=2))
    assert spec_of(chosen, seed=None).safety == 2


async def test_the_same_ask_on_the_same_result_twice_at_once_makes_one_job(
    engine: Engine,
) -> None:
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="once"))
    done = await wait_state(engine.storage, job.id, JobState.DELIVERED)
    again = spec_of(done, seed=None)
    first, second = await asyncio.gather(
        engine.jobs.reserve(again, WHO), engine.jobs.reserve(again, WHO), return_exceptions=True
    )
    assert isinstance(first, Reservation) and isinstance(second, RepeatedRequest)
    with pytest.raises(RepeatedRequest):  # a moment later too
        await engine.jobs.reserve(again, WHO)
    other = replace(WHO, user_id=USER + 1)  # someone else's click is theirs
    await engine.jobs.reserve(again, other)
    assert await used_today(engine.storage) == 2


# -- refusals cost nothing and call nothing -----------------------------------------------------


async def test_quota_exhausted_refuses_before_any_api_call(engine: Engine) -> None:
    spec = JobSpec(kind=JobKind.IMAGINE, prompt="big", num_images=3, resolution="4K")  # 12 > 10
    with pytest.raises(QuotaExceededError) as caught:
        await engine.jobs.reserve(spec, WHO)
    assert caught.value.cost == 12
    assert engine.fake.requests == []
    assert await used_today(engine.storage) == 0
    assert await engine.jobs.in_flight(USER, GUILD) == 0


async def test_overlong_prompt_is_refused_before_anything(engine: Engine) -> None:
    with pytest.raises(InvalidInput):
        await engine.jobs.reserve(JobSpec(kind=JobKind.IMAGINE, prompt="x" * 4001), WHO)
    assert engine.fake.requests == [] and await engine.storage.jobs.unfinished() == []


async def test_policy_refusal_reserves_nothing(engine: Engine) -> None:
    dm = Requester(user_id=USER, guild_id=None, channel_id=CHANNEL)
    with pytest.raises(PolicyRefusal) as caught:
        await engine.jobs.reserve(JobSpec(kind=JobKind.IMAGINE, prompt="hi"), dm)
    assert caught.value.rule == "dms"
    assert await engine.storage.jobs.unfinished() == []


async def test_concurrent_requests_respect_the_in_flight_limit(engine: Engine) -> None:
    engine.fake.script(*[JobScript(queue_seconds=5.0)] * 5)
    spec = JobSpec(kind=JobKind.IMAGINE, prompt="many")
    results = await asyncio.gather(
        *(engine.jobs.reserve(spec, WHO) for _ in range(6)), return_exceptions=True
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    # Counted in the database, atomically with each reservation (the one record): the
    # requests that lost the race are refused there, whatever the policy check saw.
    refused = [r for r in results if isinstance(r, PolicyRefusal | TooManyJobsError)]
    assert len(ok) == 3 and len(refused) == 3  # the default guild policy: 3 in flight
    assert all(
        r.rule == "in_flight" if isinstance(r, PolicyRefusal) else r.allowed == 3 for r in refused
    )
    assert await used_today(engine.storage) == 3
    # once they are in flight, the next one is refused by the policy, before any reservation
    with pytest.raises(PolicyRefusal) as refusal:
        await engine.jobs.reserve(spec, WHO)
    assert refusal.value.rule == "in_flight"


async def test_a_closing_engine_takes_no_new_jobs(engine: Engine) -> None:
    await engine.jobs.close()
    with pytest.raises(StudioClosing):
        await engine.jobs.reserve(JobSpec(kind=JobKind.IMAGINE, prompt="late"), WHO)


# -- failures and cancels refund --------------------------------------------------------------


async def test_api_failure_refunds_and_tells_why(engine: Engine) -> None:
    engine.fake.script(JobScript(outcome="fail", error="content filtered"))
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="nope", num_images=2))
    failed = await wait_state(engine.storage, job.id, JobState.FAILED)
    assert "content filtered" in (failed.error or "")
    await until(lambda: engine.presenter.outcomes)
    assert engine.presenter.outcomes == [(job.id, JobState.FAILED, failed.error)]
    assert engine.presenter.delivered == []
    assert await used_today(engine.storage) == 0


@pytest.mark.expect_errors(logger="services.jobs", match="no balance left")
async def test_submit_rejected_by_the_api_refunds(engine: Engine) -> None:
    engine.fake.inject("submit", status=402, body={"error_code": 400002, "message": "no balance"})
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="broke"))
    failed = await wait_state(engine.storage, job.id, JobState.FAILED)
    assert failed.request_id is None
    assert await used_today(engine.storage) == 0
    await until(lambda: engine.presenter.outcomes)
    assert [o[1] for o in engine.presenter.outcomes] == [JobState.FAILED]


async def test_cancel_while_queued_calls_the_api_and_refunds(engine: Engine) -> None:
    engine.fake.script(JobScript(queue_seconds=5.0, queue_position=3))
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="wait", num_images=2))
    await wait_state(engine.storage, job.id, JobState.SUBMITTED, JobState.QUEUED)
    runner = job_task(job.id)

    result = await cancel_as(engine, job.id, USER, GUILD, manage=False)
    assert result == CancelResult.CANCELLED
    assert engine.fake.count("cancel") == 1
    assert (await wait_state(engine.storage, job.id, JobState.CANCELLED)).state.is_terminal
    assert await used_today(engine.storage) == 0
    # a double click changes nothing and reports the same
    assert await cancel_as(engine, job.id, USER, GUILD, manage=False) == "cancelled"
    assert await used_today(engine.storage) == 0
    await runner  # the poller notices the cancel too: still only one outcome
    assert engine.presenter.outcomes == [(job.id, JobState.CANCELLED, None)]
    assert engine.presenter.delivered == []


async def test_cancel_while_running_is_refused(engine: Engine) -> None:
    engine.fake.script(JobScript(queue_seconds=0.0, run_seconds=5.0))
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="busy"))
    await wait_state(engine.storage, job.id, JobState.RUNNING)
    assert await cancel_as(engine, job.id, USER, GUILD, manage=False) == "running"
    assert (await engine.storage.jobs.get(job.id)).state == JobState.RUNNING  # type: ignore[union-attr]
    assert await used_today(engine.storage) == 1


async def test_cancel_is_only_for_the_requester_or_moderators(engine: Engine) -> None:
    engine.fake.script(JobScript(queue_seconds=5.0))
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="mine"))
    await wait_state(engine.storage, job.id, JobState.SUBMITTED, JobState.QUEUED)
    with pytest.raises(NotAllowed):
        await cancel_as(engine, job.id, USER + 1, GUILD, manage=False)
    assert engine.fake.count("cancel") == 0
    with pytest.raises(NotAllowed):  # a moderator of another server may not
        await cancel_as(engine, job.id, USER + 1, GUILD + 1, manage=True)
    assert await cancel_as(engine, job.id, USER + 1, GUILD, manage=True) == "cancelled"


@pytest.mark.expect_errors(logger="services.jobs", match="the result could not be posted")
async def test_a_delivery_failure_keeps_the_result_and_posts_it_later(engine: Engine) -> None:
    engine.presenter.fail_delivery = 2
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="lost"))
    done = await wait_state(engine.storage, job.id, JobState.DELIVERED)
    assert [d[0] for d in engine.presenter.delivered] == [job.id]
    assert engine.presenter.outcomes == []  # never shown as failed
    assert done.committed == 1 and await used_today(engine.storage) == 1


@pytest.mark.expect_errors(logger="services.jobs", match="the result could not be posted")
async def test_a_result_discord_never_takes_stays_completed_for_the_next_start(
    parts: tuple[FakeRunComfy, Storage, RunComfyClient],
) -> None:
    fake, storage, client = parts
    first = engine_for(storage, client, fake)
    first.presenter.fail_delivery = 100
    job = await run_one(first, JobSpec(kind=JobKind.IMAGINE, prompt="stubborn"))
    for _ in range(JobTiming().delivery_attempts):
        assert await first.presenter.events.get() == f"delivery failed {job.id}"
    await first.jobs.close()
    kept = await wait_state(storage, job.id, JobState.COMPLETED)
    assert kept.error is None and first.presenter.outcomes == []
    assert await used_today(storage) == 1  # still reserved, not refunded
    second = engine_for(storage, client, fake)
    await second.jobs.resume()
    await wait_state(storage, job.id, JobState.DELIVERED)
    assert [d[0] for d in second.presenter.delivered] == [job.id]
    await second.jobs.close()


async def test_when_no_image_downloads_the_urls_are_delivered_as_links(engine: Engine) -> None:
    engine.fake.inject("image", status=404, times=2)
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="gone", num_images=2))
    done = await wait_state(engine.storage, job.id, JobState.DELIVERED)
    ((_, attached, missing),) = engine.presenter.delivered
    assert attached == 0 and sorted(missing) == sorted(done.result_urls)


async def test_a_job_past_its_deadline_is_cancelled_at_runcomfy_and_refunded(
    parts: tuple[FakeRunComfy, Storage, RunComfyClient],
) -> None:
    fake, storage, client = parts
    engine = engine_for(storage, client, fake, job_timeout=0.2)
    fake.script(JobScript(queue_seconds=60.0))  # never leaves the queue in time
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="slow"))
    failed = await wait_state(storage, job.id, JobState.FAILED)
    assert fake.count("cancel") == 1
    assert "cancelled there" in (failed.error or "")
    assert await used_today(storage) == 0
    assert engine.presenter.outcomes == [(job.id, JobState.FAILED, failed.error)]
    await engine.jobs.close()


async def test_transient_api_errors_while_following_do_not_fail_the_job(engine: Engine) -> None:
    engine.fake.inject("status", status=503, times=4)
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="bumpy"))
    await wait_state(engine.storage, job.id, JobState.DELIVERED)


async def test_an_image_that_cannot_be_downloaded_is_linked_not_dropped(engine: Engine) -> None:
    engine.fake.inject("image", status=404)  # one of the two images is gone
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="two", num_images=2))
    done = await wait_state(engine.storage, job.id, JobState.DELIVERED)
    ((_, attached, missing),) = engine.presenter.delivered
    assert attached == 1 and len(missing) == 1 and missing[0] in done.result_urls
    assert done.committed == 2


# -- status -------------------------------------------------------------------------------------


async def test_status_updates_report_the_queue(engine: Engine) -> None:
    # The fake moves on only once the member was shown the current step, so none is missed.
    engine.fake.script(JobScript(queue_seconds=FOREVER, run_seconds=FOREVER, queue_position=2))
    job = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="watch"))
    shown = engine.presenter.progress
    await until(lambda: any(p.state is JobState.QUEUED and p.queue_position for _, p in shown))
    (fake_job,) = engine.fake.jobs.values()
    fake_job.script = replace(fake_job.script, queue_seconds=0.0)  # it starts running
    await until(lambda: any(p.state is JobState.RUNNING for _, p in shown))
    finish_now(engine.fake, fake_job.request_id)
    await wait_state(engine.storage, job.id, JobState.DELIVERED)
    assert [d[0] for d in engine.presenter.delivered] == [job.id]


# -- restarts -------------------------------------------------------------------------------------


async def reserve_raw(storage: Storage, prompt: str = "resume me") -> Job:
    return await storage.jobs.create_reserved(
        NewJob(
            kind=JobKind.IMAGINE,
            user_id=USER,
            guild_id=GUILD,
            channel_id=CHANNEL,
            prompt=prompt,
            params={"num_images": 1, "seed": 5, "resolution": "1K", "output_format": "png"},
            cost=1,
        )
    )


async def test_resume_fails_a_job_stuck_in_submitting_and_refunds(engine: Engine) -> None:
    job = await reserve_raw(engine.storage)
    await engine.storage.jobs.transition(job.id, JobState.SUBMITTING)
    counts = await engine.jobs.resume()
    assert counts == {"failed": 1}
    failed = await engine.storage.jobs.get(job.id)
    assert failed is not None and failed.state == JobState.FAILED
    assert failed.error == RESTART_LOST_SUBMIT
    assert engine.presenter.outcomes == [(job.id, JobState.FAILED, RESTART_LOST_SUBMIT)]
    assert engine.fake.requests == []  # nothing was (re)sent
    assert await used_today(engine.storage) == 0


async def test_resume_submits_a_reserved_job_the_member_was_shown(engine: Engine) -> None:
    job = await reserve_raw(engine.storage)
    await engine.storage.jobs.set_fields(job.id, acknowledged=True)  # Discord took the answer
    assert await engine.jobs.resume() == {"reserved": 1}
    await job_task(job.id)  # the in-memory count drops when the task ends, after DELIVERED
    assert (await engine.storage.jobs.get(job.id)).state == JobState.DELIVERED
    assert engine.fake.count("submit") == 1
    assert await engine.jobs.in_flight(USER, GUILD) == 0


async def test_resume_refunds_a_reserved_job_whose_answer_never_reached_discord(
    engine: Engine,
) -> None:
    # The bot died between the reservation and answering the interaction: the member saw
    # "the application did not respond", so the job must neither run nor cost anything.
    job = await reserve_raw(engine.storage)
    assert not job.acknowledged
    assert await used_today(engine.storage) == 1
    assert await engine.jobs.resume() == {"never acknowledged": 1}
    failed = await engine.storage.jobs.get(job.id)
    assert failed is not None and failed.state == JobState.FAILED
    assert failed.error == NEVER_ACKNOWLEDGED
    assert engine.fake.requests == []  # nothing sent to RunComfy
    assert engine.presenter.outcomes == []  # nothing posted about a job nobody saw...
    assert engine.presenter.withdrawn == [job.id]  # ...but its message corrected if it exists
    assert await used_today(engine.storage) == 0
    assert await engine.jobs.in_flight(USER, GUILD) == 0


async def test_resume_follows_a_submitted_job_and_delivers_it_once(
    parts: tuple[FakeRunComfy, Storage, RunComfyClient],
) -> None:
    fake, storage, client = parts
    fake.script(JobScript(queue_seconds=FOREVER))
    first = engine_for(storage, client, fake)
    job = await run_one(first, JobSpec(kind=JobKind.IMAGINE, prompt="survive"))
    job = await wait_state(storage, job.id, JobState.SUBMITTED, JobState.QUEUED)
    await first.jobs.close()  # a clean stop: the job stays where it was
    kept = await storage.jobs.get(job.id)
    assert kept is not None and kept.state in (JobState.SUBMITTED, JobState.QUEUED)
    assert first.presenter.delivered == []

    second = engine_for(storage, client, fake)
    try:
        await second.jobs.resume()
        runner = job_task(job.id)
        finish_now(fake, job.request_id)
        await wait_state(storage, job.id, JobState.DELIVERED)
        assert await second.jobs.resume() == {}  # nothing left: never delivered twice
        await runner
        assert [d[0] for d in second.presenter.delivered] == [job.id]
        assert fake.count("submit") == 1
    finally:
        await second.jobs.close()


async def test_resume_delivers_a_completed_job_and_leaves_held_ones(engine: Engine) -> None:
    done_elsewhere = await run_one(engine, JobSpec(kind=JobKind.IMAGINE, prompt="source"))
    source = await wait_state(engine.storage, done_elsewhere.id, JobState.DELIVERED)

    completed = await reserve_raw(engine.storage, "completed before the crash")
    for state in (JobState.SUBMITTING, JobState.SUBMITTED):
        await engine.storage.jobs.transition(completed.id, state, request_id="r-1")
    await engine.storage.jobs.transition(
        completed.id, JobState.COMPLETED, result_urls=list(source.result_urls)
    )
    held = await reserve_raw(engine.storage, "awaiting a moderator")
    for state in (JobState.SUBMITTING, JobState.SUBMITTED, JobState.COMPLETED):
        await engine.storage.jobs.transition(held.id, state, request_id="r-2")
    await engine.storage.jobs.transition(held.id, JobState.AWAITING_APPROVAL)

    assert await engine.jobs.resume() == {"completed": 1, "held": 1}
    await wait_state(engine.storage, completed.id, JobState.DELIVERED)
    still = await engine.storage.jobs.get(held.id)
    assert still is not None and still.state == JobState.AWAITING_APPROVAL


async def test_a_burst_of_requests_defers_background_work_but_not_forever(
    parts: tuple[FakeRunComfy, Storage, RunComfyClient],
) -> None:
    fake, storage, client = parts
    timing = JobTiming(status_interval=0, yield_window=60.0, yield_burst=2, yield_max=0.3)
    presenter = RecordingPresenter(pacing=Pacing(timing))
    jobs = JobService(
        storage,
        client,
        PolicyService(storage),
        presenter,
        quota=QuotaSettings(default_daily_credits=10),
        # two requests within 60 s count as a burst; background work waits at most 0.3 s
        timing=timing,
    )
    try:
        assert presenter.pacing is not None
        for _ in ("one", "two"):  # the cogs note each interaction (answered here at once)
            with presenter.pacing.request():
                pass
        first = await jobs.reserve(JobSpec(kind=JobKind.IMAGINE, prompt="one"), WHO)
        second = await jobs.reserve(JobSpec(kind=JobKind.IMAGINE, prompt="two"), WHO)
        started = asyncio.get_running_loop().time()
        await jobs.accepted(first.job)
        await jobs.accepted(second.job)
        for reservation in (first, second):
            await wait_state(storage, reservation.job.id, JobState.DELIVERED)
        submits = [r for r in fake.requests if r.endpoint == "submit"]
        assert len(submits) == 2
        # Acknowledging the burst came first: neither job was submitted before its wait (0.3 s
        # on the loop's clock, the fake's too) ran out. A slow machine only makes it later.
        assert all(r.at >= started + 0.29 for r in submits), [r.at - started for r in submits]
    finally:
        await jobs.close()


# -- the stored request ----------------------------------------------------------------------------


def stored_job(kind: JobKind, params: dict[str, object]) -> Job:
    now = datetime.now(UTC)
    return Job(
        id="old1",
        kind=kind,
        state=JobState.DELIVERED,
        user_id=USER,
        guild_id=GUILD,
        channel_id=CHANNEL,
        prompt="an old one",
        params=params,
        cost=1,
        created_at=now,
        updated_at=now,
    )


def test_rows_written_before_the_typed_request_still_load_with_the_defaults() -> None:
    # A row of the first schema kept only what the member chose.
    old = JobRequest.of(stored_job(JobKind.IMAGINE, {"num_images": 3}))
    assert old.options.num_images == 3
    assert old.options.resolution == "1K" and old.options.aspect_ratio == "auto"
    assert old.options.safety_tolerance == 4 and old.options.seed is None
    assert not old.safety_chosen and old.upload_limit == 10 * 2**20 and old.notes == ()
    again = spec_of(stored_job(JobKind.IMAGINE, {"num_images": 3}), seed=None)
    assert again.num_images == 3 and again.safety is None and again.parent_job_id == "old1"
    edit = JobRequest.of(stored_job(JobKind.EDIT, {"image_urls": ["https://cdn.example/a.png"]}))
    assert edit.image_urls == ("https://cdn.example/a.png",)


def test_the_stored_request_round_trips_through_the_row() -> None:
    api = EditRequest(
        "blue", ("https://cdn.example/a.png",), GenerationOptions(num_images=2, seed=7)
    )
    request = JobRequest(
        api,
        safety_chosen=True,
        upload_limit=25 * 2**20,
        notes=(Wording("lowered to {n}", {"n": 2}),),
    )
    row = replace(stored_job(JobKind.EDIT, request.to_params()), prompt="blue")
    assert JobRequest.of(row) == request
