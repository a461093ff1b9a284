"""Helpers for the storage tests, the writer process the crash test kills, and the racers.

``python -m tests.storage_fixtures burst DB_PATH`` reserves, delivers, fails and grants in a
loop, printing one line per operation once it has returned (so it is committed):
``job <id> <state>`` or ``grant``. The crash test kills it with SIGKILL mid-stream.

``python -m tests.storage_fixtures race DB_URL N LIMIT KIND`` prints ``ready``, waits for a line
on stdin, then makes N reservations at once against one limit of LIMIT (KIND: ``member``, one
member's daily credits; ``cap``, the bot-wide daily cap over many members; ``in-flight``, one
member's unfinished jobs) and prints ``granted G refused R``.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from storage import (
    JobKind,
    JobState,
    NewJob,
    QuotaExceededError,
    QuotaSettings,
    Storage,
    TooManyJobsError,
)

T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
GUILD = 111
OTHER_GUILD = 222
CHANNEL = 333


class FakeClock:
    """A settable UTC clock, so tests can cross midnight without waiting."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def new_job(user_id: int = 1, guild_id: int | None = GUILD, cost: int = 1, **fields: Any) -> NewJob:
    values: dict[str, Any] = {
        "kind": JobKind.IMAGINE,
        "user_id": user_id,
        "guild_id": guild_id,
        "channel_id": CHANNEL,
        "prompt": "a lighthouse at dusk",
        "params": {"num_images": cost, "resolution": "1K", "aspect_ratio": "1:1"},
        "cost": cost,
    }
    values.update(fields)
    return NewJob(**values)


@asynccontextmanager
async def open_storage(
    where: Path | str, *, clock: FakeClock | None = None, **quota: Any
) -> AsyncIterator[Storage]:
    """Storage in a folder (an SQLite file there) or at a PostgreSQL URL (the db_target fixture)."""
    target = where / "bot.sqlite3" if isinstance(where, Path) else where
    async with Storage.open(target, QuotaSettings(**quota), clock=clock or FakeClock()) as storage:
        yield storage


async def _burst(path: Path) -> None:
    rng = random.Random(7)
    quota = QuotaSettings(default_daily_credits=10**6)
    async with Storage.open(path, quota) as storage:

        async def member(user_id: int) -> None:
            while True:
                job = await storage.jobs.create_reserved(
                    new_job(user_id, GUILD + user_id % 3, cost=rng.randint(1, 4))
                )
                print(f"job {job.id} reserved", flush=True)
                roll = rng.random()
                if roll < 0.6:
                    done = await storage.jobs.transition(
                        job.id,
                        JobState.DELIVERED,
                        delivered_cost=rng.randint(0, job.cost),
                        result_urls=["https://example.invalid/a.png"],
                    )
                elif roll < 0.9:
                    done = await storage.jobs.transition(job.id, JobState.FAILED, error="boom")
                else:
                    await storage.quota.grant(user_id, GUILD, 2, actor_id=9)
                    print("grant", flush=True)
                    continue
                assert done is not None
                print(f"job {done.id} {done.state.value}", flush=True)

        await asyncio.gather(*(member(u) for u in range(1, 21)))


async def _race(url: str, count: int, limit: int, kind: str) -> None:
    big = 10**6
    quota = {
        "member": QuotaSettings(default_daily_credits=limit),
        "cap": QuotaSettings(default_daily_credits=big, global_daily_cap=limit),
        "in-flight": QuotaSettings(default_daily_credits=big),
    }[kind]
    async with Storage.open(url, quota) as storage:

        async def one(n: int) -> bool:
            user = 1 + (n if kind == "cap" else 0) + os.getpid() * 1000 * (kind == "cap")
            in_flight = limit if kind == "in-flight" else None
            try:
                await storage.jobs.create_reserved(new_job(user), max_in_flight=in_flight)
            except (QuotaExceededError, TooManyJobsError):
                return False
            return True

        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # all racers start together
        granted = sum(await asyncio.gather(*(one(n) for n in range(count))))
        print(f"granted {granted} refused {count - granted}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "burst":
        asyncio.run(_burst(Path(sys.argv[2])))
    elif len(sys.argv) == 6 and sys.argv[1] == "race":
        asyncio.run(_race(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))
    else:
        sys.exit("usage: python -m tests.storage_fixtures burst DB_PATH | race URL N LIMIT KIND")
