"""Several bot processes on one PostgreSQL database: leases, takeover, signals, leader, shards.

Each "process" here is a real one (tests.cluster_worker, killed with SIGKILL) or a JobService
with its own database connection and lease owner, against one real PostgreSQL server and the
fake RunComfy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest

from client import RunComfyClient
from client.settings import ClientSettings
from services.jobs import CancelResult, JobService, JobSpec
from services.leadership import Leadership
from services.policy import PolicyService
from storage import QuotaSettings, Storage
from storage.cluster import ClusterStore
from storage.models import JobKind, JobState
from tests.cluster_worker import LEASE_SECONDS, cluster_timing
from tests.fakes.runcomfy import FakeRunComfy, JobScript
from tests.helpers import FAST_POLLING, FAST_RETRY, FOREVER, finish_now, wait_job_state
from tests.test_jobs import USER, WHO, RecordingPresenter, until

ROOT = Path(__file__).resolve().parent.parent
QUOTA = QuotaSettings(default_daily_credits=10_000)


@dataclass
class Process:
    """One bot process's engine: its own connection, its own lease owner."""

    storage: Storage
    jobs: JobService
    presenter: RecordingPresenter
    policy: PolicyService


@contextlib.asynccontextmanager
async def process(
    url: str,
    fake: FakeRunComfy,
    session: aiohttp.ClientSession,
    owner: str,
    *,
    check_every: float | None = None,
    listening: bool = True,
) -> AsyncIterator[Process]:
    async with Storage.open(url, QUOTA) as storage:
        client = RunComfyClient(
            session,
            ClientSettings(api_token="t", api_base=fake.base_url),
            retry=FAST_RETRY,
            polling=FAST_POLLING,
        )
        presenter = RecordingPresenter()
        policy = PolicyService(storage)
        jobs = JobService(
            storage,
            client,
            policy,
            presenter,
            quota=QUOTA,
            timing=replace(
                cluster_timing(), lease_check=check_every or cluster_timing().lease_check
            ),
            lease_owner=owner,
        )
        await jobs.resume()
        if listening:  # what the tests change from now on is heard
            await until(lambda: jobs.listening, timeout=10)
        try:
            yield Process(storage, jobs, presenter, policy)
        finally:
            await jobs.close()


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeRunComfy, aiohttp.ClientSession]]:
    async with FakeRunComfy(token="t") as fake, aiohttp.ClientSession() as session:
        yield fake, session


async def test_a_killed_processs_jobs_are_taken_over_and_delivered_exactly_once(
    postgres_url: str, fakes: tuple[FakeRunComfy, aiohttp.ClientSession]
) -> None:
    fake, session = fakes
    count = 6
    fake.script(*[JobScript(queue_seconds=FOREVER) for _ in range(count)])
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.cluster_worker",
        postgres_url,
        fake.base_url,
        "worker",
        str(count),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    job_ids: list[str] = []
    try:
        async with asyncio.timeout(60):
            assert worker.stdout is not None
            while (line := (await worker.stdout.readline()).decode().split()) != ["ready"]:
                assert line, "the worker stopped early"
                job_ids.append(line[1])
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    assert worker.returncode == -signal.SIGKILL and len(job_ids) == count

    async with process(postgres_url, fake, session, "survivor") as survivor:
        # Still the dead process's until its leases run out; then the survivor's.
        for job_id in job_ids:
            job = await survivor.storage.jobs.get(job_id)
            assert job is not None and job.request_id is not None
            finish_now(fake, job.request_id)
        for job_id in job_ids:
            await wait_job_state(survivor.storage, job_id, JobState.DELIVERED, timeout=30)
        assert sorted(d[0] for d in survivor.presenter.delivered) == sorted(job_ids)
        assert fake.count("submit") == count  # followed by request_id, never submitted again
        assert await survivor.storage.quota.audit() == []
        for job_id in job_ids:
            entries = await survivor.storage.quota.job_entries(job_id)
            assert [e.kind.value for e in entries] == ["reserve", "commit"]


