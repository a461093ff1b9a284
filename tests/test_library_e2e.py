"""End to end: references, history, favourites and /admin history.

The real bot against the fake Discord and the fake RunComfy. References are saved from a
result's per-image menu ("Save as reference" and its name form) and used by /imagine's
``references`` option: the request the bot sends (edit model, the references' images as posted
in Discord, the prompt) and the charge, also after a restart; refusals charge nothing. The lists
page with buttons that work after a restart and only for the member they were made for.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cogs.library import apply_references
from services.errors import InvalidInput
from services.jobs import JobSpec
from storage.models import JobKind, JobState
from tests.e2e_harness import StudioEnv, labels, studio_env
from tests.fakes.discord import FakeMember, SentInteraction, StoredMessage
from tests.fakes.discord_models import iter_components
from tests.fakes.runcomfy import RecordedRequest

REMOVED = "A moderator removed this result, so it can't be used again."


@contextlib.asynccontextmanager
async def studio(tmp_path: Path) -> AsyncIterator[tuple[StudioEnv, FakeMember]]:
    """A running studio with plenty of credits and a second plain member."""
    async with studio_env(tmp_path, daily_credits=100) as env:
        other = env.discord.add_member(env.discord.guild, "other")
        log_channel = env.discord.add_text_channel(env.discord.guild, "mod-log")
        async with env.running():
            said = await env.admin("log-channel", {"channel": log_channel})
            assert log_channel.mention in said, said
            env.extra["log"] = log_channel.id  # results delivered from now on get an entry
            yield env, other


async def delivered(env: StudioEnv, prompt: str, **options: Any) -> tuple[StoredMessage, str]:
    sent = await env.imagine(prompt, **options)
    status = await env.acknowledged(sent)
    job_id = env.job_id_of(status)
    job = await env.wait_state(job_id, JobState.DELIVERED)
    count = len(job.result_urls)
    result = await env.wait_message(status.id, lambda m: len(m.attachments) == count)
    return result, job_id


def submits(env: StudioEnv) -> list[RecordedRequest]:
    return [r for r in env.runcomfy.requests if r.endpoint == "submit"]


async def used(env: StudioEnv, user_id: int) -> int:
    assert env.storage is not None
    return (await env.storage.quota.balance(user_id, env.discord.guild.id)).used


async def told(sent: SentInteraction) -> str:
    """An ephemeral answer's text (answered at once, or after a deferral)."""
    await sent.wait_for_callback()
    if sent.callback_type in (5, 6):
        (message,) = await sent.wait_for_followups()
        assert message.ephemeral
        return message.content
    assert sent.ephemeral and sent.callback_data is not None, sent.callback_data
    return str(sent.callback_data["content"])


def text_input(modal: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in iter_components(modal["components"]) if c["type"] == 4]
    return found


async def open_save_form(
    env: StudioEnv, result: StoredMessage, job_id: str, n: int, **who: Any
) -> SentInteraction:
    return await env.discord.select_menu(result, f"studio:img:{job_id}:{n}", ["save"], **who)


async def save(
    env: StudioEnv, result: StoredMessage, job_id: str, n: int, name: str | None, **who: Any
) -> str:
    """Pick "Save as reference" on image ``n`` and send the form (``name`` None: the default)."""
    sent = await open_save_form(env, result, job_id, n, **who)
    await sent.wait_for_callback()
    assert sent.callback_type == 9 and sent.modal is not None, sent.callback_data
    field = text_input(sent.modal)
    values = {} if name is None else {field["custom_id"]: name}
    return await told(await env.discord.submit_modal(sent.modal["custom_id"], values))


async def imagine_with(env: StudioEnv, prompt: str, references: str, **options: Any) -> str:
    """/imagine with references, delivered; returns the job id."""
    sent = await env.imagine(prompt, references=references, **options)
    status = await env.acknowledged(sent)
    job_id = env.job_id_of(status)
    await env.wait_state(job_id, JobState.DELIVERED)
    return job_id


async def refused_imagine(env: StudioEnv, references: str, **options: Any) -> str:
    """/imagine with references that must be refused with nothing sent or charged."""
    member = options.get("user", env.discord.guild.member)
    before, sent_before = await used(env, member.id), len(submits(env))
    text = await told(await env.imagine("refused", references=references, **options))
    assert await used(env, member.id) == before and len(submits(env)) == sent_before
    return text


