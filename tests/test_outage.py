"""Outages: the circuit breaker, one ERROR and one moderators' notice per incident, plain member
words, and the metrics endpoint after a delivered job (end to end)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from bot_metrics import serve_metrics
from client import RunComfyClient
from client.errors import APIConnectionError
from client.settings import ClientSettings
from services.errors import ServiceUnavailable
from services.jobs import JobService, JobSpec
from services.jobs.breaker import BreakerState, CircuitBreaker
from services.jobs.outage import Outage
from services.jobs.runcomfy import OUTAGE_REASON, reason_for
from services.metrics import Metrics
from services.policy import PolicyService
from services.settings import JobTiming
from storage import QuotaSettings, Storage
from storage.models import JobKind, JobState
from tests.e2e_harness import studio_env
from tests.fakes.runcomfy import FakeRunComfy
from tests.helpers import FAST_POLLING, FAST_RETRY, wait_job_state
from tests.test_jobs import WHO, RecordingEvents, RecordingPresenter, until, used_today


class Notices:
    def __init__(self) -> None:
        self.sent: list[tuple[int, Outage]] = []

    def outage(self, guild_id: int, outage: Outage) -> None:
        self.sent.append((guild_id, outage))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def setup(
    tmp_path: Path,
) -> AsyncIterator[tuple[FakeRunComfy, Storage, JobService, Clock, Notices]]:
    clock, notices = Clock(), Notices()
    async with (
        FakeRunComfy(token="t") as fake,
        aiohttp.ClientSession() as session,
        Storage.open(tmp_path / "db.sqlite3", QuotaSettings(default_daily_credits=10)) as storage,
    ):
        settings = ClientSettings(api_token="t", api_base=fake.base_url)
        client = RunComfyClient(session, settings, retry=FAST_RETRY, polling=FAST_POLLING)
        jobs = JobService(
            storage,
            client,
            PolicyService(storage),
            RecordingPresenter(),
            quota=QuotaSettings(default_daily_credits=10),
            timing=JobTiming(job_timeout=30.0, submit_grace=2.0, yield_window=0),
            events=RecordingEvents(),
            clock=clock,
            breaker=CircuitBreaker(threshold=3, pause=60, max_pause=600),
            outages=notices,
        )
        yield fake, storage, jobs, clock, notices
        await jobs.close()


SPEC = JobSpec(kind=JobKind.IMAGINE, prompt="a red fox")


async def _one(jobs: JobService) -> str:
    reservation = await jobs.reserve(SPEC, WHO)
    await jobs.accepted(reservation.job)
    return reservation.job.id


@pytest.mark.expect_errors(logger="services.jobs", match="RunComfy outage")
async def test_breaker_opens_refuses_before_charging_and_closes_after_the_pause(
    setup: tuple[FakeRunComfy, Storage, JobService, Clock, Notices],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, storage, jobs, clock, notices = setup
    fake.inject("submit", status=503, times=3)
    for _ in range(3):
        job_id = await _one(jobs)
        await wait_job_state(storage, job_id, JobState.FAILED)
    assert jobs.watch.breaker.state is BreakerState.OPEN
    assert await used_today(storage) == 0

    with pytest.raises(ServiceUnavailable):
        await jobs.reserve(SPEC, WHO)
    assert fake.count("submit") == 3  # nothing sent
    assert await used_today(storage) == 0  # nothing charged
    assert len(await storage.jobs.unfinished()) == 0

    # one incident: one ERROR line, one notice for the server
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "server errors" in errors[0].getMessage()
    assert [g for g, _ in notices.sent] == [WHO.guild_id]

    clock.now += timedelta(seconds=61)  # the pause is over: one trial goes through
    job_id = await _one(jobs)
    await wait_job_state(storage, job_id, JobState.DELIVERED)
    assert jobs.watch.breaker.state is BreakerState.CLOSED
    assert jobs.watch.outage is None
    await _one(jobs)  # open for business again


def test_breaker_trial_failure_doubles_the_pause() -> None:
    breaker, now = CircuitBreaker(threshold=2, pause=60, max_pause=100), datetime.now(UTC)
    breaker.failed(now)
    breaker.admit(now)  # one failure: still closed
    breaker.failed(now)
    with pytest.raises(ServiceUnavailable):
        breaker.admit(now + timedelta(seconds=59))
    breaker.admit(now + timedelta(seconds=60))  # the trial
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(ServiceUnavailable):
        breaker.admit(now + timedelta(seconds=61))  # only one trial at a time
    breaker.failed(now + timedelta(seconds=62))
    assert breaker.retry_at == now + timedelta(seconds=162)  # doubled, capped at 100


@pytest.mark.expect_errors(logger="services.jobs", match="RUNCOMFY_API_TOKEN")
async def test_bad_token_is_one_error_and_one_notice_for_several_jobs(
    setup: tuple[FakeRunComfy, Storage, JobService, Clock, Notices],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, storage, jobs, _, notices = setup
    fake.token = "another"  # every call is now 401 / 400004
    failed = []
    for _ in range(3):
        job_id = await _one(jobs)
        failed.append(await wait_job_state(storage, job_id, JobState.FAILED))
    assert {j.error for j in failed} == {OUTAGE_REASON}
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1
    await until(lambda: notices.sent)
    assert len(notices.sent) == 1
    assert jobs.watch.breaker.state is BreakerState.CLOSED  # auth does not trip it


def test_members_read_no_host_or_port() -> None:
    err = APIConnectionError("could not connect to RunComfy: Cannot connect to host 127.0.0.1:9")
    text = str(reason_for(err))
    assert text == "The image service isn't available right now."
    assert "127.0.0.1" not in text and ":9" not in text


async def test_metrics_scrape_after_a_delivered_job(tmp_path: Path) -> None:
    async with (
        studio_env(tmp_path) as env,
        env.running() as bot,
        serve_metrics(bot, "127.0.0.1", 0) as port,
    ):
        sent = await env.imagine("a lighthouse at dusk")
        status = await env.acknowledged(sent)
        job_id = env.job_id_of(status)
        await env.wait_state(job_id, JobState.DELIVERED)
        base = f"http://127.0.0.1:{port}"
        async with env.session.get(base + "/metrics") as response:
            assert response.status == 200
            text = await response.text()
        async with env.session.get(base + "/healthz") as response:
            assert response.status == 200
    lines = set(text.splitlines())
    assert 'studio_job_transitions_total{state="delivered"} 1.0' in lines
    assert 'studio_job_transitions_total{state="reserved"} 1.0' in lines
    assert "studio_credits_reserved_total 1.0" in lines
    assert "studio_credits_committed_total 1.0" in lines
    assert "studio_credits_refunded_total 0.0" in lines
    assert "studio_request_to_delivery_seconds_count 1.0" in lines
    assert "studio_acknowledgement_seconds_count 1.0" in lines
    assert 'studio_runcomfy_requests_total{endpoint="submit",outcome="ok"} 1.0' in lines
    assert any(line.startswith("studio_jobs_in_flight ") for line in lines)


def test_metrics_registries_are_per_bot() -> None:
    one, two = Metrics(), Metrics()
    one.api_request("submit", "ok")
    assert b"studio_runcomfy_requests_total" in one.exposition()
    assert b'endpoint="submit"' not in two.exposition()