async def test_a_live_processs_jobs_are_not_taken_over(
    postgres_url: str, fakes: tuple[FakeRunComfy, aiohttp.ClientSession]
) -> None:
    fake, session = fakes
    fake.script(JobScript(queue_seconds=FOREVER))
    async with (
        process(postgres_url, fake, session, "a") as a,
        process(postgres_url, fake, session, "b") as b,
    ):
        reservation = await a.jobs.reserve(JobSpec(kind=JobKind.IMAGINE, prompt="a cat"), WHO)
        await a.jobs.accepted(reservation.job)
        job = await wait_job_state(a.storage, reservation.job.id, JobState.QUEUED)
        await asyncio.sleep(LEASE_SECONDS * 2.5)  # several renewals: still a's
        assert b.jobs.active_count() == 0 and a.jobs.active_count() == 1
        finish_now(fake, job.request_id)
        await wait_job_state(a.storage, job.id, JobState.DELIVERED)
        assert [d[0] for d in a.presenter.delivered] == [job.id] and not b.presenter.delivered


@pytest.mark.parametrize("signals", [True, False], ids=["notify", "periodic-check"])
async def test_a_cancel_on_another_process_stops_the_follower_within_a_second(
    postgres_url: str,
    fakes: tuple[FakeRunComfy, aiohttp.ClientSession],
    monkeypatch: pytest.MonkeyPatch,
    signals: bool,
) -> None:
    fake, session = fakes
    # With signals, the periodic check is too rare to be what stops the follower in time.
    check_every = 30.0 if signals else 0.2
    if not signals:  # LISTEN lost: the periodic check alone must stop the follower

        @contextlib.asynccontextmanager
        async def deaf(self: ClusterStore, *callbacks: object) -> AsyncIterator[bool]:
            yield False

        monkeypatch.setattr(ClusterStore, "signals", deaf)
    fake.script(JobScript(queue_seconds=FOREVER))
    async with (
        process(
            postgres_url, fake, session, "follower", check_every=check_every, listening=signals
        ) as follower,
        process(postgres_url, fake, session, "clicked", listening=signals) as clicked,
    ):
        reservation = await follower.jobs.reserve(
            JobSpec(kind=JobKind.IMAGINE, prompt="a cat"), WHO
        )
        job_id = reservation.job.id
        await follower.jobs.accepted(reservation.job)
        await wait_job_state(follower.storage, job_id, JobState.QUEUED)
        await until(lambda: follower.jobs.active_count() == 1)
        # RunComfy stops answering the follower's polls, so only the database can tell it
        for endpoint in ("status", "result"):
            fake.inject(endpoint, times=1000, delay=FOREVER)
        await asyncio.sleep(0.1)

        # The Cancel button reaches the other process (the one with the server's shard).
        result = await clicked.jobs.cancel(
            job_id, actor_id=USER, guild_id=WHO.guild_id, may_manage=False
        )
        assert result == CancelResult.CANCELLED
        loop = asyncio.get_running_loop()
        started = loop.time()
        await until(lambda: follower.jobs.active_count() == 0, timeout=5)
        assert loop.time() - started < 1.0
        assert clicked.presenter.outcomes == [(job_id, JobState.CANCELLED, None)]
        assert follower.presenter.outcomes == []  # shown once, by the process that cancelled
        assert fake.count("cancel") == 1
        assert await follower.storage.quota.audit() == []
        assert (await follower.storage.quota.balance(USER, WHO.guild_id)).used == 0


async def test_a_rule_changed_on_one_process_reaches_the_others_cache(
    postgres_url: str, fakes: tuple[FakeRunComfy, aiohttp.ClientSession]
) -> None:
    fake, session = fakes
    guild = WHO.guild_id
    assert guild is not None
    async with (
        process(postgres_url, fake, session, "a", check_every=30.0) as a,
        process(postgres_url, fake, session, "b", check_every=30.0) as b,
    ):
        assert (await b.policy.policy(guild)).approval_mode is False  # cached by b now
        assert (await b.policy.blocklist(guild)).check("a forbidden word") is None
        # an admin on a (the guild's shard) turns approval on and blocks a word
        await a.storage.policy.update(guild, approval_mode=True, log_channel_id=55)
        await a.storage.policy.add_block(guild, "forbidden", is_regex=False, added_by=9)
        a.policy.invalidate(guild)

        async def b_sees_both() -> bool:
            blocked = (await b.policy.blocklist(guild)).check("a forbidden word") is not None
            return blocked and (await b.policy.policy(guild)).approval_mode

        async with asyncio.timeout(1.0):  # b's cached copy is dropped when each change commits
            while not await b_sees_both():  # noqa: ASYNC110
                await asyncio.sleep(0.01)