def attachment_url(result: StoredMessage, job_id: str, n: int) -> str:
    (url,) = [a.url for a in result.attachments if a.filename.startswith(f"{job_id}_{n}.")]
    return url


async def remove_result(env: StudioEnv, result: StoredMessage, job_id: str) -> None:
    """A moderator removes the result from the log entry."""
    guild = env.discord.guild
    entry = await env.log_entry(env.extra["log"], lambda m: job_id in str(m.embeds))
    click = await env.click(entry, "Remove", user=guild.admin)
    await click.wait_for_callback()
    await env.discord.wait_until(lambda: result.id in env.discord.deleted_messages)


# -- references ---------------------------------------------------------------------------------


async def test_references_go_through_the_edit_model_also_after_a_restart(tmp_path: Path) -> None:
    async with studio_env(tmp_path, daily_credits=100) as env:
        member = env.discord.guild.member
        async with env.running():
            result, source = await delivered(env, "a knight in armour", count=2)
            form = await open_save_form(env, result, source, 2)
            await form.wait_for_callback()
            assert text_input(form.modal or {})["value"] == "ref-1"  # the suggested name
            said = await save(env, result, source, 2, "hero")
            assert f"Saved image 2 of job `{source}` as reference `hero`" in said
            assert "ref-1" in await save(env, result, source, 1, None)

            before = await used(env, member.id)
            job_id = await imagine_with(env, "the hero at the beach", "hero")
            request = submits(env)[-1]
            assert request.path.rsplit("/", 1)[-1] == "edit"
            # the image as posted in Discord (a fresh URL), not RunComfy's stored one
            assert request.json["image_urls"] == [attachment_url(result, source, 2)]
            assert request.json["prompt"] == "the hero at the beach"
            job = await env.job(job_id)
            assert job.cost == 1 and await used(env, member.id) == before + 1

        async with env.running():  # a restart: the references are in the database
            before = await used(env, member.id)
            job_id = await imagine_with(env, "both, at night", "ref-1, hero", resolution="2K")
            request = submits(env)[-1]
            assert request.path.rsplit("/", 1)[-1] == "edit"
            assert request.json["image_urls"] == [
                attachment_url(result, source, 1),
                attachment_url(result, source, 2),
            ]
            assert request.json["prompt"] == "both, at night"
            assert request.json["resolution"] == "2K"
            job = await env.job(job_id)
            assert await used(env, member.id) == before + job.cost and job.cost == 2


async def test_saving_is_refused_for_others_removed_results_taken_names_and_a_full_set(
    tmp_path: Path,
) -> None:
    async with studio(tmp_path) as (env, other):
        member = env.discord.guild.member
        result, job_id = await delivered(env, "a lighthouse", count=4)
        # another member's result: refused, before any form
        sent = await open_save_form(env, result, job_id, 1, user=other)
        assert "Only the member who asked" in await told(sent) and sent.modal is None
        for n in range(1, 5):
            await save(env, result, job_id, n, f"light {n}")
        said = await save(env, result, job_id, 1, "LIGHT 1")  # names are case-insensitive
        assert "You already have a reference named `LIGHT 1`" in said
        said = await save(env, result, job_id, 1, "a, b")
        assert "no commas" in said
        third, third_id = await delivered(env, "a shipwreck")
        form = await open_save_form(env, third, third_id, 1)  # opened while it could be saved
        await form.wait_for_callback()
        assert form.modal is not None
        await remove_result(env, third, third_id)
        submit = await env.discord.submit_modal(form.modal["custom_id"], {})
        assert await told(submit) == REMOVED

        second, second_id = await delivered(env, "a harbour", count=4)
        for n in range(1, 5):
            await save(env, second, second_id, n, f"harbour {n}")
        sent = await open_save_form(env, second, second_id, 1)  # the ninth: the set is full
        assert "You already have 8 references" in await told(sent) and sent.modal is None
        assert env.storage is not None
        assert len(await env.storage.library.references(member.id, env.discord.guild.id)) == 8


