"""The lease keeper stops when asked, whatever it was doing at that moment."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.jobs.leases import LeaseKeeper
from services.jobs.running import RunningJobs
from services.settings import JobTiming
from storage import Storage
from storage.models import Job


class Rules:
    def invalidate(self, guild_id: int) -> None:
        return None

    def invalidate_all(self) -> None:
        return None


async def _adopt(job: Job) -> None:
    return None


async def test_a_keeper_woken_as_it_is_stopped_stops(tmp_path: Path) -> None:
    # Python 3.11's wait_for can lose a cancellation that meets its timeout or its result in the
    # same loop turn; a keeper that kept going made shutdown wait forever.
    async with Storage.open(tmp_path / "bot.sqlite3") as storage:
        running = RunningJobs()
        running.add("j").task = asyncio.current_task()  # a job this process follows
        for n in range(300):
            keeper = LeaseKeeper(
                storage, running, _adopt, Rules(), owner="me", timing=JobTiming(lease_check=0.001)
            )
            keeper.start()
            for _ in range(n % 7):
                await asyncio.sleep(0)
            keeper.heard("j")  # wakes it, as a signal would, in the turn it is cancelled
            async with asyncio.timeout(5):
                await keeper.stop()