async def test_a_lost_signal_connection_is_opened_again_and_nothing_stays_stale(
    postgres_url: str, fakes: tuple[FakeRunComfy, aiohttp.ClientSession]
) -> None:
    fake, session = fakes
    guild = WHO.guild_id
    assert guild is not None
    async with (
        process(postgres_url, fake, session, "a", check_every=0.2) as a,
        process(postgres_url, fake, session, "b", check_every=0.2) as b,
    ):
        assert (await b.policy.policy(guild)).cooldown_seconds == 0  # cached by b
        # the server drops the listening connections (a restart, a network blip)
        dropped = await a.storage.db.query(
            lambda c: c.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            ).fetchone()[0]
        )
        assert dropped == 2
        # changed while nobody listens: b's copy is dropped once it listens again
        await a.storage.policy.update(guild, cooldown_seconds=30)
        async with asyncio.timeout(5.0):
            while (await b.policy.policy(guild)).cooldown_seconds != 30:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        # it listens again (its copy was dropped once it did), so it hears this one at once
        await a.storage.policy.update(guild, cooldown_seconds=60)
        async with asyncio.timeout(1.0):
            while (await b.policy.policy(guild)).cooldown_seconds != 60:  # noqa: ASYNC110
                await asyncio.sleep(0.02)


async def test_one_leader_and_another_takes_over_when_it_stops(postgres_url: str) -> None:
    led: list[str] = []

    async def duties(name: str) -> None:
        led.append(name)

    async with contextlib.AsyncExitStack() as stack:
        second_db = await stack.enter_async_context(Storage.open(postgres_url))
        second = Leadership(second_db.cluster, lambda: duties("second"), retry=0.05)
        stack.push_async_callback(second.close)
        async with Storage.open(postgres_url) as first_db:
            first = Leadership(first_db.cluster, lambda: duties("first"), retry=0.05)
            assert await first.begin() is True
            assert await second.begin() is False
            await asyncio.sleep(0.3)  # several tries: still not the second's turn
            assert led == ["first"]
            await first.close()
        # the leader's connection is gone (as when its process dies), its lock with it
        await until(lambda: led == ["first", "second"], timeout=5)
        assert second.leading


async def test_two_processes_with_the_same_shards_are_refused(postgres_url: str) -> None:
    async with Storage.open(postgres_url) as first, Storage.open(postgres_url) as second:
        assert await first.cluster.claim_shards([0, 1]) == []
        assert await second.cluster.claim_shards([1, 2]) == [1]
        assert await second.cluster.claim_shards([2, 3]) == []


async def test_bot_refuses_to_start_on_shards_another_process_runs(postgres_url: str) -> None:
    env = {
        **os.environ,
        "DISCORD_TOKEN": "x",
        "RUNCOMFY_API_TOKEN": "y",
        "DATABASE_URL": postgres_url,
        "SHARD_COUNT": "2",
        "SHARD_IDS": "1",
        "LOG_LEVEL": "WARNING",
    }
    async with Storage.open(postgres_url) as running:
        assert await running.cluster.claim_shards([1]) == []
        second = await asyncio.create_subprocess_exec(
            sys.executable,
            "bot.py",
            "--env-file",
            "/nonexistent",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            _, err = await second.communicate()
    assert second.returncode == 1
    assert err.decode().strip().splitlines() == [
        "error: SHARD_IDS: another bot process already runs shard 1 on this database;"
        " stop it first or give this one other SHARD_IDS"
    ]
