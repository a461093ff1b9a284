"""A writer killed with SIGKILL mid-burst leaves a sound database with balanced books."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path

from storage import JobState, LedgerKind, Storage

ROOT = Path(__file__).resolve().parent.parent
LINES_BEFORE_KILL = 1500


async def _run_and_kill(path: Path) -> tuple[dict[str, str], int]:
    """Start the burst writer, read what it reports as done, SIGKILL it mid-stream."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.storage_fixtures",
        "burst",
        str(path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    states: dict[str, str] = {}
    grants = 0
    try:
        async with asyncio.timeout(60):
            for _ in range(LINES_BEFORE_KILL):
                line = (await process.stdout.readline()).decode()
                if not line:
                    stderr = (await process.stderr.read()).decode()
                    raise AssertionError(f"the writer stopped early:\n{stderr}")
                words = line.split()
                if words[0] == "job":
                    states[words[1]] = words[2]
                else:
                    grants += 1
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL  # killed while still writing
    return states, grants


async def test_sigkill_during_a_burst_of_writes_loses_nothing_committed(tmp_path):
    path = tmp_path / "bot.sqlite3"
    reported, grants = await _run_and_kill(path)

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()

    async with Storage.open(path) as storage:
        assert await storage.integrity_check() == []
        assert await storage.quota.audit() == []
        for job_id, state in reported.items():
            job = await storage.jobs.get(job_id)
            assert job is not None, f"job {job_id} was reported written but is gone"
            if state != "reserved":
                assert job.state == JobState(state)
        unfinished = await storage.jobs.unfinished()
        assert all(j.state is JobState.RESERVED for j in unfinished)
        # Balances equal the ledger: recompute each member's day from their entries.
        granted_entries = 0
        for user_id in range(1, 21):
            for guild_id in (111, 112, 113):
                entries = await storage.quota.ledger(user_id, guild_id, limit=100_000)
                granted_entries += sum(e.kind is LedgerKind.GRANT for e in entries)
                balance = await storage.quota.balance(user_id, guild_id)
                day_start = balance.resets_at - timedelta(days=1)
                if any(not day_start <= e.at < balance.resets_at for e in entries):
                    continue  # the burst crossed UTC midnight; audit() above covered it
                used = sum(
                    e.amount if e.kind is LedgerKind.RESERVE else -e.amount
                    for e in entries
                    if e.kind in (LedgerKind.RESERVE, LedgerKind.REFUND)
                )
                granted = sum(e.amount for e in entries if e.kind is LedgerKind.GRANT)
                assert (balance.used, balance.granted) == (used, granted)
        assert granted_entries >= grants
