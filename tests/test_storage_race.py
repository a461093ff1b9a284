"""Quotas across processes: 500 reservations from 4 processes against one limit on PostgreSQL.

Each racer is a real process with its own connection; they start together. Exactly the limit
is granted, whichever limit it is, and the ledger audit balances afterwards.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from storage import Storage
from tests.storage_fixtures import GUILD

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 4
EACH = 125  # 500 in all


async def _race(url: str, limit: int, kind: str) -> list[tuple[int, int]]:
    racers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.storage_fixtures",
            "race",
            url,
            str(EACH),
            str(limit),
            kind,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    try:
        async with asyncio.timeout(120):
            for racer in racers:
                assert racer.stdout is not None
                assert (await racer.stdout.readline()).strip() == b"ready"
            for racer in racers:  # go
                assert racer.stdin is not None
                racer.stdin.write(b"go\n")
                await racer.stdin.drain()
            results = []
            for racer in racers:
                assert racer.stdout is not None
                words = (await racer.stdout.readline()).decode().split()
                assert words[0] == "granted", words
                results.append((int(words[1]), int(words[3])))
                assert await racer.wait() == 0
            return results
    finally:
        for racer in racers:
            if racer.returncode is None:
                racer.kill()
                await racer.wait()


@pytest.mark.parametrize(("kind", "limit"), [("member", 100), ("cap", 100), ("in-flight", 7)])
async def test_500_reservations_from_4_processes_grant_exactly_the_limit(
    postgres_url: str, kind: str, limit: int
) -> None:
    async with Storage.open(postgres_url):
        pass  # migrated first: the race is the reservations' alone
    results = await _race(postgres_url, limit, kind)
    assert sum(granted for granted, _ in results) == limit
    assert sum(granted + refused for granted, refused in results) == PROCESSES * EACH
    async with Storage.open(postgres_url) as storage:
        assert await storage.quota.audit() == []
        assert await storage.jobs.in_flight_count() == limit
        if kind == "member":
            assert (await storage.quota.balance(1, GUILD)).used == limit


async def test_processes_opening_an_empty_database_at_once_migrate_it_once(
    postgres_url: str,
) -> None:
    async def open_one() -> int:
        async with Storage.open(postgres_url) as storage:
            return storage.schema_version

    versions = await asyncio.gather(*(open_one() for _ in range(PROCESSES)))
    assert len(set(versions)) == 1
