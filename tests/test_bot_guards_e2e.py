"""End to end: who may do what, double clicks, and answering in time when the database is slow.

The real bot and discord.py against the fake Discord and the fake RunComfy on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from storage.models import JobState
from tests.e2e_harness import StudioEnv, labels, studio_env
from tests.fakes.discord import StoredMessage, png_bytes
from tests.fakes.runcomfy import JobScript
from tests.helpers import FOREVER


async def used(env: StudioEnv, user_id: int) -> int:
    assert env.storage is not None
    return (await env.storage.quota.balance(user_id, env.discord.guild.id)).used


async def delivered(env: StudioEnv, prompt: str, **options: Any) -> tuple[StoredMessage, str]:
    sent = await env.imagine(prompt, **options)
    status = await env.acknowledged(sent)
    job_id = env.job_id_of(status)
    await env.wait_state(job_id, JobState.DELIVERED)
    return await env.wait_message(status.id, lambda m: bool(m.attachments)), job_id


# -- /show --------------------------------------------------------------------------------------


async def test_show_is_refused_to_a_moderator_of_another_server(tmp_path: Path) -> None:
    async with studio_env(tmp_path, guild_id=None) as env:  # commands synced globally
        other = env.discord.add_guild(name="Elsewhere")
        async with env.running():
            _, job_id = await delivered(env, "my server only")
            mark = env.discord.mark()
            sent = await env.discord.slash_command(
                "show", {"job_id": job_id}, user=other.admin, guild_id=other.id
            )
            await sent.wait_for_callback()
            assert sent.ephemeral and "only show your own" in sent.callback_data["content"]
            assert env.discord.requests_to("POST /channels/*/messages", after=mark) == []
            assert env.discord.requests_to("POST /webhooks/*", after=mark) == []


async def test_show_is_refused_to_a_member_banned_from_the_studio(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running() as bot:
        guild = env.discord.guild
        _, job_id = await delivered(env, "then banned")
        await bot.storage.policy.ban(
            guild.id, guild.member.id, reason="spam", banned_by=guild.admin.id, until=None
        )
        bot.policy.invalidate(guild.id)
        sent = await env.discord.slash_command("show", {"job_id": job_id})
        await sent.wait_for_callback()
        assert sent.ephemeral and "banned" in sent.callback_data["content"]


# -- double clicks ------------------------------------------------------------------------------


async def test_a_double_click_on_reroll_makes_one_job_and_one_charge(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        guild = env.discord.guild
        result, _ = await delivered(env, "one more please")
        first, second = await asyncio.gather(
            env.click(result, "Re-roll", user=guild.admin),
            env.click(result, "Re-roll", user=guild.admin),
        )
        await first.wait_for_callback()
        await second.wait_for_callback()
        answers = sorted([first, second], key=lambda s: s.ephemeral)
        status = await env.acknowledged(answers[0])
        assert answers[1].ephemeral and "already on its way" in answers[1].callback_data["content"]
        await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
        assert env.runcomfy.count("submit") == 2  # the original and one re-roll
        assert await used(env, guild.admin.id) == 1


async def test_a_double_click_on_delete_deletes_once_and_answers_both(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        result, job_id = await delivered(env, "twice")
        first = await env.click(result, "Delete")
        second = await env.click(result, "Delete")
        await first.wait_for_callback()
        await second.wait_for_request("POST /interactions/*/*/callback")  # 200, or 404 if late
        assert first.callback_type == 6  # acknowledged quietly
        await env.discord.wait_for("DELETE /channels/*/messages/*")
        assert result.id not in env.discord.messages
        # Which of the two reaches Discord first decides whether the second click's
        # acknowledgement or its delete finds the message gone; either way it is done, once.
        deletes = [r.status for r in env.discord.requests_to("DELETE /channels/*/*/*")]
        assert deletes.count(204) == 1 and set(deletes) <= {204, 404}
        # a round trip through the bot, so an error answer to the second click would be out
        quota = await env.discord.slash_command("quota")
        await quota.wait_for_callback()
        assert first.followups == [] and second.followups == []  # no "Something went wrong"
        assert (await env.job(job_id)).state == JobState.DELIVERED


# -- refusals on buttons ------------------------------------------------------------------------


async def test_reroll_is_refused_by_the_clickers_own_quota(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running() as bot:
        guild = env.discord.guild
        result, _ = await delivered(env, "costly")
        await bot.storage.policy.set_user_override(guild.id, guild.admin.id, 0)
        click = await env.click(result, "Re-roll", user=guild.admin)
        await click.wait_for_callback()
        assert click.ephemeral and "Not enough credits" in click.callback_data["content"]
        assert env.runcomfy.count("submit") == 1


async def test_a_click_on_an_unknown_job_is_answered_politely(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        result, job_id = await delivered(env, "forgotten")
        for row in result.components:  # a message whose buttons name a job we never had
            for button in row["components"]:
                button["custom_id"] = button["custom_id"].replace(job_id, "nosuchjob")
        click = await env.click(result, "Re-roll")
        await click.wait_for_callback()
        assert click.ephemeral and "There is no job `nosuchjob`" in click.callback_data["content"]


async def test_an_oversized_attachment_is_refused_without_calling_the_api(
    tmp_path: Path,
) -> None:
    async with studio_env(tmp_path) as env, env.running():
        huge = env.discord.make_attachment(png_bytes(), "huge.png", size=60 * 2**20)
        sent = await env.discord.slash_command("edit", {"prompt": "smaller", "image": huge})
        await sent.wait_for_callback()
        assert sent.ephemeral and "60.0 MiB" in sent.callback_data["content"]
        assert env.runcomfy.requests == []


async def test_a_cancel_runcomfy_refuses_says_the_job_carries_on(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        env.runcomfy.script(JobScript(queue_seconds=FOREVER))
        sent = await env.imagine("cannot stop")
        status = await env.acknowledged(sent)
        job_id = env.job_id_of(status)
        await env.wait_state(job_id, JobState.SUBMITTED, JobState.QUEUED)
        env.runcomfy.inject("cancel", status=403, body={"error_code": 403001, "message": "no"})
        click = await env.click(status, "Cancel")
        (followup,) = await click.wait_for_followups()
        assert followup.ephemeral and "carries on" in followup.content
        assert "Nothing was charged" not in followup.content
        assert (await env.job(job_id)).state in (JobState.SUBMITTED, JobState.QUEUED)


@pytest.mark.expect_errors(logger="cogs.tree", match="unexpected error")
async def test_an_unexpected_error_on_a_button_names_the_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with studio_env(tmp_path) as env, env.running() as bot:
        result, job_id = await delivered(env, "then trouble")

        async def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("database on fire")

        monkeypatch.setattr(bot.jobs, "get", broken)
        with caplog.at_level(logging.ERROR, logger="cogs.tree"):
            click = await env.click(result, "Delete")
            await click.wait_for_callback()
        assert click.ephemeral and f"· `{job_id}`." in click.callback_data["content"]
        assert any(f"job {job_id}" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_prompt_form_opened_before_a_restart_is_answered(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env:
        async with env.running():
            result, _ = await delivered(env, "edit me later")
            click = await env.click(result, "Edit")
            await click.wait_for_callback()
            assert click.modal is not None
            modal = click.modal
        async with env.running():
            (field,) = [
                c["custom_id"]
                for row in modal["components"]
                for c in row.get("components", [row])
                if c["type"] == 4
            ]
            submit = await env.discord.submit_modal(modal["custom_id"], {field: "a hat"})
            await submit.wait_for_callback()
            assert submit.ephemeral and "open it again" in submit.callback_data["content"]
        assert env.runcomfy.count("submit") == 1


# -- a slow database ----------------------------------------------------------------------------


def slow_reservations(env: StudioEnv) -> asyncio.Event:
    """Reservations wait until the returned event is set (the database is stuck)."""
    assert env.storage is not None
    jobs = env.storage.jobs
    real = jobs.create_reserved
    go = asyncio.Event()

    async def stuck(*args: Any, **kwargs: Any) -> Any:
        await go.wait()
        return await real(*args, **kwargs)

    jobs.create_reserved = stuck  # type: ignore[method-assign]
    return go


async def test_a_slow_reservation_is_deferred_in_time_and_the_job_still_runs(
    tmp_path: Path,
) -> None:
    async with (
        studio_env(tmp_path, timing_changes={"ack_budget": 0.05}) as env,
        env.running(),
    ):
        go = slow_reservations(env)
        sent = await env.imagine("patience")
        callback = await sent.wait_for_callback()
        assert callback.json["type"] == 5 and not sent.ephemeral  # deferred, publicly
        go.set()
        status = await sent.wait_for_original(lambda m: "job `" in m.content)
        assert labels(status) == ["Cancel"]
        job = await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
        result = await env.wait_message(status.id, lambda m: bool(m.attachments))
        assert job.result_message_id == result.id


async def test_a_slow_refusal_after_deferring_is_ephemeral(tmp_path: Path) -> None:
    async with (
        studio_env(tmp_path, daily_credits=1, timing_changes={"ack_budget": 0.05}) as env,
        env.running(),
    ):
        go = slow_reservations(env)
        sent = await env.imagine("too many", count=2)
        await sent.wait_for_callback()
        go.set()
        (refusal,) = await sent.wait_for_followups()
        assert refusal.ephemeral and "Not enough credits" in refusal.content
        await env.discord.wait_until(lambda: env.discord.original_response(sent) is None)
        assert env.runcomfy.requests == []


async def test_quota_answers_in_time_when_the_database_is_slow(tmp_path: Path) -> None:
    async with (
        studio_env(tmp_path, timing_changes={"ack_budget": 0.05}) as env,
        env.running() as bot,
    ):
        go = asyncio.Event()
        real = bot.storage.quota.balance

        async def stuck(*args: Any, **kwargs: Any) -> Any:
            await go.wait()
            return await real(*args, **kwargs)

        bot.storage.quota.balance = stuck  # type: ignore[method-assign]
        sent = await env.discord.slash_command("quota")
        callback = await sent.wait_for_callback()
        assert callback.json["type"] == 5 and sent.ephemeral
        go.set()
        answer = await sent.wait_for_original(lambda m: "credits" in m.content)
        assert "left today" in answer.content
