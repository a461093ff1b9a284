"""Learned job timings kept across restarts: the store (migration 5) and the keeper service."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp

from client import ClientSettings, RunComfyClient
from client.polling import JobSample
from services.timings import TimingKeeper
from tests.storage_fixtures import open_storage

ESTIMATE = {
    "queue": 2.0,
    "run": 18.0,
    "uncertainty": 0.3,
    "variability": 2.0,
    "queue_step": None,
    "jobs": 5,
}
KEYS = ("m@1Kx1", "m@1K")


def new_client(session: aiohttp.ClientSession) -> RunComfyClient:
    # Never sends anything here: only its estimator is used.
    return RunComfyClient(session, ClientSettings(api_token="t", api_base="http://127.0.0.1:9"))


async def test_estimates_are_stored_replaced_and_read_back(tmp_path: Path) -> None:
    async with open_storage(tmp_path) as storage:
        assert await storage.estimates.load() == {}
        await storage.estimates.save({"a": ESTIMATE, "b": {**ESTIMATE, "jobs": 1}})
        await storage.estimates.save({"b": {**ESTIMATE, "jobs": 9}})  # "a" stays
        assert await storage.estimates.load() == {"a": ESTIMATE, "b": {**ESTIMATE, "jobs": 9}}
    with sqlite3.connect(tmp_path / "bot.sqlite3") as conn:  # a damaged row
        conn.execute(
            "INSERT INTO timing_estimates VALUES ('c', 'not json', '2000-01-01T00:00:00+00:00')"
        )
    async with open_storage(tmp_path) as storage:
        assert set(await storage.estimates.load()) == {"a", "b"}


async def test_what_the_client_learned_survives_a_restart(
    db_target: Path, http_session: aiohttp.ClientSession
) -> None:
    async with open_storage(db_target) as storage:
        client = new_client(http_session)
        keeper = TimingKeeper(storage, client, delay=3600)
        assert await keeper.load() == 0
        client.durations.record(KEYS, JobSample((1.0, 2.0), (19.5, 20.5)))
        # A finished job only schedules the write: nothing is written on its path.
        assert await storage.estimates.load() == {}
        await keeper.close()  # the pending write is made on close
        learned = client.durations.estimate(KEYS)
        assert set(await storage.estimates.load()) == set(KEYS)

    async with open_storage(db_target) as storage:
        restarted = new_client(http_session)
        assert restarted.durations.estimate(KEYS) is None
        assert await TimingKeeper(storage, restarted).load() == 2
        assert restarted.durations.estimate(KEYS) == learned


async def test_changes_are_saved_soon_after_in_one_write(
    db_target: Path, http_session: aiohttp.ClientSession
) -> None:
    async with open_storage(db_target) as storage:
        client = new_client(http_session)
        keeper = TimingKeeper(storage, client, delay=0.01)
        await keeper.load()
        for total in (20.0, 21.0, 19.0):  # a burst of finished jobs
            client.durations.record(KEYS, JobSample((1.0, 2.0), (total - 0.1, total + 0.1)))
        for _ in range(1000):  # the bound only stops a broken test from hanging
            stored = await storage.estimates.load()
            if stored:
                break
            await asyncio.sleep(0.01)
        assert stored == client.durations.export()
        assert stored["m@1K"]["jobs"] == 3
        await keeper.close()
