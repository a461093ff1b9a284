"""End to end: the per-image action menus on a result (Vary, Edit…, Re-render, Reframe, Save).

The real bot against the fake Discord (which enforces Discord's component limits) and the fake
RunComfy (whose recorded submits show the request each action sends). Each action is checked
for the API request, the charge and the result; then that old results keep working after a
restart, and that another member, a removed result and an age-restricted result brought into a
normal channel are refused with nothing charged.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cogs.image_actions import NOT_REQUESTER
from services.jobs.derive import REFRAME_INSTRUCTION
from storage.models import JobKind, JobState, LedgerKind
from tests.e2e_harness import StudioEnv, labels, studio_env
from tests.fakes.discord import FakeMember, StoredMessage
from tests.fakes.discord_models import iter_components
from tests.fakes.runcomfy import RecordedRequest

RATIOS = ("auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16")
ALL_CHOICES = ("vary", "edit", "render:2K", "render:4K", *(f"frame:{r}" for r in RATIOS), "save")
REMOVED = "A moderator removed this result, so it can't be used again."


@contextlib.asynccontextmanager
async def studio(
    tmp_path: Path, *, log_channel: str | None = None
) -> AsyncIterator[tuple[StudioEnv, FakeMember]]:
    """A running studio with plenty of credits and a second plain member (and a channel
    ``log_channel`` for the moderators' log, made before the bot connects)."""
    async with studio_env(tmp_path, daily_credits=100) as env:
        other = env.discord.add_member(env.discord.guild, "other")
        if log_channel is not None:
            env.discord.add_text_channel(env.discord.guild, log_channel)
        async with env.running():
            yield env, other


async def delivered(env: StudioEnv, prompt: str, **options: Any) -> tuple[StoredMessage, str]:
    sent = await env.imagine(prompt, **options)
    status = await env.acknowledged(sent)
    job_id = env.job_id_of(status)
    job = await env.wait_state(job_id, JobState.DELIVERED)
    count = len(job.result_urls)
    result = await env.wait_message(status.id, lambda m: len(m.attachments) == count)
    return result, job_id


def menu_id(job_id: str, n: int) -> str:
    return f"studio:img:{job_id}:{n}"


def menus(message: StoredMessage) -> list[dict[str, Any]]:
    return [c for c in iter_components(message.components) if c.get("type") == 3]


async def pick(
    env: StudioEnv, message: StoredMessage, job_id: str, n: int, choice: str, **who: Any
) -> Any:
    return await env.discord.select_menu(message, menu_id(job_id, n), [choice], **who)


async def launched(env: StudioEnv, message: StoredMessage, job_id: str, n: int, choice: str):
    """Pick an action that starts a job; returns the new job once delivered, and its result."""
    sent = await pick(env, message, job_id, n, choice)
    status = await env.acknowledged(sent)
    assert not sent.ephemeral
    new_id = env.job_id_of(status)
    assert new_id != job_id
    job = await env.wait_state(new_id, JobState.DELIVERED)
    result = await env.wait_message(status.id, lambda m: len(m.attachments) == len(job.result_urls))
    return job, result


def submits(env: StudioEnv) -> list[RecordedRequest]:
    return [r for r in env.runcomfy.requests if r.endpoint == "submit"]


def last_submit(env: StudioEnv) -> tuple[str, dict[str, Any]]:
    request = submits(env)[-1]
    return request.path.rsplit("/", 1)[-1], request.json


async def used(env: StudioEnv, user_id: int) -> int:
    assert env.storage is not None
    return (await env.storage.quota.balance(user_id, env.discord.guild.id)).used


async def reserved(env: StudioEnv, job_id: str) -> list[tuple[int, int]]:
    """Who was charged how much for ``job_id`` (the ledger's reservations)."""
    assert env.storage is not None
    rows = await env.storage.quota.job_entries(job_id)
    return [(r.user_id, r.amount) for r in rows if r.kind == LedgerKind.RESERVE]


async def refusal(env: StudioEnv, message: StoredMessage, custom_id: str, choice: str, **who: Any):
    """A pick that must be refused ephemerally (no form, no status message); returns the text."""
    sent = await env.discord.select_menu(message, custom_id, [choice], **who)
    await sent.wait_for_callback()
    assert sent.modal is None, choice
    if sent.callback_type in (5, 6):  # deferred while the job was looked up
        (told,) = await sent.wait_for_followups()
        assert told.ephemeral, choice
        return told.content
    assert sent.ephemeral and sent.callback_data is not None, (choice, sent.callback_data)
    return str(sent.callback_data["content"])


# -- the menus ---------------------------------------------------------------------------------


async def test_a_four_image_result_has_a_menu_per_image_within_discords_limits(
    tmp_path: Path,
) -> None:
    async with studio(tmp_path) as (env, _):
        result, job_id = await delivered(env, "four of them", count=4)
        # the fake Discord refuses a message breaking a limit: posting it at all proves the fit
        assert len(result.components) == 5  # the button row and four menus
        assert "Re-roll" in labels(result) and "Delete" in labels(result)
        shown = menus(result)
        assert [m["custom_id"] for m in shown] == [menu_id(job_id, n) for n in range(1, 5)]
        assert [m["placeholder"] for m in shown] == [
            f"Image {n}: choose an action" for n in range(1, 5)
        ]
        for menu in shown:
            assert [o["value"] for o in menu["options"]] == list(ALL_CHOICES)
            costs = {o["value"]: o.get("description", "") for o in menu["options"]}
            assert costs["vary"].endswith(": 4 credits")  # four new images at 1K
            assert costs["edit"].endswith(": 1 credit")
            assert costs["render:2K"] == "A new image at 2K, not an upscale: 2 credits"
            assert costs["render:4K"] == "A new image at 4K, not an upscale: 4 credits"
            assert all(costs[f"frame:{r}"].endswith(": 1 credit") for r in RATIOS)
            assert "free" in costs["save"]
            names = {o["value"]: o["label"] for o in menu["options"]}
            assert (
                names["render:4K"] == "Re-render at 4K" and names["frame:9:16"] == "Reframe to 9:16"
            )


async def test_a_single_image_result_gets_one_menu(tmp_path: Path) -> None:
    async with studio(tmp_path) as (env, _):
        result, job_id = await delivered(env, "just one")
        assert [m["custom_id"] for m in menus(result)] == [menu_id(job_id, 1)]


# -- each action: the request, the charge, the result ------------------------------------------


async def test_vary_sends_the_image_with_the_original_request_and_a_new_seed(
    tmp_path: Path,
) -> None:
    async with studio(tmp_path) as (env, _):
        member = env.discord.guild.member
        result, job_id = await delivered(
            env, "a paper boat", count=2, seed=99, aspect_ratio="3:2", resolution="2K"
        )
        before = await used(env, member.id)
        job, posted = await launched(env, result, job_id, 2, "vary")
        model, sent = last_submit(env)
        assert model == "edit"
        assert sent["image_urls"] == [result.attachments[1].url]
        assert sent["prompt"] == "a paper boat" and sent["seed"] != 99
        assert (sent["num_images"], sent["resolution"], sent["aspect_ratio"]) == (2, "2K", "3:2")
        assert job.kind == JobKind.EDIT and job.parent_job_id == job_id
        assert job.user_id == member.id and job.cost == 4
        assert await reserved(env, job.id) == [(member.id, 4)]
        assert await used(env, member.id) == before + 4
        assert len(posted.attachments) == 2 and len(menus(posted)) == 2
        # the menu was shown afresh, so the same choice can be picked again
        reset = await env.discord.wait_for(f"PATCH /channels/*/messages/{result.id}")
        sent_ids = [
            c["custom_id"] for c in iter_components(reset.json["components"]) if "custom_id" in c
        ]
        assert sent_ids == result.custom_ids() and len(sent_ids) == 6


@pytest.mark.parametrize(("resolution", "cost"), [("2K", 2), ("4K", 4)])
async def test_rerender_makes_one_new_image_at_that_resolution(
    tmp_path: Path, resolution: str, cost: int
) -> None:
    async with studio(tmp_path) as (env, _):
        member = env.discord.guild.member
        result, job_id = await delivered(env, "a tin robot", count=3, aspect_ratio="4:5")
        before = await used(env, member.id)
        job, posted = await launched(env, result, job_id, 3, f"render:{resolution}")
        model, sent = last_submit(env)
        assert model == "edit" and sent["image_urls"] == [result.attachments[2].url]
        assert sent["prompt"] == "a tin robot"
        assert (sent["num_images"], sent["resolution"], sent["aspect_ratio"]) == (
            1,
            resolution,
            "4:5",
        )
        original = (await env.job(job_id)).params["seed"]
        assert sent["seed"] != original
        assert job.cost == cost and await reserved(env, job.id) == [(member.id, cost)]
        assert await used(env, member.id) == before + cost
        assert len(posted.attachments) == 1


async def test_reframe_extends_the_image_to_each_aspect_ratio(tmp_path: Path) -> None:
    async with studio(tmp_path) as (env, _):
        member = env.discord.guild.member
        result, job_id = await delivered(env, "a quiet harbour", count=2, aspect_ratio="1:1")
        seeds = {(await env.job(job_id)).params["seed"]}
        for ratio in RATIOS:
            before = await used(env, member.id)
            job, posted = await launched(env, result, job_id, 1, f"frame:{ratio}")
            model, sent = last_submit(env)
            assert model == "edit" and sent["image_urls"] == [result.attachments[0].url], ratio
            assert sent["aspect_ratio"] == ratio and sent["num_images"] == 1
            assert sent["prompt"] == REFRAME_INSTRUCTION + "a quiet harbour"
            assert sent["resolution"] == "1K" and sent["seed"] not in seeds
            seeds.add(sent["seed"])
            assert await used(env, member.id) == before + 1 and job.cost == 1
            assert len(posted.attachments) == 1


async def test_edit_opens_a_form_and_edits_that_image_alone(tmp_path: Path) -> None:
    async with studio(tmp_path) as (env, _):
        member = env.discord.guild.member
        result, job_id = await delivered(env, "a snowy cabin", count=2, resolution="2K")
        before = await used(env, member.id)
        sent = await pick(env, result, job_id, 2, "edit")
        await sent.wait_for_callback()
        assert sent.callback_type == 9 and sent.modal is not None
        assert sent.modal["title"] == "Edit image 2"
        (field,) = [c for c in iter_components(sent.modal["components"]) if c.get("type") == 4]
        submitted = await env.discord.submit_modal(
            sent.modal["custom_id"], {field["custom_id"]: "add northern lights"}
        )
        status = await env.acknowledged(submitted)
        job = await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
        model, request = last_submit(env)
        assert model == "edit" and request["image_urls"] == [result.attachments[1].url]
        assert request["prompt"] == "add northern lights"
        assert request["num_images"] == 1 and request["resolution"] == "2K"
        assert job.parent_job_id == job_id and job.cost == 2
        assert await used(env, member.id) == before + 2
        posted = await env.wait_message(status.id, lambda m: bool(m.attachments))
        assert len(posted.attachments) == 1


async def test_save_as_reference_hands_the_image_to_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with studio(tmp_path) as (env, other):
        # the module the bot loaded (load_extension makes its own module object)
        library = sys.modules["cogs.library"]
        saving = library.save_as_reference
        saved: list[tuple[str, int]] = []

        async def save(interaction: Any, job: Any, index: int) -> None:
            saved.append((job.id, index))
            await saving(interaction, job, index)

        monkeypatch.setattr(library, "save_as_reference", save)
        result, job_id = await delivered(env, "a green parrot", count=3)
        said = await refusal(env, result, menu_id(job_id, 1), "save", user=other)
        assert said == NOT_REQUESTER and saved == []
        sent = await pick(env, result, job_id, 3, "save")
        await sent.wait_for_callback()
        assert saved == [(job_id, 2)]  # the third image, 0-based
        assert sent.callback_type == 9 and sent.modal is not None  # the library's name form
        assert env.runcomfy.count("submit") == 1  # nothing generated, nothing charged
        assert await used(env, env.discord.guild.member.id) == 3


# -- after a restart ---------------------------------------------------------------------------


async def test_the_menus_work_on_a_result_posted_before_a_restart(tmp_path: Path) -> None:
    async with studio_env(tmp_path, daily_credits=100) as env:
        async with env.running():
            result, job_id = await delivered(env, "from before", count=2)
        async with env.running():
            for choice, count in (("vary", 2), ("render:4K", 1), ("frame:21:9", 1)):
                job, _ = await launched(env, result, job_id, 2, choice)
                assert job.parent_job_id == job_id and len(job.result_urls) == count, choice
                model, sent = last_submit(env)
                assert model == "edit" and sent["image_urls"] == [result.attachments[1].url]
            sent = await pick(env, result, job_id, 1, "edit")
            await sent.wait_for_callback()
            assert sent.callback_type == 9


# -- refusals: nothing charged -----------------------------------------------------------------


async def nothing_happens(env: StudioEnv, users: list[int], act: Any) -> None:
    """``act`` submits nothing to RunComfy and charges none of ``users``."""
    submitted = len(submits(env))
    before = [await used(env, u) for u in users]
    await act()
    assert len(submits(env)) == submitted
    assert [await used(env, u) for u in users] == before


async def test_another_member_is_refused_every_action(tmp_path: Path) -> None:
    async with studio(tmp_path) as (env, other):
        guild = env.discord.guild
        result, job_id = await delivered(env, "mine", count=2)

        async def act() -> None:
            for choice in ALL_CHOICES:
                said = await refusal(env, result, menu_id(job_id, 2), choice, user=other)
                assert said == NOT_REQUESTER, choice
            # a server admin is no exception: the actions are the requester's own
            said = await refusal(env, result, menu_id(job_id, 1), "vary", user=guild.admin)
            assert said == NOT_REQUESTER

        await nothing_happens(env, [guild.member.id, other.id, guild.admin.id], act)
        # the requester can
        job, _ = await launched(env, result, job_id, 2, "vary")
        assert job.user_id == guild.member.id


async def test_a_removed_result_is_refused_every_action(tmp_path: Path) -> None:
    async with studio(tmp_path, log_channel="mod-log") as (env, _):
        guild = env.discord.guild
        (log_channel,) = [c for c in guild.channels.values() if c.name == "mod-log"]
        await env.admin("log-channel", {"channel": log_channel})
        result, job_id = await delivered(env, "removed later")
        entry = await env.log_entry(log_channel.id, lambda m: job_id in str(m.embeds))
        click = await env.click(entry, "Remove", user=guild.admin)
        await click.wait_for_callback()
        await env.discord.wait_until(lambda: result.id in env.discord.deleted_messages)
        # The result is gone; its menu, copied onto another message, must not bring it back.
        note = await env.discord.post_user_message(guild.text_channel, guild.member, "again?")
        note.components[:] = [{"type": 1, "components": [dict(menus(result)[0])]}]

        async def act() -> None:
            for choice in ALL_CHOICES:
                said = await refusal(env, note, menu_id(job_id, 1), choice)
                assert said == REMOVED, choice

        await nothing_happens(env, [guild.member.id], act)


async def test_an_age_restricted_result_is_refused_in_a_normal_channel(tmp_path: Path) -> None:
    async with studio(tmp_path) as (env, _):
        guild = env.discord.guild
        nsfw = guild.nsfw_channel
        result, job_id = await delivered(env, "spicy", count=2, channel_id=nsfw.id)
        nsfw.nsfw = False  # the channel stops being age-restricted
        await env.discord.dispatch("CHANNEL_UPDATE", nsfw.payload())
        await bot_sees_nsfw(env, nsfw.id, False)

        async def act() -> None:
            for choice in ALL_CHOICES:
                said = await refusal(env, result, menu_id(job_id, 2), choice)
                assert "age-restricted" in said, choice

        await nothing_happens(env, [guild.member.id], act)
        nsfw.nsfw = True  # back in an age-restricted channel: allowed again
        await env.discord.dispatch("CHANNEL_UPDATE", nsfw.payload())
        await bot_sees_nsfw(env, nsfw.id, True)
        job, _ = await launched(env, result, job_id, 2, "render:2K")
        assert job.age_restricted_channel


async def bot_sees_nsfw(env: StudioEnv, channel_id: int, nsfw: bool) -> None:
    """Wait until the bot's cache has processed the CHANNEL_UPDATE."""
    assert env.bot is not None
    bot = env.bot

    def seen() -> bool:
        channel = bot.get_channel(channel_id)
        return channel is not None and getattr(channel, "nsfw", None) is nsfw

    await env.discord.wait_until(seen, poll=0.01, describe=f"channel {channel_id} nsfw={nsfw}")


async def test_an_unknown_choice_or_image_is_refused(tmp_path: Path) -> None:
    async with studio(tmp_path) as (env, _):
        guild = env.discord.guild
        result, job_id = await delivered(env, "two", count=2)
        menu = dict(menus(result)[0])
        menu["custom_id"] = menu_id(job_id, 3)  # the result has no image 3
        result.components.append({"type": 1, "components": [menu]})

        async def act() -> None:
            said = await refusal(env, result, menu_id(job_id, 3), "vary")
            assert said == f"Job `{job_id}` has no image 3."
            said = await refusal(env, result, menu_id(job_id, 1), "frame:7:1")
            assert "not an aspect ratio" in said

        await nothing_happens(env, [guild.member.id], act)


async def test_a_refused_pick_still_shows_the_menus_afresh(tmp_path: Path) -> None:
    # One credit: the result takes it, so Vary is refused; Discord keeps "vary" chosen, so the
    # menus must be sent again, else the same pick later would send nothing.
    async with studio_env(tmp_path, daily_credits=1) as env, env.running():
        result, job_id = await delivered(env, "a lighthouse")
        mark = env.discord.mark()
        said = await refusal(env, result, menu_id(job_id, 1), "vary")
        assert "credit" in said and env.runcomfy.count("submit") == 1
        reset = await env.discord.wait_for(
            f"PATCH /channels/*/messages/{result.id}", after=mark, timeout=5
        )
        sent_ids = [
            c["custom_id"] for c in iter_components(reset.json["components"]) if "custom_id" in c
        ]
        assert menu_id(job_id, 1) in sent_ids


async def test_a_menu_naming_another_job_does_not_take_this_messages_image(
    tmp_path: Path,
) -> None:
    async with studio(tmp_path) as (env, _):
        _, first_id = await delivered(env, "a red kite")
        second, _ = await delivered(env, "a blue kite")
        assert env.storage is not None
        stored = await env.storage.jobs.get(first_id)
        assert stored is not None
        # A crafted menu for the first job on the second job's message: the image sent is the
        # first job's own, never the second message's attachment.
        menu = dict(menus(second)[0])
        menu["custom_id"] = menu_id(first_id, 1)
        second.components.append({"type": 1, "components": [menu]})
        sent = await env.discord.select_menu(second, menu_id(first_id, 1), ["vary"])
        await env.wait_state(env.job_id_of(await env.acknowledged(sent)), JobState.DELIVERED)
        model, request = last_submit(env)
        assert model == "edit" and request["image_urls"] == [stored.result_urls[0]]
        assert request["image_urls"] != [second.attachments[0].url]
