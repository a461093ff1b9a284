"""Moving an install: ``python -m storage copy --to postgresql://...`` from an SQLite file."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from storage import JobState, QuotaSettings, Storage
from storage.copy import copy_database
from tests.storage_fixtures import GUILD, OTHER_GUILD, T0, FakeClock, new_job

ROOT = Path(__file__).resolve().parent.parent
QUOTA = QuotaSettings(default_daily_credits=50, global_daily_cap=500)


async def _fill(path: Path, clock: FakeClock) -> None:
    """Something of everything: jobs in every kind of state, the ledger, policy, moderation."""
    async with Storage.open(path, QUOTA, clock=clock) as storage:
        delivered = await storage.jobs.create_reserved(new_job(1, cost=3))
        await storage.jobs.transition(
            delivered.id, JobState.DELIVERED, delivered_cost=2, result_urls=["https://x/a.png"]
        )
        failed = await storage.jobs.create_reserved(new_job(2, OTHER_GUILD, cost=2))
        await storage.jobs.transition(failed.id, JobState.FAILED, error="boom")
        child = await storage.jobs.create_reserved(new_job(1, cost=1, parent_job_id=delivered.id))
        await storage.jobs.transition(child.id, JobState.SUBMITTING)
        await storage.jobs.transition(child.id, JobState.SUBMITTED, request_id="req-1")
        await storage.jobs.create_reserved(new_job(3, None, cost=1))  # a DM, still reserved
        await storage.quota.refund(delivered.id)  # a moderator's refund after delivery
        clock.advance(days=1)
        await storage.quota.grant(1, GUILD, 5, actor_id=9, reason="contest")
        await storage.quota.reset_day(2, OTHER_GUILD, actor_id=9)
        await storage.policy.update(GUILD, daily_cap=100, approval_mode=True, log_channel_id=77)
        await storage.policy.set_role_tier(GUILD, 55, 30)
        await storage.policy.set_user_override(GUILD, 1, 40)
        await storage.policy.add_block(GUILD, "kill*", is_regex=False, added_by=9)
        await storage.policy.ban(GUILD, 4, reason="spam", banned_by=9, until=T0 + timedelta(days=9))
        await storage.estimates.save({"model|1K|1": {"mean": 12.5}})


async def _snapshot(storage: Storage) -> dict[str, object]:
    jobs = await storage.jobs.recent_for_user(1) + await storage.jobs.recent_for_user(2)
    jobs += await storage.jobs.recent_for_user(3)
    return {
        "jobs": sorted(jobs, key=lambda j: j.id),
        "unfinished": [j.id for j in await storage.jobs.unfinished()],
        "events": {j.id: await storage.jobs.events(j.id) for j in jobs},
        "ledger": [await storage.quota.ledger(u, g) for u, g in ((1, GUILD), (2, OTHER_GUILD))],
        "balances": [
            await storage.quota.balance(1, GUILD, role_ids=[55]),
            await storage.quota.balance(2, OTHER_GUILD),
            await storage.quota.balance(3, None),
        ],
        "policy": await storage.policy.get(GUILD),
        "override": await storage.policy.get_user_override(GUILD, 1),
        "blocklist": await storage.policy.blocklist(GUILD),
        "bans": await storage.policy.bans(GUILD),
        "estimates": await storage.estimates.load(),
    }


async def test_copy_moves_everything_and_both_audits_balance(
    tmp_path: Path, postgres_url: str
) -> None:
    clock = FakeClock(T0)
    path = tmp_path / "bot.sqlite3"
    await _fill(path, clock)

    report = await copy_database(path, postgres_url)
    assert report.source_audit == [] and report.target_audit == []
    assert report.rows["jobs"] == 4 and report.rows["ledger"] >= 8

    async with (
        Storage.open(path, QUOTA, clock=clock) as before,
        Storage.open(postgres_url, QUOTA, clock=clock) as after,
    ):
        assert await _snapshot(after) == await _snapshot(before)
        # the target goes on from there: new ids after the copied ones, the same limits
        job = await after.jobs.create_reserved(new_job(1, cost=1))
        assert (await after.quota.ledger(1, GUILD))[0].job_id == job.id
        assert await after.quota.audit() == []


def test_the_command_refuses_a_target_that_is_not_empty(tmp_path: Path, postgres_url: str) -> None:
    import asyncio

    path = tmp_path / "bot.sqlite3"
    asyncio.run(_fill(path, FakeClock(T0)))

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "storage", "copy", "--from", str(path), "--to", postgres_url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = run()
    assert first.returncode == 0, first.stderr
    assert "audit of the source: balanced" in first.stdout
    assert "audit of the target: balanced" in first.stdout
    assert "  jobs: 4 rows" in first.stdout
    again = run()
    assert again.returncode == 1
    assert again.stderr.startswith("error: ") and "is not empty (4 rows in jobs" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
