"""The job ledger: creation, compare-and-set transitions, events, queries, stats."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from datetime import datetime, timedelta

import pytest

from storage import InvalidSettingError, JobKind, JobState, LedgerKind
from tests.storage_fixtures import (
    CHANNEL,
    GUILD,
    OTHER_GUILD,
    T0,
    FakeClock,
    new_job,
    open_storage,
)


async def test_a_new_job_keeps_everything_it_was_given(db_target):
    expires = T0 + timedelta(minutes=15)
    async with open_storage(db_target) as storage:
        parent = await storage.jobs.create_reserved(new_job())
        job = await storage.jobs.create_reserved(
            new_job(
                cost=2,
                kind=JobKind.EDIT,
                params={"num_images": 2, "image_urls": ["https://cdn.example/a.png"], "seed": 7},
                parent_job_id=parent.id,
                interaction_token="secret-token",
                token_expires_at=expires,
                age_restricted_channel=True,
            )
        )
        assert re.fullmatch(r"[A-Za-z0-9_-]{10}", job.id)
        assert (job.state, job.kind, job.cost, job.channel_id) == (
            JobState.RESERVED,
            JobKind.EDIT,
            2,
            CHANNEL,
        )
        assert job.created_at == job.updated_at == T0
        stored = await storage.jobs.get(job.id)
        assert stored == job
        assert stored.params["image_urls"] == ["https://cdn.example/a.png"]
        assert stored.parent_job_id == parent.id
        assert stored.interaction_token == "secret-token"
        assert stored.token_expires_at == expires
        assert stored.age_restricted_channel is True
        assert await storage.jobs.get("missing") is None


async def test_the_interaction_token_never_shows_in_repr(db_target):
    async with open_storage(db_target) as storage:
        new = new_job(interaction_token="super-secret-token")
        job = await storage.jobs.create_reserved(new)
        assert "super-secret-token" not in repr(job)
        assert "super-secret-token" not in repr(new)


async def test_ids_are_unique_across_many_jobs(db_target):
    async with open_storage(db_target, default_daily_credits=10_000) as storage:
        jobs = await asyncio.gather(*(storage.jobs.create_reserved(new_job()) for _ in range(400)))
        assert len({j.id for j in jobs}) == 400


async def test_ids_sort_by_creation_time_and_clashes_are_retried(db_target, monkeypatch):
    from storage import job_ids

    clock = FakeClock()
    async with open_storage(db_target, clock=clock, default_daily_credits=100) as storage:
        earlier = await storage.jobs.create_reserved(new_job())
        clock.advance(seconds=1)
        later = await storage.jobs.create_reserved(new_job())
        assert earlier.id < later.id
        # Same second and the same random part twice: the clash is detected and retried.
        draws = iter([b"same!", b"same!", b"other"])
        monkeypatch.setattr(job_ids.secrets, "token_bytes", lambda n: next(draws))
        first = await storage.jobs.create_reserved(new_job())
        second = await storage.jobs.create_reserved(new_job())
        assert first.id != second.id
        assert (await storage.jobs.get(first.id)).id == first.id
        assert (await storage.jobs.get(second.id)).id == second.id


@pytest.mark.parametrize(
    ("field", "value"),
    [("cost", -1), ("user_id", 0), ("channel_id", None), ("params", {"x": object()})],
)
async def test_invalid_new_jobs_are_refused_with_the_field(db_target, field, value):
    async with open_storage(db_target) as storage:
        with pytest.raises(InvalidSettingError) as caught:
            await storage.jobs.create_reserved(new_job(**{field: value}))
        assert caught.value.field == field


async def test_an_unknown_parent_is_refused(db_target):
    async with open_storage(db_target) as storage:
        with pytest.raises(InvalidSettingError) as caught:
            await storage.jobs.create_reserved(new_job(parent_job_id="nosuchjob"))
        assert caught.value.field == "parent_job_id"
        assert await storage.jobs.recent_for_user(1) == []


async def test_transitions_record_fields_and_events_in_order(db_target):
    clock = FakeClock()
    async with open_storage(db_target, clock=clock) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=2))
        clock.advance(seconds=1)
        submitting = await storage.jobs.transition(job.id, JobState.SUBMITTING)
        assert submitting.state is JobState.SUBMITTING
        clock.advance(seconds=1)
        submitted = await storage.jobs.transition(
            job.id, JobState.SUBMITTED, expected=[JobState.SUBMITTING], request_id="req-9"
        )
        assert (submitted.request_id, submitted.updated_at) == ("req-9", T0 + timedelta(seconds=2))
        clock.advance(seconds=1)
        await storage.jobs.transition(job.id, JobState.RUNNING, status_message_id=4242)
        clock.advance(seconds=1)
        done = await storage.jobs.transition(
            job.id,
            JobState.DELIVERED,
            result_urls=["https://out.example/1.png", "https://out.example/2.png"],
            result_message_id=5151,
        )
        assert done.result_urls == ("https://out.example/1.png", "https://out.example/2.png")
        assert (done.request_id, done.status_message_id, done.result_message_id) == (
            "req-9",
            4242,
            5151,
        )
        assert done.committed == 2
        events = await storage.jobs.events(job.id)
        assert [(e.state, e.at - T0) for e in events] == [
            (JobState.RESERVED, timedelta(0)),
            (JobState.SUBMITTING, timedelta(seconds=1)),
            (JobState.SUBMITTED, timedelta(seconds=2)),
            (JobState.RUNNING, timedelta(seconds=3)),
            (JobState.DELIVERED, timedelta(seconds=4)),
        ]
        assert all(e.job_id == job.id for e in events)


async def test_transition_is_a_compare_and_set(db_target):
    async with open_storage(db_target) as storage:
        job = await storage.jobs.create_reserved(new_job())
        assert (
            await storage.jobs.transition(job.id, JobState.QUEUED, expected=[JobState.RUNNING])
            is None
        )
        assert (await storage.jobs.get(job.id)).state is JobState.RESERVED
        assert len(await storage.jobs.events(job.id)) == 1
        assert await storage.jobs.transition("missing", JobState.RUNNING) is None


async def test_a_second_delivery_changes_nothing_and_commits_once(db_target):
    async with open_storage(db_target) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=3))
        first, second = await asyncio.gather(
            storage.jobs.transition(job.id, JobState.DELIVERED, result_urls=["https://a/1"]),
            storage.jobs.transition(job.id, JobState.DELIVERED, result_urls=["https://b/2"]),
        )
        assert first is not None and first.state is JobState.DELIVERED
        assert second is None
        again = await storage.jobs.transition(job.id, JobState.DELIVERED)
        assert again is None
        assert (await storage.jobs.get(job.id)).result_urls == ("https://a/1",)
        kinds = [e.kind for e in await storage.quota.job_entries(job.id)]
        assert kinds == [LedgerKind.RESERVE, LedgerKind.COMMIT]
        assert [e.state for e in await storage.jobs.events(job.id)].count(JobState.DELIVERED) == 1
        # A terminal state can be left only when the caller names it (a moderator's rejection).
        rejected = await storage.jobs.transition(
            job.id, JobState.REJECTED, expected=[JobState.DELIVERED]
        )
        assert rejected.state is JobState.REJECTED
        assert (await storage.quota.balance(1, GUILD)).used == 0
        assert await storage.quota.audit() == []


async def test_transition_after_a_direct_commit_does_not_commit_again(db_target):
    async with open_storage(db_target) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=2))
        assert await storage.quota.commit(job.id, 1)
        done = await storage.jobs.transition(job.id, JobState.DELIVERED)
        assert done.committed == 1
        assert len(await storage.quota.job_entries(job.id)) == 3  # reserve, commit, refund
        assert await storage.quota.audit() == []


async def test_set_fields_changes_no_state_and_validates_names(db_target):
    async with open_storage(db_target) as storage:
        job = await storage.jobs.create_reserved(new_job(interaction_token="t"))
        updated = await storage.jobs.set_fields(
            job.id, log_message_id=77, interaction_token=None, error="slow"
        )
        assert (
            updated.state,
            updated.log_message_id,
            updated.interaction_token,
            updated.error,
        ) == (
            JobState.RESERVED,
            77,
            None,
            "slow",
        )
        assert len(await storage.jobs.events(job.id)) == 1
        assert await storage.jobs.set_fields("missing", error="x") is None
        with pytest.raises(InvalidSettingError) as caught:
            await storage.jobs.set_fields(job.id, state="delivered")
        assert caught.value.field == "state"
        with pytest.raises(InvalidSettingError) as caught:
            await storage.jobs.transition(job.id, JobState.RUNNING, status_message_id="12")
        assert caught.value.field == "status_message_id"
        with pytest.raises(InvalidSettingError) as caught:
            await storage.jobs.set_fields(job.id, token_expires_at=datetime(2025, 1, 1))
        assert caught.value.field == "token_expires_at"


async def test_unfinished_lists_every_non_terminal_job_oldest_first(db_target):
    clock = FakeClock()
    async with open_storage(db_target, clock=clock, default_daily_credits=100) as storage:
        states = [
            JobState.RESERVED,
            JobState.SUBMITTING,
            JobState.SUBMITTED,
            JobState.QUEUED,
            JobState.RUNNING,
            JobState.COMPLETED,
            JobState.AWAITING_APPROVAL,
            JobState.DELIVERED,
            JobState.CANCELLED,
            JobState.FAILED,
            JobState.REJECTED,
        ]
        ids = {}
        for state in states:
            job = await storage.jobs.create_reserved(new_job(), now=clock.advance(seconds=1))
            if state is not JobState.RESERVED:
                await storage.jobs.transition(job.id, state)
            ids[state] = job.id
        unfinished = await storage.jobs.unfinished()
        assert [j.id for j in unfinished] == [ids[s] for s in states if not s.is_terminal]


def test_the_unfinished_queries_use_the_partial_index(tmp_path):
    from storage import TERMINAL_STATES
    from storage.migrations import UNFINISHED, migrate

    assert set(re.findall(r"'(\w+)'", UNFINISHED)) == set(TERMINAL_STATES)
    conn = sqlite3.connect(tmp_path / "plan.sqlite3", isolation_level=None)
    try:
        migrate(conn)
        for query in (
            f"SELECT * FROM jobs WHERE {UNFINISHED} ORDER BY created_at, rowid",
            f"SELECT count(*) FROM jobs WHERE {UNFINISHED}",
        ):
            plan = conn.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
            assert any("jobs_unfinished" in row[-1] for row in plan), plan
    finally:
        conn.close()


async def test_recent_in_flight_and_last_created(db_target):
    clock = FakeClock()
    async with open_storage(db_target, clock=clock, default_daily_credits=100) as storage:
        first = await storage.jobs.create_reserved(new_job(user_id=1), now=clock.advance(seconds=1))
        second = await storage.jobs.create_reserved(
            new_job(user_id=1, guild_id=OTHER_GUILD), now=clock.advance(seconds=1)
        )
        third = await storage.jobs.create_reserved(new_job(user_id=1), now=clock.advance(seconds=1))
        dm = await storage.jobs.create_reserved(
            new_job(user_id=1, guild_id=None), now=clock.advance(seconds=1)
        )
        await storage.jobs.create_reserved(new_job(user_id=2), now=clock.advance(seconds=1))
        await storage.jobs.transition(first.id, JobState.DELIVERED)

        recent = await storage.jobs.recent_for_user(1)
        assert [j.id for j in recent] == [dm.id, third.id, second.id, first.id]
        assert [j.id for j in await storage.jobs.recent_for_user(1, limit=2)] == [dm.id, third.id]

        assert await storage.jobs.in_flight_count(user_id=1) == 3
        assert await storage.jobs.in_flight_count(user_id=1, guild_id=GUILD) == 1
        assert await storage.jobs.in_flight_count(guild_id=GUILD) == 2
        assert await storage.jobs.in_flight_count() == 4

        assert await storage.jobs.last_created_at(1, GUILD) == third.created_at
        assert await storage.jobs.last_created_at(1, None) == dm.created_at
        assert await storage.jobs.last_created_at(3, GUILD) is None


async def test_stats_for_moderators(db_target):
    clock = FakeClock()
    async with open_storage(db_target, clock=clock, default_daily_credits=100) as storage:
        old = await storage.jobs.create_reserved(new_job(user_id=9, cost=4))
        await storage.jobs.transition(old.id, JobState.DELIVERED, result_urls=["u"] * 4)
        since = clock.advance(hours=1)

        async def deliver(user_id, cost, delivered=None):
            job = await storage.jobs.create_reserved(new_job(user_id=user_id, cost=cost))
            urls = ["https://o/x.png"] * (cost if delivered is None else delivered)
            return await storage.jobs.transition(
                job.id, JobState.DELIVERED, result_urls=urls, delivered_cost=delivered
            )

        await deliver(1, 2)
        await deliver(1, 3)
        await deliver(2, 4, delivered=1)
        refunded = await deliver(3, 4)
        await storage.quota.refund(refunded.id)
        failed = await storage.jobs.create_reserved(new_job(user_id=2, cost=2))
        await storage.jobs.transition(failed.id, JobState.FAILED, error="boom")
        cancelled = await storage.jobs.create_reserved(new_job(user_id=2))
        await storage.jobs.transition(cancelled.id, JobState.CANCELLED)
        await storage.jobs.create_reserved(new_job(user_id=4))  # in flight
        await storage.jobs.create_reserved(new_job(user_id=1, guild_id=OTHER_GUILD, cost=3))

        stats = await storage.jobs.stats(GUILD, since)
        assert stats.since == since
        assert (stats.jobs, stats.delivered, stats.failures, stats.cancelled, stats.in_flight) == (
            7,
            4,
            1,
            1,
            1,
        )
        assert stats.images_delivered == 2 + 3 + 1 + 4
        assert stats.credits_spent == 2 + 3 + 1  # the refunded delivery costs nothing
        assert stats.top_users == ((1, 5), (2, 1))
        everything = await storage.jobs.stats(GUILD, T0)
        assert everything.top_users[0] == (1, 5) and (9, 4) in everything.top_users
        assert (await storage.jobs.stats(None, T0)).jobs == 0


async def test_the_bots_queries_use_indexes_made_for_them(tmp_path):
    # What SQLite actually plans for each statement the store runs, not a copy of its SQL. With a
    # long history, a query that walks a whole guild's or member's jobs costs milliseconds on
    # the single writer (measured: ~10 ms per reservation at 100,000 jobs).
    statements: list[str] = []
    async with open_storage(tmp_path, default_daily_credits=100) as storage:
        db = storage._db  # narrow check of the storage layer's own connection
        await db.query(lambda c: c.set_trace_callback(statements.append))

        async def plans(call) -> list[str]:
            statements.clear()
            await call
            selects = [s for s in statements if s.lstrip().startswith("SELECT") and "jobs" in s]
            assert selects, statements
            lines = []
            for sql in selects:
                rows = await db.query(
                    lambda c, q=sql: c.execute(f"EXPLAIN QUERY PLAN {q}").fetchall()
                )
                lines += [row[-1] for row in rows]
            return lines

        job = await storage.jobs.create_reserved(new_job(cost=2))
        await storage.jobs.transition(job.id, JobState.DELIVERED)
        expectations = [
            (storage.jobs.create_reserved(new_job(), max_in_flight=3), "jobs_unfinished_by_member"),
            (storage.jobs.in_flight_count(user_id=1, guild_id=GUILD), "jobs_unfinished_by_member"),
            (storage.jobs.in_flight_count(user_id=1), "jobs_unfinished_by_member"),
            (storage.jobs.in_flight_count(guild_id=GUILD), "jobs_unfinished"),
            (storage.jobs.in_flight_count(), "jobs_unfinished"),
            (storage.jobs.unfinished(), "jobs_unfinished"),
            (storage.jobs.last_created_at(1, GUILD), "jobs_by_member"),
            (storage.jobs.last_created_at(1, None), "jobs_by_member"),
            (storage.jobs.recent_for_user(1), "jobs_by_user"),
            (storage.jobs.stats(GUILD, T0), "jobs_by_guild"),
            (storage.quota.reset_day(1, GUILD, actor_id=9), "jobs_unfinished_by_member"),
        ]
        for call, index in expectations:
            lines = await plans(call)
            assert any(
                f"INDEX {index} " in line or line.endswith(f"INDEX {index}") for line in lines
            ), (
                index,
                lines,
            )
            assert not any(line.startswith("SCAN jobs") and "INDEX" not in line for line in lines)
            if index != "jobs_by_guild":
                assert not any("jobs_by_guild" in line for line in lines), lines


async def test_text_with_sql_in_it_is_stored_as_text(db_target):
    nasty = "'); DROP TABLE jobs; -- \" OR 1=1"
    async with open_storage(db_target) as storage:
        job = await storage.jobs.create_reserved(
            new_job(prompt=nasty, params={"seed": nasty}, interaction_token=nasty)
        )
        await storage.jobs.transition(job.id, JobState.FAILED, error=nasty, request_id=nasty)
        stored = await storage.jobs.get(job.id)
        assert (stored.prompt, stored.error, stored.request_id) == (nasty, nasty, nasty)
        assert stored.params == {"seed": nasty}
        await storage.policy.add_block(GUILD, nasty, is_regex=False, added_by=9)
        await storage.quota.grant(1, GUILD, 1, actor_id=9, reason=nasty)
        assert (await storage.quota.ledger(1, GUILD))[0].reason == nasty
        assert [b.pattern for b in await storage.policy.blocklist(GUILD)] == [nasty.strip()]
        # Field names become column names: only the known ones are accepted.
        with pytest.raises(InvalidSettingError):
            await storage.jobs.set_fields(job.id, **{"error = 'x', state": "delivered"})
        assert (await storage.jobs.get(job.id)).state is JobState.FAILED
        assert await storage.integrity_check() == []


async def test_the_interaction_token_never_reaches_the_logs(db_target, caplog):
    secret = "super-secret-interaction-token"
    caplog.set_level(logging.DEBUG)
    async with open_storage(db_target, default_daily_credits=5) as storage:
        job = await storage.jobs.create_reserved(new_job(interaction_token=secret))
        await storage.jobs.set_fields(job.id, interaction_token=secret)
        await storage.jobs.transition(job.id, JobState.RUNNING, interaction_token=secret)
        # Failures on the way: a bad field value and a group with a refused write.
        with pytest.raises(InvalidSettingError) as caught:
            await storage.jobs.set_fields(job.id, interaction_token=12345, status_message_id=secret)
        assert secret not in str(caught.value)
        await asyncio.gather(
            storage.jobs.create_reserved(new_job(interaction_token=secret, cost=4)),
            storage.jobs.create_reserved(new_job(interaction_token=secret, cost=5)),
            storage.jobs.create_reserved(new_job(interaction_token=secret, cost=5)),
            return_exceptions=True,
        )
        assert secret not in repr(await storage.jobs.unfinished())
    assert caplog.records  # the test did see the storage and aiosqlite debug logs
    assert secret not in caplog.text


async def test_rejection_after_approval_wait_refunds_once_whatever_is_repeated(db_target):
    async with open_storage(db_target, default_daily_credits=3) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=3))
        await storage.jobs.transition(job.id, JobState.COMPLETED, result_urls=["https://o/1"])
        await storage.jobs.transition(
            job.id, JobState.AWAITING_APPROVAL, expected=[JobState.COMPLETED]
        )
        held = [JobState.AWAITING_APPROVAL]
        first, second = await asyncio.gather(
            storage.jobs.transition(job.id, JobState.REJECTED, expected=held),
            storage.jobs.transition(job.id, JobState.REJECTED, expected=held),
        )
        assert first.state is JobState.REJECTED and first.committed is None
        assert second is None
        assert await storage.quota.refund(job.id) is False
        assert await storage.quota.commit(job.id) is False
        # Rejecting again from REJECTED (a retried moderator click) refunds nothing more.
        again = await storage.jobs.transition(
            job.id, JobState.REJECTED, expected=[JobState.REJECTED, *held]
        )
        assert again.state is JobState.REJECTED
        entries = [(e.kind, e.amount) for e in await storage.quota.job_entries(job.id)]
        assert entries == [(LedgerKind.RESERVE, 3), (LedgerKind.REFUND, 3)]
        assert (await storage.quota.balance(1, GUILD)).remaining == 3
        assert await storage.quota.audit() == []


async def test_refund_and_rejection_after_delivery_refund_once_between_them(db_target):
    async with open_storage(db_target, default_daily_credits=5) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=4))
        await storage.jobs.transition(job.id, JobState.DELIVERED, delivered_cost=3)
        assert await storage.quota.refund(job.id) is True
        delivered = [JobState.DELIVERED]
        rejected = await storage.jobs.transition(job.id, JobState.REJECTED, expected=delivered)
        assert rejected.state is JobState.REJECTED
        assert await storage.quota.refund(job.id) is False
        entries = [(e.kind, e.amount) for e in await storage.quota.job_entries(job.id)]
        assert entries == [
            (LedgerKind.RESERVE, 4),
            (LedgerKind.COMMIT, 3),
            (LedgerKind.REFUND, 1),
            (LedgerKind.REFUND, 3),
        ]
        assert (await storage.quota.balance(1, GUILD)).remaining == 5
        assert await storage.quota.audit() == []