async def test_a_removed_source_or_an_unknown_name_is_refused_with_nothing_charged(
    tmp_path: Path,
) -> None:
    async with studio(tmp_path) as (env, other):
        result, job_id = await delivered(env, "a red kite")
        await save(env, result, job_id, 1, "kite")
        # the references' images come before those the job already has, up to 20 in all
        guild = env.discord.guild
        asker = SimpleNamespace(
            client=env.bot,
            user=SimpleNamespace(id=guild.member.id),
            guild_id=guild.id,
            channel=None,
        )
        spec = JobSpec(kind=JobKind.IMAGINE, prompt="p", image_urls=("https://x.test/a.png",))
        made = await apply_references(asker, spec, "kite")  # type: ignore[arg-type]
        assert made.kind == JobKind.EDIT and made.prompt == "p"
        assert made.image_urls == (attachment_url(result, job_id, 1), "https://x.test/a.png")
        spec = replace(spec, image_urls=tuple(f"https://x.test/{i}.png" for i in range(20)))
        with pytest.raises(InvalidInput, match="That's 21 images"):
            await apply_references(asker, spec, "kite")  # type: ignore[arg-type]
        said = await refused_imagine(env, "kite, dragon")
        assert "You have no reference named `dragon`" in said and "Nothing was charged" in said
        # another member's set is their own
        said = await refused_imagine(env, "kite", user=other)
        assert "You have no reference named `kite`" in said
        await remove_result(env, result, job_id)
        said = await refused_imagine(env, "kite")
        assert "A moderator removed the result reference `kite` came from" in said


async def test_age_restricted_references_stay_in_age_restricted_channels(tmp_path: Path) -> None:
    async with studio(tmp_path) as (env, _):
        guild = env.discord.guild
        nsfw = guild.nsfw_channel
        result, job_id = await delivered(env, "spicy", count=2, channel_id=nsfw.id)
        await save(env, result, job_id, 1, "spicy")
        said = await refused_imagine(env, "spicy", channel_id=guild.text_channel.id)
        assert "comes from an age-restricted channel" in said
        new_id = await imagine_with(env, "more", "spicy", channel_id=nsfw.id)
        assert submits(env)[-1].json["image_urls"] == [attachment_url(result, job_id, 1)]
        assert (await env.job(new_id)).age_restricted_channel
        # saved from a normal channel: the channel stops being age-restricted
        nsfw.nsfw = False
        await env.discord.dispatch("CHANNEL_UPDATE", nsfw.payload())
        assert env.bot is not None
        bot = env.bot
        await env.discord.wait_until(
            lambda: getattr(bot.get_channel(nsfw.id), "nsfw", None) is False, poll=0.01
        )
        sent = await open_save_form(env, result, job_id, 2)
        assert "age-restricted" in await told(sent) and sent.modal is None
        said = await told(await env.click(result, "Favourite"))  # nor favourited there
        assert "age-restricted" in said
        assert env.storage is not None
        member_id, guild_id = guild.member.id, guild.id
        assert (await env.storage.library.favourites(member_id, guild_id, offset=0, limit=5))[
            1
        ] == 0


async def test_references_list_remove_and_autocomplete(tmp_path: Path) -> None:
    async with studio(tmp_path) as (env, _):
        guild = env.discord.guild
        said = await told(await env.discord.slash_command("references list"))
        assert "You have no references here yet" in said
        result, job_id = await delivered(env, "a cat", count=2)
        await save(env, result, job_id, 1, "tabby")
        await save(env, result, job_id, 2, "tiger")
        said = await told(await env.discord.slash_command("references list"))
        assert "`tabby`" in said and "`tiger`" in said and "(2 of 8)" in said
        link = f"https://discord.com/channels/{guild.id}/{result.channel_id}/{result.id}"
        assert f"image 2 of job `{job_id}`" in said and link in said

        typing = await env.discord.autocomplete(
            "imagine", {"prompt": "x", "references": "tiger, ta"}, focused="references"
        )
        await typing.wait_for_callback()
        assert [c["value"] for c in typing.choices or []] == ["tiger, tabby"]
        typing = await env.discord.autocomplete("references remove", {"name": "t"}, focused="name")
        await typing.wait_for_callback()
        assert [c["value"] for c in typing.choices or []] == ["tabby", "tiger"]

        said = await told(await env.discord.slash_command("references remove", {"name": "TABBY"}))
        assert said == "Removed reference `TABBY`."
        said = await told(await env.discord.slash_command("references remove", {"name": "tabby"}))
        assert said == "You have no reference named `tabby`."
        said = await told(await env.discord.slash_command("references list"))
        assert "tabby" not in said and "`tiger`" in said


# -- history and favourites ---------------------------------------------------------------------


