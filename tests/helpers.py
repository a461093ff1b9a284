"""Small things the bot's tests share: fast client policies, waiting on job states, and driving
the fake RunComfy's jobs explicitly (so no test depends on how fast the machine is)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from client import PollingPolicy, RetryPolicy
from storage import Storage
from storage.models import Job, JobState
from tests.fakes.runcomfy import FakeRunComfy

# Milliseconds instead of seconds, so fault and polling tests run in a blink.
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.002, max_delay=0.01, max_retry_after=0.5)
FAST_POLLING = PollingPolicy(
    first_poll=0.005, min_interval=0.005, max_interval=0.02, warmup_interval=0.005
)
# A queue or run time no test waits out: the test ends it with ``finish_now``.
FOREVER = 600.0


async def wait_job_state(
    storage: Storage,
    job_id: str,
    *states: JobState,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> Job:
    """Poll the database until the job is in one of ``states``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = await storage.jobs.get(job_id)
        assert job is not None
        if job.state in states:
            return job
        if loop.time() > deadline:
            raise AssertionError(f"job {job_id} is {job.state}, never reached {states}")
        await asyncio.sleep(0.005)


def finish_now(fake: FakeRunComfy, request_id: str | None) -> None:
    """End a scripted RunComfy job's queue and run time now: its next poll sees it done."""
    assert request_id is not None
    job = fake.jobs[request_id]
    job.script = replace(job.script, queue_seconds=0.0, run_seconds=0.0)


def job_task(job_id: str) -> asyncio.Task[None]:
    """The job engine's background task for ``job_id`` (named ``job-<id>``)."""
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == f"job-{job_id}"]
    return task  # type: ignore[return-value]
