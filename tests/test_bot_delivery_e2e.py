"""Delivery when Discord says no: the result is never dropped, failed or refunded for it.

The real bot against the fake Discord and the fake RunComfy; faults are injected on the very
request that carries the files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from storage.models import JobState
from tests.e2e_harness import labels, studio_env
from tests.fakes.discord_recording import Recorded
from tests.fakes.runcomfy import JobScript
from tests.helpers import FOREVER, finish_now


def with_files(method: str, path_start: str) -> Callable[[Recorded], bool]:
    def matcher(rec: Recorded) -> bool:
        return rec.method == method and rec.path.startswith(path_start) and bool(rec.files)

    return matcher


async def test_files_too_large_for_the_interaction_are_posted_as_links(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        env.discord.fail(
            with_files("PATCH", "/webhooks/"),
            status=413,
            code=40005,
            message="Request entity too large",
        )
        sent = await env.imagine("too big for Discord")
        status = await env.acknowledged(sent)
        job = await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
        result = await env.wait_message(status.id, lambda m: bool(m.embeds))
        assert result.attachments == []
        fields = {f["name"]: f["value"] for f in result.embeds[0]["fields"]}
        assert job.result_urls[0] in fields["Too large to attach"]
        assert labels(result) == ["Re-roll", "Edit", "Delete", "Favourite"]
        assert job.committed == 1


async def test_a_webhook_error_falls_back_to_a_channel_message(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        member = env.discord.guild.member
        env.discord.fail(with_files("PATCH", "/webhooks/"), status=400, code=50035)
        sent = await env.imagine("webhook trouble")
        status = await env.acknowledged(sent)
        job = await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
        assert job.result_message_id != status.id
        result = env.discord.message(job.result_message_id)  # type: ignore[arg-type]
        assert result.origin == "channel" and len(result.attachments) == 1
        assert result.content.startswith(f"<@{member.id}>")
        assert job.committed == 1


async def test_an_invalid_webhook_token_50027_falls_back_to_the_channel(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        env.runcomfy.script(JobScript(queue_seconds=FOREVER))  # done only once the token is bad
        sent = await env.imagine("token refused")
        status = await env.acknowledged(sent)
        job_id = env.job_id_of(status)
        queued = await env.wait_state(job_id, JobState.QUEUED, JobState.SUBMITTED)
        env.discord.expire_interaction(sent, code=50027)
        finish_now(env.runcomfy, queued.request_id)
        job = await env.wait_state(job_id, JobState.DELIVERED)
        result = env.discord.message(job.result_message_id)  # type: ignore[arg-type]
        assert result.origin == "channel" and len(result.attachments) == 1


@pytest.mark.expect_errors(logger="services.jobs", match="the result could not be posted")
async def test_when_discord_refuses_everything_the_job_stays_finished_and_is_posted_later(
    tmp_path: Path,
) -> None:
    async with studio_env(tmp_path) as env:
        async with env.running():
            env.discord.fail(with_files("PATCH", "/webhooks/"), status=403, code=50001, count=99)
            env.discord.fail(with_files("POST", "/channels/"), status=403, code=50013, count=99)
            sent = await env.imagine("nowhere to post")
            status = await env.acknowledged(sent)
            job_id = env.job_id_of(status)
            await env.discord.wait_for(with_files("POST", "/channels/"))
            job = await env.wait_state(job_id, JobState.COMPLETED)
            assert job.error is None
            assert "Failed" not in env.discord.message(status.id).content
        env.discord.faults.clear()
        async with env.running():  # the next start posts it
            job = await env.wait_state(job_id, JobState.DELIVERED)
            assert job.committed == 1


async def test_a_429_on_the_delivery_is_waited_out_and_the_result_arrives_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with studio_env(tmp_path) as env, env.running():
        member = env.discord.guild.member
        delivery = with_files("PATCH", "/webhooks/")
        # With Via and a JSON retry_after discord.py sleeps and retries; without, it would raise.
        limited = env.discord.rate_limit(delivery, count=1, retry_after=0.05)
        sent = await env.imagine("rate limited")
        status = await env.acknowledged(sent)
        job = await env.wait_state(env.job_id_of(status), JobState.DELIVERED)

        # The 429 was really served, on the request carrying the files, and retried once.
        assert [r.status for r in limited.hits] == [429] and limited.remaining == 0
        assert [r.status for r in env.discord.requests_to(delivery)] == [429, 200]
        assert any("is rate limited" in r.getMessage() for r in caplog.records)
        # Delivered once, into the status message: no channel fallback, no followup copy.
        assert job.result_message_id == status.id
        result = env.discord.message(status.id)
        assert len(result.attachments) == 1
        assert labels(result) == ["Re-roll", "Edit", "Delete", "Favourite"]
        assert env.discord.requests_to(with_files("POST", "/channels/")) == []
        assert env.discord.requests_to(with_files("POST", "/webhooks/")) == []
        assert job.committed == 1
        assert env.storage is not None
        assert (await env.storage.quota.balance(member.id, env.discord.guild.id)).used == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