def page_text(message: StoredMessage) -> str:
    return message.content


async def test_history_pages_with_jump_links_also_after_a_restart(tmp_path: Path) -> None:
    async with studio_env(tmp_path, daily_credits=100) as env:
        guild = env.discord.guild
        other = env.discord.add_member(guild, "other")
        async with env.running():
            jobs = [await delivered(env, f"picture number {i}") for i in range(7)]
            await delivered(env, "not mine", user=other)
            sent = await env.discord.slash_command("history")
            page = await sent.wait_for_original()
            assert page.ephemeral and labels(page) == ["Previous", "Next"]
            text = page_text(page)
            assert "page 1 of 2" in text and "7 results" in text
            for result, job_id in jobs[2:]:  # newest first
                link = f"https://discord.com/channels/{guild.id}/{result.channel_id}/{result.id}"
                assert f"`{job_id}`" in text and link in text
            assert text.index("picture number 6") < text.index("picture number 2")
            assert "picture number 1" not in text and "not mine" not in text
            refused = await env.click(page, "Next", user=other)
            assert "belongs to the member who asked for it" in await told(refused)
            click = await env.click(page, "Next")
            await click.wait_for_callback()
            assert click.callback_type == 7
            page = env.discord.message(page.id)
            assert "page 2 of 2" in page.content and "picture number 0" in page.content

        async with env.running():  # a restart: the buttons still turn the page
            click = await env.click(page, "Previous")
            await click.wait_for_callback()
            page = env.discord.message(page.id)
            assert "page 1 of 2" in page.content and "picture number 6" in page.content

            # "Show a result": that result, privately, with its action buttons
            (menu,) = [c for c in iter_components(page.components) if c.get("type") == 3]
            result, job_id = jobs[4]
            shown = await env.discord.select_menu(page, menu["custom_id"], [job_id])
            copy = await shown.wait_for_original(lambda m: bool(m.attachments))
            assert copy.ephemeral and job_id in str(copy.embeds)
            assert {"Re-roll", "Edit", "Favourite"} <= set(labels(copy))
            refused = await env.discord.select_menu(page, menu["custom_id"], [job_id], user=other)
            assert "belongs to the member who asked for it" in await told(refused)


async def test_favourite_toggles_and_favourites_lists_them(tmp_path: Path) -> None:
    async with studio(tmp_path) as (env, other):
        result, job_id = await delivered(env, "a golden retriever")
        second, second_id = await delivered(env, "a poodle")
        said = await told(await env.discord.slash_command("favourites", user=other))
        assert "You have no favourites here yet" in said
        # any member may favourite a result they can see
        assert "Added to your favourites" in await told(
            await env.click(result, "Favourite", user=other)
        )
        assert "Added" in await told(await env.click(second, "Favourite", user=other))
        sent = await env.discord.slash_command("favourites", user=other)
        page = await sent.wait_for_original()
        assert "2 results" in page.content and f"`{job_id}`" in page.content
        assert page.content.index("a poodle") < page.content.index("a golden retriever")
        said = await told(await env.click(result, "Favourite", user=other))
        assert said == "Removed from your favourites."
        sent = await env.discord.slash_command("favourites", user=other)
        page = await sent.wait_for_original()
        assert "1 result" in page.content and job_id not in page.content
        await remove_result(env, second, second_id)  # a removed result leaves the list
        said = await told(await env.discord.slash_command("favourites", user=other))
        assert "You have no favourites here yet" in said


async def test_admin_history_pages_the_servers_results(tmp_path: Path) -> None:
    async with studio(tmp_path) as (env, other):
        guild = env.discord.guild
        mine = await delivered(env, "by the member")
        theirs = await delivered(env, "by the other", user=other)
        sent = await env.discord.slash_command("admin history", user=guild.admin)
        page = await sent.wait_for_original()
        assert "Recent results in this server" in page.content and "2 results" in page.content
        assert f"<@{guild.member.id}>" in page.content and f"<@{other.id}>" in page.content
        assert mine[1] in page.content and theirs[1] in page.content
        sent = await env.discord.slash_command("admin history", {"member": other}, user=guild.admin)
        page = await sent.wait_for_original()
        assert f"Results by <@{other.id}>" in page.content
        assert theirs[1] in page.content and mine[1] not in page.content
        refused = await env.discord.slash_command("admin history")
        assert "Manage Server" in await told(refused)


