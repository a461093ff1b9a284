"""Grouped writes: each operation stays atomic and ordered when many share a transaction."""

from __future__ import annotations

import asyncio

import pytest

from storage import InvalidSettingError, JobState, StorageError
from tests.storage_fixtures import GUILD, new_job, open_storage


async def test_a_failing_write_in_a_group_is_undone_alone(tmp_path):
    async with open_storage(tmp_path, default_daily_credits=100) as storage:
        parent = await storage.jobs.create_reserved(new_job())
        results = await asyncio.gather(
            storage.jobs.create_reserved(new_job(user_id=2, cost=2)),
            # Fails inside the transaction, after the quota check has run.
            storage.jobs.create_reserved(new_job(user_id=2, cost=5, parent_job_id="nosuchjob")),
            storage.jobs.create_reserved(new_job(user_id=2, cost=3, parent_job_id=parent.id)),
            storage.jobs.transition(parent.id, JobState.DELIVERED),
            return_exceptions=True,
        )
        first, failed, third, delivered = results
        assert isinstance(failed, InvalidSettingError) and failed.field == "parent_job_id"
        assert third.parent_job_id == parent.id
        assert delivered.state is JobState.DELIVERED
        assert {j.id for j in await storage.jobs.recent_for_user(2)} == {first.id, third.id}
        assert (await storage.quota.balance(2, GUILD)).used == 5
        assert await storage.quota.audit() == []


async def test_writes_apply_in_the_order_they_were_made(tmp_path):
    async with open_storage(tmp_path) as storage:
        job = await storage.jobs.create_reserved(new_job())
        steps = [JobState.SUBMITTING, JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING]
        results = await asyncio.gather(
            *(
                storage.jobs.transition(job.id, s, expected=[p])
                for p, s in zip([JobState.RESERVED, *steps], steps, strict=False)
            )
        )
        assert [r.state for r in results] == steps
        assert [e.state for e in await storage.jobs.events(job.id)] == [JobState.RESERVED, *steps]


async def test_no_writes_after_close(tmp_path):
    async with open_storage(tmp_path) as storage:
        pending = asyncio.ensure_future(storage.jobs.create_reserved(new_job()))
        await asyncio.sleep(0)
    # Closing waited for the queued write to finish.
    assert pending.done() and pending.result().state is JobState.RESERVED
    with pytest.raises(StorageError):
        await storage.jobs.create_reserved(new_job())
