"""A bot process's job engine on its own, for the tests that kill one with SIGKILL.

``python -m tests.cluster_worker DB_URL RUNCOMFY_URL OWNER COUNT`` runs COUNT jobs through a
real JobService (lease owner OWNER) against the database and the (fake) RunComfy, prints
``job <id>`` for each once RunComfy has it (its request_id is stored), then ``ready``, and
waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace

import aiohttp

from client import RunComfyClient
from client.settings import ClientSettings
from services.jobs import JobService, JobSpec
from services.policy import PolicyService
from services.settings import JobTiming
from storage import QuotaSettings, Storage
from storage.models import JobKind, JobState
from tests.helpers import FAST_POLLING, FAST_RETRY, wait_job_state
from tests.test_jobs import WHO, RecordingPresenter

LEASE_SECONDS = 1.0


def cluster_timing() -> JobTiming:
    return JobTiming(
        submit_grace=2.0,
        yield_window=0,
        delivery_retry=0.01,
        lease_seconds=LEASE_SECONDS,
        lease_check=0.05,
    )


async def _work(url: str, api: str, owner: str, count: int) -> None:
    quota = QuotaSettings(default_daily_credits=10_000)
    async with Storage.open(url, quota) as storage, aiohttp.ClientSession() as session:
        client = RunComfyClient(
            session,
            ClientSettings(api_token="t", api_base=api),
            retry=FAST_RETRY,
            polling=FAST_POLLING,
        )
        jobs = JobService(
            storage,
            client,
            PolicyService(storage),
            RecordingPresenter(),
            quota=quota,
            timing=cluster_timing(),
            lease_owner=owner,
        )
        await jobs.resume()
        for n in range(count):
            who = replace(WHO, user_id=WHO.user_id + n)  # a member has 3 jobs in flight at most
            reservation = await jobs.reserve(JobSpec(kind=JobKind.IMAGINE, prompt="a cat"), who)
            await jobs.accepted(reservation.job)
            await wait_job_state(
                storage, reservation.job.id, JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING
            )
            print(f"job {reservation.job.id}", flush=True)
        print("ready", flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: python -m tests.cluster_worker DB_URL RUNCOMFY_URL OWNER COUNT")
    asyncio.run(_work(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