# -- private results ----------------------------------------------------------------------------


async def private_delivered(env: StudioEnv, prompt: str) -> tuple[StoredMessage, str]:
    """A private result (the server allows them): its ephemeral result message and job id."""
    sent = await env.imagine(prompt, private=True)
    status = await sent.wait_for_original()
    assert status.ephemeral
    job_id = env.job_id_of(status)
    await env.wait_state(job_id, JobState.DELIVERED)
    result = await env.wait_message(status.id, lambda m: len(m.attachments) == 1)
    return result, job_id


def craft_button(message: StoredMessage, custom_id: str) -> None:
    """What a modified client can send: a button the bot never put on this message."""
    button = {"type": 2, "style": 1, "label": "crafted", "custom_id": custom_id}
    message.components.append({"type": 1, "components": [button]})


def show_menu(page: StoredMessage) -> str:
    (menu,) = [c for c in iter_components(page.components) if c.get("type") == 3]
    return str(menu["custom_id"])


async def test_a_private_result_is_seen_and_favourited_only_by_its_requester(
    tmp_path: Path,
) -> None:
    async with studio(tmp_path) as (env, other):
        guild = env.discord.guild
        assert "Members may now ask for private results" in await env.admin(
            "private", {"enabled": True}
        )
        secret, secret_id = await private_delivered(env, "a secret garden")
        public, public_id = await delivered(env, "a public park")
        theirs, theirs_id = await delivered(env, "their own picture", user=other)
        assert env.storage is not None

        # A crafted Favourite naming the private job, on another member's own result: as if
        # there were no such job, and nothing saved.
        craft_button(theirs, f"studio:fav:{secret_id}")
        click = await env.discord.click_button(theirs, f"studio:fav:{secret_id}", user=other)
        assert f"There is no job `{secret_id}`" in await told(click)
        assert not await env.storage.library.is_favourite(other.id, secret_id)

        # "Show a result" on the other member's favourites: a crafted value naming the
        # private job, or a result that isn't one of their favourites, is refused.
        assert "Added" in await told(await env.click(theirs, "Favourite", user=other))
        page = await (await env.discord.slash_command("favourites", user=other)).wait_for_original()
        menu = show_menu(page)
        crafted = await env.discord.select_menu(page, menu, [secret_id], user=other)
        assert f"There is no job `{secret_id}`" in await told(crafted)
        crafted = await env.discord.select_menu(page, menu, [public_id], user=other)
        assert await told(crafted) == "You can only show your own results."
        shown = await env.discord.select_menu(page, menu, [theirs_id], user=other)
        assert (await shown.wait_for_original(lambda m: bool(m.attachments))).ephemeral

        # The requester sees it in /history, without a jump link (its message is ephemeral).
        page = await (await env.discord.slash_command("history")).wait_for_original()
        line = next(x for x in page.content.splitlines() if secret_id in x)
        assert "Jump to the result" not in line and str(secret.id) not in page.content
        assert f"/{public.id})" in page.content  # a public result keeps its link
        shown = await env.discord.select_menu(page, show_menu(page), [secret_id])
        copy = await shown.wait_for_original(lambda m: bool(m.attachments))
        assert copy.ephemeral and secret_id in str(copy.embeds)
        assert "Added" in await told(await env.click(secret, "Favourite"))

        # A moderator sees it in /admin history (no link either) and may show it.
        sent = await env.discord.slash_command("admin history", user=guild.admin)
        page = await sent.wait_for_original()
        assert secret_id in page.content and str(secret.id) not in page.content
        shown = await env.discord.select_menu(page, show_menu(page), [secret_id], user=guild.admin)
        copy = await shown.wait_for_original(lambda m: bool(m.attachments))
        assert copy.ephemeral and secret_id in str(copy.embeds)


async def test_a_private_results_image_cannot_be_saved_as_a_reference(tmp_path: Path) -> None:
    async with studio(tmp_path) as (env, _):
        await env.admin("private", {"enabled": True})
        secret, secret_id = await private_delivered(env, "a secret garden")
        said = await told(await open_save_form(env, secret, secret_id, 1))
        assert said == (
            "A private result's images can't be saved as references. Nothing was saved."
        )
        assert env.storage is not None
        assert await env.storage.library.references(env.discord.guild.member.id, None) == []
        assert (
            await env.storage.library.references(env.discord.guild.member.id, env.discord.guild.id)
            == []
        )
