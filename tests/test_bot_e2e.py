"""End to end: the real bot and discord.py against the fake Discord and the fake RunComfy.

Assertions are on what Discord received (callbacks, files, components, allowed mentions) and
what RunComfy received (submits, cancels), plus the credits in the database.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import discord
import pytest
from PIL import Image

from storage.models import JobKind, JobState
from tests.e2e_harness import StudioEnv, studio_env
from tests.fakes.discord import StoredMessage, png_bytes
from tests.fakes.discord_models import iter_components
from tests.fakes.runcomfy import JobScript
from tests.helpers import FOREVER, finish_now

NO_PINGS = {"users": set(), "roles": set(), "everyone": False}


def labels(message: StoredMessage) -> list[str]:
    return [b["label"] for b in message.buttons()]


def custom_id(message: StoredMessage, label: str) -> str:
    (button,) = [b for b in message.buttons() if b["label"] == label]
    return button["custom_id"]


def text_input_id(modal: dict) -> str:
    (found,) = [c["custom_id"] for c in iter_components(modal["components"]) if c["type"] == 4]
    return found


async def used(env: StudioEnv, user_id: int) -> int:
    assert env.storage is not None
    return (await env.storage.quota.balance(user_id, env.discord.guild.id)).used


async def start_imagine(
    env: StudioEnv, prompt: str, **options: object
) -> tuple[StoredMessage, str]:
    sent = await env.imagine(prompt, **options)
    status = await env.acknowledged(sent)
    return status, env.job_id_of(status)


async def delivered(env: StudioEnv, prompt: str, **options: object) -> tuple[StoredMessage, str]:
    status, job_id = await start_imagine(env, prompt, **options)
    await env.wait_state(job_id, JobState.DELIVERED)
    result = await env.wait_message(status.id, lambda m: bool(m.attachments))
    return result, job_id


# -- the main flow ----------------------------------------------------------------------------


async def test_imagine_with_count_two_posts_one_message_with_two_pngs(
    db_target: Path | str,
) -> None:
    async with studio_env(db_target) as env, env.running():
        member = env.discord.guild.member
        sent = await env.imagine("a banana in space", count=2)
        status = await env.acknowledged(sent)
        assert not sent.ephemeral
        assert labels(status) == ["Cancel"]
        assert status.allowed_mentions == {"parse": []}
        job_id = env.job_id_of(status)
        assert custom_id(status, "Cancel") == f"studio:cancel:{job_id}"

        job = await env.wait_state(job_id, JobState.DELIVERED)
        result = await env.wait_message(status.id, lambda m: len(m.attachments) == 2)
        assert all(a.content_type == "image/png" for a in result.attachments)
        # the API's bytes, unchanged
        served = [env.runcomfy.jobs[job.request_id].images[i][0] for i in (0, 1)]  # type: ignore[index]
        assert sorted(a.data for a in result.attachments) == sorted(served)  # type: ignore[type-var]
        assert labels(result) == ["Re-roll", "Edit", "Delete", "Favourite"]
        assert result.content == ""
        (embed,) = result.embeds
        assert embed["description"] == "a banana in space"
        fields = {f["name"]: f["value"] for f in embed["fields"]}
        assert fields["Seed"] == f"`{job.params['seed']}`"
        assert fields["Requested by"] == f"<@{member.id}>"
        assert "2×" in fields["Options"] and "1K" in fields["Options"]
        assert result.pinged() == NO_PINGS
        assert job.committed == 2 and await used(env, member.id) == 2
        assert job.result_message_id == status.id


async def test_reroll_submits_again_with_another_seed_charged_to_the_clicker(
    db_target: Path | str,
) -> None:
    async with studio_env(db_target) as env, env.running():
        guild = env.discord.guild
        result, job_id = await delivered(env, "a red fox", seed=1234)
        click = await env.discord.click_button(
            result, custom_id(result, "Re-roll"), user=guild.admin
        )
        status = await env.acknowledged(click)
        new_id = env.job_id_of(status)
        assert new_id != job_id
        rerolled = await env.wait_state(new_id, JobState.DELIVERED)
        assert rerolled.user_id == guild.admin.id and rerolled.parent_job_id == job_id
        submits = [r.json for r in env.runcomfy.requests if r.endpoint == "submit"]
        assert [s["prompt"] for s in submits] == ["a red fox", "a red fox"]
        assert submits[0]["seed"] == 1234 and submits[1]["seed"] != 1234
        assert await used(env, guild.member.id) == 1 and await used(env, guild.admin.id) == 1


async def test_edit_button_opens_a_modal_and_edits_the_result_images(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        result, job_id = await delivered(env, "a castle", count=2)
        click = await env.discord.click_button(result, custom_id(result, "Edit"))
        await click.wait_for_callback()
        assert click.callback_type == 9 and click.modal is not None
        modal = click.modal
        submit = await env.discord.submit_modal(
            modal["custom_id"], {text_input_id(modal): "add a dragon"}
        )
        status = await env.acknowledged(submit)
        edit_id = env.job_id_of(status)
        edit = await env.wait_state(edit_id, JobState.DELIVERED)
        assert edit.kind == JobKind.EDIT and edit.parent_job_id == job_id
        (edit_submit,) = [r for r in env.runcomfy.requests if r.path.endswith("/edit")]
        assert edit_submit.json["prompt"] == "add a dragon"
        assert edit_submit.json["image_urls"] == [a.url for a in result.attachments]


async def test_delete_is_for_the_requester_or_a_moderator(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        guild = env.discord.guild
        stranger = env.discord.add_member(guild, "stranger", roles=[guild.member_role])
        result, _ = await delivered(env, "a lighthouse")
        refused = await env.discord.click_button(result, custom_id(result, "Delete"), user=stranger)
        await refused.wait_for_callback()
        assert refused.ephemeral and "Only the member who asked" in refused.callback_data["content"]
        assert result.id in env.discord.messages

        allowed = await env.discord.click_button(result, custom_id(result, "Delete"))
        await env.discord.wait_until(lambda: result.id not in env.discord.messages)
        assert allowed.callback_type == 6

        other, _ = await delivered(env, "another lighthouse")
        await env.discord.click_button(other, custom_id(other, "Delete"), user=guild.admin)
        await env.discord.wait_until(lambda: other.id not in env.discord.messages)


# A double click on Delete: tests/test_bot_guards_e2e.py.


# -- /edit and the message menu -----------------------------------------------------------------


async def test_edit_passes_the_attachment_urls(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        first = env.discord.make_attachment(png_bytes(), "one.png")
        second = env.discord.make_attachment(png_bytes(), "two.png")
        sent = await env.discord.slash_command(
            "edit", {"prompt": "make them match", "image": first, "image2": second}
        )
        status = await env.acknowledged(sent)
        job = await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
        (submit,) = [r for r in env.runcomfy.requests if r.endpoint == "submit"]
        assert submit.path.endswith("/edit")
        assert submit.json["image_urls"] == [first.url, second.url]
        assert job.params["image_urls"] == [first.url, second.url]


async def test_edit_refuses_a_non_image_attachment_without_calling_the_api(
    db_target: Path | str,
) -> None:
    async with studio_env(db_target) as env, env.running():
        text = env.discord.make_attachment(b"just words", "notes.txt", content_type="text/plain")
        sent = await env.discord.slash_command("edit", {"prompt": "draw this", "image": text})
        await sent.wait_for_callback()
        assert sent.ephemeral
        assert "not a PNG, JPEG or WebP image" in sent.callback_data["content"]
        assert env.runcomfy.requests == []
        assert await used(env, env.discord.guild.member.id) == 0


async def test_message_menu_edits_the_images_of_a_message(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        guild = env.discord.guild
        pictures = [env.discord.make_attachment(png_bytes(), f"p{i}.png") for i in range(2)]
        notes = env.discord.make_attachment(b"hello", "notes.txt", content_type="text/plain")
        posted = await env.discord.post_user_message(
            guild.text_channel, guild.owner, "look", attachments=[*pictures, notes]
        )
        menu = await env.discord.message_context_menu("Edit image", posted)
        await menu.wait_for_callback()
        assert menu.callback_type == 9 and menu.modal is not None
        submit = await env.discord.submit_modal(
            menu.modal["custom_id"], {text_input_id(menu.modal): "combine them"}
        )
        status = await env.acknowledged(submit)
        await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
        (request,) = [r for r in env.runcomfy.requests if r.endpoint == "submit"]
        assert request.json["image_urls"] == [p.url for p in pictures]


async def test_message_menu_on_a_message_without_images_is_refused(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        guild = env.discord.guild
        posted = await env.discord.post_user_message(guild.text_channel, guild.owner, "no art")
        menu = await env.discord.message_context_menu("Edit image", posted)
        await menu.wait_for_callback()
        assert menu.ephemeral and "no PNG, JPEG or WebP images" in menu.callback_data["content"]


# -- refusals ------------------------------------------------------------------------------------


async def test_an_overlong_prompt_is_refused_without_calling_the_api(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        guild_id = env.discord.guild.id
        (imagine,) = [c for c in env.discord.commands(guild_id) if c["name"] == "imagine"]
        prompt_option = imagine["options"][0]
        assert prompt_option["name"] == "prompt" and prompt_option["max_length"] == 4000
        # Discord enforces the declared limit; a stale definition (registered by an older
        # version, without it) lets a long prompt through, and the bot's own check stops it.
        del prompt_option["max_length"]
        sent = await env.imagine("x" * 4001)
        await sent.wait_for_callback()
        assert sent.ephemeral
        assert "4,001 characters; the limit is 4,000" in sent.callback_data["content"]
        assert env.runcomfy.requests == []
        assert env.storage is not None and await env.storage.jobs.unfinished() == []


async def test_quota_exhausted_gives_an_ephemeral_refusal_and_no_api_call(
    db_target: Path | str,
) -> None:
    async with studio_env(db_target, daily_credits=1) as env, env.running():
        sent = await env.imagine("two please", count=2)
        await sent.wait_for_callback()
        assert sent.ephemeral
        content = sent.callback_data["content"]
        assert "this needs 2 credits, 1 of 1 left" in content and "<t:" in content
        assert env.runcomfy.requests == []
        assert await used(env, env.discord.guild.member.id) == 0


async def test_policy_refusals_are_ephemeral(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        guild_id = env.discord.guild.id
        assert env.bot is not None
        assert env.storage is not None
        await env.storage.policy.update(guild_id, max_safety=2)
        env.bot.policy.invalidate(guild_id)
        sent = await env.imagine("spicy", safety=5)
        await sent.wait_for_callback()
        assert sent.ephemeral and "ceiling of 2" in sent.callback_data["content"]
        # not asking for a value is clamped, and the member is told on the status message
        status, job_id = await start_imagine(env, "mild")
        assert "safety lowered to 2" in status.content
        job = await env.wait_state(job_id, JobState.DELIVERED)
        assert job.params["safety_tolerance"] == 2
        (submit,) = [r.json for r in env.runcomfy.requests if r.endpoint == "submit"]
        assert submit["safety_tolerance"] == 2


# -- cancel ---------------------------------------------------------------------------------------


async def test_cancel_while_queued_calls_the_api_and_refunds(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        env.runcomfy.script(JobScript(queue_seconds=FOREVER, queue_position=3))
        member = env.discord.guild.member
        status, job_id = await start_imagine(env, "slow one", count=2)
        await env.wait_state(job_id, JobState.QUEUED, JobState.SUBMITTED)
        assert await used(env, member.id) == 2

        click = await env.discord.click_button(status, custom_id(status, "Cancel"))
        await click.wait_for_callback()
        await env.wait_state(job_id, JobState.CANCELLED)
        assert env.runcomfy.count("cancel") == 1
        final = await env.wait_message(status.id, lambda m: "Cancelled" in m.content)
        assert final.buttons() == [] and "credits are back" in final.content
        assert await used(env, member.id) == 0
        assert click.followups == []  # the status message says it: no second message


async def test_cancel_while_running_is_refused_politely(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        env.runcomfy.script(JobScript(queue_seconds=0.0, run_seconds=FOREVER))
        status, job_id = await start_imagine(env, "busy one")
        job = await env.wait_state(job_id, JobState.RUNNING)
        # the Cancel button goes once the job is generating; a stale client may still click it
        live = await env.wait_message(status.id, lambda m: "Generating" in m.content)
        assert live.buttons() == []
        cancel = {"type": 2, "style": 4, "label": "Cancel", "custom_id": f"studio:cancel:{job_id}"}
        live.components.append({"type": 1, "components": [cancel]})
        click = await env.discord.click_button(live, f"studio:cancel:{job_id}")
        (followup,) = await click.wait_for_followups()
        assert followup.ephemeral and "can't be stopped now" in followup.content
        assert (await env.job(job_id)).state == JobState.RUNNING
        finish_now(env.runcomfy, job.request_id)
        await env.wait_state(job_id, JobState.DELIVERED)


async def test_cancel_by_another_member_is_refused(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        env.runcomfy.script(JobScript(queue_seconds=FOREVER))
        guild = env.discord.guild
        stranger = env.discord.add_member(guild, "stranger", roles=[guild.member_role])
        status, job_id = await start_imagine(env, "mine")
        await env.wait_state(job_id, JobState.QUEUED, JobState.SUBMITTED)
        click = await env.discord.click_button(status, custom_id(status, "Cancel"), user=stranger)
        (followup,) = await click.wait_for_followups()
        assert followup.ephemeral and "Only the member who asked" in followup.content
        assert env.runcomfy.count("cancel") == 0
        # a moderator may
        mod = await env.discord.click_button(status, custom_id(status, "Cancel"), user=guild.admin)
        await mod.wait_for_callback()
        await env.wait_state(job_id, JobState.CANCELLED)


# -- failures -------------------------------------------------------------------------------------


async def test_an_api_failure_is_explained_and_refunded(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        env.runcomfy.script(JobScript(outcome="fail", error="prompt rejected by safety filter"))
        status, job_id = await start_imagine(env, "something odd", count=3)
        job = await env.wait_state(job_id, JobState.FAILED)
        final = await env.wait_message(status.id, lambda m: "Failed" in m.content)
        assert "prompt rejected by safety filter" in final.content
        assert "Your 3 credits are back" in final.content
        assert final.buttons() == []
        assert job.committed is None and await used(env, env.discord.guild.member.id) == 0


@pytest.mark.expect_errors(logger="cogs.tree", match="unexpected error")
async def test_an_unexpected_error_is_logged_and_the_member_gets_a_reference(
    db_target: Path | str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with studio_env(db_target) as env, env.running() as bot:

        async def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("database on fire")

        monkeypatch.setattr(bot.jobs, "reserve", broken)
        with caplog.at_level(logging.ERROR, logger="cogs.tree"):
            sent = await env.imagine("anything")
            await sent.wait_for_callback()
        assert sent.ephemeral and f"`{sent.id}`" in sent.callback_data["content"]
        assert any(str(sent.id) in r.getMessage() and r.exc_info for r in caplog.records)


# -- limits and fallbacks -------------------------------------------------------------------------


async def test_an_oversized_image_is_reencoded_to_fit(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        limit = 300_000
        env.runcomfy.script(JobScript(image_bytes=900_000))
        sent = await env.imagine("huge detail", attachment_size_limit=limit)
        status = await env.acknowledged(sent)
        job = await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
        result = await env.wait_message(status.id, lambda m: bool(m.attachments))
        (attachment,) = result.attachments
        assert attachment.size <= limit
        assert attachment.content_type == "image/jpeg" and attachment.filename.endswith(".jpg")
        with Image.open(io.BytesIO(attachment.data or b"")) as image:
            assert image.format == "JPEG"
        assert "re-encoded" in result.embeds[0]["footer"]["text"]
        assert job.committed == 1


async def test_an_expired_token_falls_back_to_a_channel_message(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        env.runcomfy.script(JobScript(queue_seconds=FOREVER))
        member = env.discord.guild.member
        sent = await env.imagine("late delivery")
        status = await env.acknowledged(sent)
        job_id = env.job_id_of(status)
        queued = await env.wait_state(job_id, JobState.QUEUED, JobState.SUBMITTED)
        env.discord.expire_interaction(sent)
        finish_now(env.runcomfy, queued.request_id)

        job = await env.wait_state(job_id, JobState.DELIVERED)
        assert job.result_message_id != status.id
        result = env.discord.message(job.result_message_id)  # type: ignore[arg-type]
        assert result.origin == "channel" and len(result.attachments) == 1
        assert result.content.startswith(f"<@{member.id}>")
        assert result.pinged() == {"users": {member.id}, "roles": set(), "everyone": False}
        assert labels(result) == ["Re-roll", "Edit", "Delete", "Favourite"]
        moved = await env.wait_message(status.id, lambda m: "posted below" in m.content)
        assert moved.buttons() == []


async def test_everyone_in_a_prompt_pings_nobody(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        role = env.discord.guild.admin_role
        prompt = f"@everyone look <@&{role.id}> and @here **bold**"
        status, job_id = await start_imagine(env, prompt)
        assert status.pinged() == NO_PINGS and status.allowed_mentions == {"parse": []}
        await env.wait_state(job_id, JobState.DELIVERED)
        result = await env.wait_message(status.id, lambda m: bool(m.attachments))
        assert result.pinged() == NO_PINGS
        description = result.embeds[0]["description"]
        assert "@\u200beveryone" in description and "\\*\\*bold\\*\\*" in description
        for request in env.discord.requests_to("PATCH /webhooks/*"):
            assert request.json["allowed_mentions"] == {"parse": []}


# -- restarts -------------------------------------------------------------------------------------


async def test_a_restart_mid_job_delivers_exactly_once_and_old_buttons_work(
    db_target: Path | str,
) -> None:
    async with studio_env(db_target) as env:
        async with env.running():
            done, done_id = await delivered(env, "from before the restart")
            env.runcomfy.script(JobScript(queue_seconds=FOREVER))
            sent = await env.imagine("survives a restart")
            status = await env.acknowledged(sent)
            job_id = env.job_id_of(status)
            queued = await env.wait_state(job_id, JobState.QUEUED, JobState.SUBMITTED)
        # the bot is down: the job is still in the database, not delivered
        async with env.running():
            finish_now(env.runcomfy, queued.request_id)
            job = await env.wait_state(job_id, JobState.DELIVERED)
            result = await env.wait_message(status.id, lambda m: bool(m.attachments))
            assert job.result_message_id == status.id
            assert env.runcomfy.count("submit") == 2  # nothing submitted twice
            # exactly one delivery: one edit with files, no channel message
            assert len([r for r in sent.requests if r.method == "PATCH" and r.files]) == 1
            assert env.discord.requests_to("POST /channels/*/messages") == []
            # buttons posted before the restart still work
            click = await env.discord.click_button(done, custom_id(done, "Re-roll"))
            again = await env.acknowledged(click)
            await env.wait_state(env.job_id_of(again), JobState.DELIVERED)
            assert labels(result) == ["Re-roll", "Edit", "Delete", "Favourite"]
        async with env.running() as bot:  # a third start finds nothing to do
            assert bot.jobs.active_count() == 0  # resume ran in setup_hook, before READY
            assert (await env.job(done_id)).state == JobState.DELIVERED
            assert len([r for r in env.discord.requests_to("PATCH /webhooks/*") if r.files]) == 3


# -- /quota and /show -----------------------------------------------------------------------------


async def test_quota_shows_credits_reset_time_and_jobs_in_flight(db_target: Path | str) -> None:
    async with studio_env(db_target, daily_credits=10) as env, env.running():
        env.runcomfy.script(JobScript(queue_seconds=FOREVER))
        await start_imagine(env, "pending", count=3)
        sent = await env.discord.slash_command("quota")
        await sent.wait_for_callback()
        assert sent.ephemeral
        content = sent.callback_data["content"]
        assert "**7** of 10 credits left today" in content
        assert "reset <t:" in content and "Jobs in progress: **1**" in content


async def test_show_reposts_a_past_result_with_live_buttons(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        guild = env.discord.guild
        _, job_id = await delivered(env, "worth showing")
        sent = await env.discord.slash_command("show", {"job_id": job_id})
        shown = await sent.wait_for_original(lambda m: bool(m.attachments))
        assert not shown.ephemeral and labels(shown) == ["Re-roll", "Edit", "Delete", "Favourite"]
        assert custom_id(shown, "Re-roll") == f"studio:reroll:{job_id}"
        assert shown.embeds[0]["description"] == "worth showing"

        stranger = env.discord.add_member(guild, "stranger", roles=[guild.member_role])
        refused = await env.discord.slash_command("show", {"job_id": job_id}, user=stranger)
        await refused.wait_for_callback()
        assert refused.ephemeral and "only show your own" in refused.callback_data["content"]
        moderator = await env.discord.slash_command("show", {"job_id": job_id}, user=guild.admin)
        await moderator.wait_for_original(lambda m: bool(m.attachments))


# -- commands sync --------------------------------------------------------------------------------


async def test_commands_sync_only_when_changed_or_asked(db_target: Path | str) -> None:
    async with studio_env(db_target) as env:
        guild_id = env.discord.guild.id
        async with env.running() as bot:
            assert bot.synced is True
            names = {c["name"] for c in env.discord.commands(guild_id)}
            assert {"imagine", "edit", "quota", "show", "Edit image"} <= names
        async with env.running() as bot:
            assert bot.synced is False
        async with env.running(sync_commands=True) as bot:
            assert bot.synced is True
        assert len(env.discord.requests_to("PUT /applications/*/guilds/*/commands")) == 2


async def test_bot_asks_for_no_privileged_intents(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running():
        (identify,) = env.discord.identifies
        intents = discord.Intents._from_value(identify["intents"])
        assert intents.guilds and not intents.members and not intents.message_content


async def test_a_closing_bot_takes_no_new_commands(db_target: Path | str) -> None:
    async with studio_env(db_target) as env, env.running() as bot:
        bot.accepting = False  # what close() does first on SIGTERM / Ctrl-C
        sent = await env.imagine("too late")
        await sent.wait_for_callback()
        assert sent.ephemeral and "restarting" in sent.callback_data["content"]
        assert env.runcomfy.requests == []
        bot.accepting = True
