"""A catalogue of hostile and forged input, end to end through the real bot and discord.py.

Each case does one thing a hostile member, a forged client or a broken Discord payload could do.
Every case must get a clear ephemeral answer (no "Something went wrong", no internals), send
nothing to RunComfy, charge nothing (the member's ledger is unchanged), log no error, and leave
the bot serving the next normal /imagine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storage.models import JobKind, JobState, NewJob
from tests.e2e_harness import StudioEnv, button_id, studio_env
from tests.fakes.discord import SentInteraction, StoredMessage, png_bytes
from tests.fakes.discord_models import iter_components

HTML = b"<!doctype html><html><body>not a picture</body></html>"
ZIP = b"PK\x03\x04" + b"\x00" * 60
GIF = b"GIF89a" + b"\x00" * 60
INVISIBLE = "The prompt has no visible text"
NOT_AN_IMAGE = "isn't really a PNG, JPEG or WebP image"
NOT_DISCORD = "isn't a file uploaded to Discord"
OUT_OF_DATE = "out of date in your Discord client"
UNKNOWN_BUTTON = "This button isn't one the studio knows"
FORM_CLOSED = "This form is closed"
FOREIGN = "isn't a member here"


@dataclass(frozen=True)
class Case:
    name: str
    act: Callable[[StudioEnv], Awaitable[SentInteraction]]
    says: str  # part of the answer the member must see
    needs_result: bool = False  # act on a posted result (made first, by the same member)


def options_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return payload["data"]["options"]


def set_option(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        for option in options_of(payload):
            if option["name"] == name:
                option["value"] = value
                return
        raise AssertionError(f"no option {name}")

    return mutate


def imagine(prompt: str, **options: Any) -> Callable[[StudioEnv], Awaitable[SentInteraction]]:
    async def act(env: StudioEnv) -> SentInteraction:
        return await env.imagine(prompt, **options)

    return act


def forged_imagine(
    mutate: Callable[[dict[str, Any]], None], **options: Any
) -> Callable[[StudioEnv], Awaitable[SentInteraction]]:
    async def act(env: StudioEnv) -> SentInteraction:
        with env.discord.forging(mutate):
            return await env.imagine("a quiet harbour", **options)

    return act


def edit_with(
    *files: tuple[bytes | None, dict[str, Any]],
    mutate: Callable[[dict[str, Any]], None] | None = None,
) -> Callable[[StudioEnv], Awaitable[SentInteraction]]:
    """/edit with attachments made from (bytes, make_attachment options)."""

    async def act(env: StudioEnv) -> SentInteraction:
        names = ["image", "image2", "image3", "image4"]
        given = {
            names[i]: env.discord.make_attachment(data, **opts)
            for i, (data, opts) in enumerate(files)
        }
        if not mutate:
            return await env.discord.slash_command("edit", {"prompt": "make it blue", **given})
        with env.discord.forging(mutate):
            return await env.discord.slash_command("edit", {"prompt": "make it blue", **given})

    return act


def expired_edit() -> Callable[[StudioEnv], Awaitable[SentInteraction]]:
    async def act(env: StudioEnv) -> SentInteraction:
        picture = env.discord.make_attachment(png_bytes(), "old.png")
        env.discord.expire_attachment(picture)
        return await env.discord.slash_command("edit", {"prompt": "blue", "image": picture})

    return act


def drop_resolved(payload: dict[str, Any]) -> None:
    payload["data"]["resolved"]["attachments"].clear()


def forged_click(
    mutate: Callable[[dict[str, Any]], None], label: str = "Re-roll"
) -> Callable[[StudioEnv], Awaitable[SentInteraction]]:
    """Click a real button of the member's result, the payload changed on the way."""

    async def act(env: StudioEnv) -> SentInteraction:
        result = env.extra["result"]
        with env.discord.forging(mutate):
            return await env.click(result, label)

    return act


def custom_id(value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        payload["data"]["custom_id"] = value

    return mutate


def menu_then_submit(
    message: Callable[[StudioEnv], Awaitable[StoredMessage]], prompt: str
) -> Callable[[StudioEnv], Awaitable[SentInteraction]]:
    """The "Edit image" menu on a message, then its form sent with ``prompt``."""

    async def act(env: StudioEnv) -> SentInteraction:
        target = await message(env)
        menu = await env.discord.message_context_menu("Edit image", target)
        await menu.wait_for_callback()
        if menu.modal is None:
            return menu
        (field,) = [
            c["custom_id"] for c in iter_components(menu.modal["components"]) if c["type"] == 4
        ]
        return await env.discord.submit_modal(menu.modal["custom_id"], {field: prompt})

    return act


def member_post(*files: tuple[bytes, dict[str, Any]], embeds: list[dict[str, Any]] | None = None):
    async def post(env: StudioEnv) -> StoredMessage:
        guild = env.discord.guild
        attachments = [env.discord.make_attachment(data, **opts) for data, opts in files]
        return await env.discord.post_user_message(
            guild.text_channel, guild.owner, "my art", attachments=attachments, embeds=embeds or []
        )

    return post


def unknown_form(
    form_id: str, value: Any = "a prompt"
) -> Callable[[StudioEnv], Awaitable[SentInteraction]]:
    async def act(env: StudioEnv) -> SentInteraction:
        return await env.discord.submit_modal(form_id, {"prompt": value})

    return act


def foreign_server(payload: dict[str, Any]) -> None:
    """The interaction comes from a server the bot is not in (its command found all the same)."""
    payload["guild_id"] = payload["guild"]["id"] = "1234567890123456789"


def forged_command(
    name: str, mutate: Callable[[dict[str, Any]], None]
) -> Callable[[StudioEnv], Awaitable[SentInteraction]]:
    async def act(env: StudioEnv) -> SentInteraction:
        with env.discord.forging(mutate):
            return await env.discord.slash_command(name, {})

    return act


def remove_key(*path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        target = payload
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def set_data(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        payload["data"][key] = value

    return mutate


def add_option(option: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        options_of(payload).append(option)

    return mutate


PNG_OPTS: dict[str, Any] = {"filename": "ok.png"}

CASES = [
    # -- prompts that carry no text ----------------------------------------------------------
    Case("spaces", imagine("     "), INVISIBLE),
    Case("zero-width spaces", imagine("\u200b\u200b\u200b"), INVISIBLE),
    Case("NUL bytes", imagine("\x00\x00\x00"), INVISIBLE),
    Case("bidi controls", imagine("\u202e\u202d\u2066\u2069"), INVISIBLE),
    Case("byte-order marks", imagine("\ufeff\ufeff"), INVISIBLE),
    Case("word joiners", imagine("\u2060\u2060"), INVISIBLE),
    Case("Hangul fillers", imagine("\u3164\u3164\u3164"), INVISIBLE),
    Case("braille blanks", imagine("\u2800\u2800"), INVISIBLE),
    Case("lone combining marks", imagine("\u0301\u0302\u0303"), INVISIBLE),
    Case("newlines and tabs", imagine("\n\n\t\n"), INVISIBLE),
    Case("a mix of invisibles", imagine("\u200b \x00 \u202e \n\u3164"), INVISIBLE),
    Case("4,001 zero-width characters", imagine("\u200b" * 4000), INVISIBLE),
    Case("a lone surrogate", forged_imagine(set_option("prompt", "\ud800")), INVISIBLE),
    Case("an empty prompt", forged_imagine(set_option("prompt", "")), INVISIBLE),
    Case("a prompt over 4,000", forged_imagine(set_option("prompt", "x" * 4001)), "limit is 4,000"),
    # -- prompts and options of the wrong type -------------------------------------------------
    Case("prompt as a number", forged_imagine(set_option("prompt", 123)), "`prompt` must be text"),
    Case("prompt as null", forged_imagine(set_option("prompt", None)), "`prompt` must be text"),
    Case("prompt as a list", forged_imagine(set_option("prompt", ["a"])), "`prompt` must be text"),
    Case("prompt as an object", forged_imagine(set_option("prompt", {"a": 1})), "must be text"),
    Case("prompt as true", forged_imagine(set_option("prompt", True)), "`prompt` must be text"),
    Case("count 0", forged_imagine(set_option("count", 0), count=1), "count"),
    Case("count 99", forged_imagine(set_option("count", 99), count=1), "count"),
    Case("count -1", forged_imagine(set_option("count", -1), count=1), "count"),
    Case("count as text", forged_imagine(set_option("count", "2"), count=1), "whole number"),
    Case("count 2.5", forged_imagine(set_option("count", 2.5), count=1), "whole number"),
    Case("count as true", forged_imagine(set_option("count", True), count=1), "whole number"),
    Case("seed -1", forged_imagine(set_option("seed", -1), seed=1), "seed"),
    Case("seed 2**63", forged_imagine(set_option("seed", 2**63), seed=1), "seed"),
    Case("seed as text", forged_imagine(set_option("seed", "abc"), seed=1), "whole number"),
    Case(
        "aspect ratio 99:1",
        forged_imagine(set_option("aspect_ratio", "99:1"), aspect_ratio="1:1"),
        "isn't one the command offers",
    ),
    Case(
        "aspect ratio as a number",
        forged_imagine(set_option("aspect_ratio", 5), aspect_ratio="1:1"),
        "must be text",
    ),
    Case(
        "resolution 8K",
        forged_imagine(set_option("resolution", "8K"), resolution="1K"),
        "isn't one the command offers",
    ),
    Case(
        "format gif",
        forged_imagine(set_option("format", "gif"), format="png"),
        "isn't one the command offers",
    ),
    Case(
        "safety 0",
        forged_imagine(set_option("safety", 0), safety=2),
        "isn't one the command offers",
    ),
    Case(
        "safety 7",
        forged_imagine(set_option("safety", 7), safety=2),
        "isn't one the command offers",
    ),
    Case("safety as text", forged_imagine(set_option("safety", "6"), safety=2), "whole number"),
    Case(
        "web_search as text",
        forged_imagine(set_option("web_search", "yes"), web_search=True),
        "true or false",
    ),
    Case(
        "an unknown option",
        forged_imagine(add_option({"name": "evil", "type": 3, "value": "x"})),
        OUT_OF_DATE,
    ),
    Case(
        "an option of another type",
        forged_imagine(add_option({"name": "count", "type": 3, "value": "2"})),
        OUT_OF_DATE,
    ),
    Case("options as an object", forged_imagine(set_data("options", {"prompt": "x"})), OUT_OF_DATE),
    Case(
        "an option without a name",
        forged_imagine(add_option({"type": 3, "value": "x"})),
        OUT_OF_DATE,
    ),
    Case("an option that is a string", forged_imagine(add_option("prompt")), OUT_OF_DATE),
    Case("no command name", forged_imagine(remove_key("data", "name")), OUT_OF_DATE),
    # -- attachments ---------------------------------------------------------------------------
    Case(
        "HTML labelled image/png",
        edit_with((HTML, {"filename": "a.png", "content_type": "image/png"})),
        NOT_AN_IMAGE,
    ),
    Case(
        "a ZIP labelled image/png",
        edit_with((ZIP, {"filename": "a.png", "content_type": "image/png"})),
        NOT_AN_IMAGE,
    ),
    Case(
        "a GIF labelled image/png",
        edit_with((GIF, {"filename": "a.png", "content_type": "image/png"})),
        NOT_AN_IMAGE,
    ),
    Case(
        "a zero-byte file",
        edit_with((b"", {"filename": "a.png", "content_type": "image/png"})),
        "empty file",
    ),
    Case(
        "a text file",
        edit_with((b"hello", {"filename": "a.txt", "content_type": "text/plain"})),
        "is not a PNG, JPEG or WebP",
    ),
    Case(
        "a declared 60 MiB",
        edit_with((png_bytes(), {"filename": "a.png", "size": 60 * 2**20})),
        "MiB",
    ),
    Case(
        "a URL not on Discord",
        edit_with(
            (
                None,
                {
                    "filename": "a.png",
                    "content_type": "image/png",
                    "size": 100,
                    "url": "https://evil.example/a.png",
                },
            )
        ),
        NOT_DISCORD,
    ),
    Case(
        "a URL with a host trick",
        edit_with(
            (
                None,
                {
                    "filename": "a.png",
                    "content_type": "image/png",
                    "size": 100,
                    "url": "https://cdn.discordapp.com@evil.example/a.png",
                },
            )
        ),
        NOT_DISCORD,
    ),
    Case(
        "a second image that is HTML",
        edit_with(
            (png_bytes(), PNG_OPTS), (HTML, {"filename": "b.png", "content_type": "image/png"})
        ),
        "`image2`",
    ),
    Case("an expired attachment", expired_edit(), "couldn't be read"),
    Case(
        "an attachment missing from resolved",
        edit_with((png_bytes(), PNG_OPTS), mutate=drop_resolved),
        "`image` must be a file",
    ),
    Case(
        "an attachment id that is not a number",
        edit_with((png_bytes(), PNG_OPTS), mutate=set_option("image", "abc")),
        "`image` must be a file",
    ),
    # -- the "Edit image" menu and its form ----------------------------------------------------
    Case(
        "menu on HTML labelled image/png",
        menu_then_submit(
            member_post((HTML, {"filename": "a.png", "content_type": "image/png"})), "blue"
        ),
        "`image 1`",
    ),
    Case(
        "menu on an outside embed image",
        menu_then_submit(
            member_post(embeds=[{"image": {"url": "https://evil.example/x.png"}}]), "blue"
        ),
        "no PNG, JPEG or WebP images",
    ),
    Case(
        "menu form with an invisible prompt",
        menu_then_submit(member_post((png_bytes(), PNG_OPTS)), "\u200b\u200b"),
        INVISIBLE,
    ),
    Case(
        "menu form with NULs",
        menu_then_submit(member_post((png_bytes(), PNG_OPTS)), "\x00\x00"),
        INVISIBLE,
    ),
    Case(
        "a form the bot never opened", unknown_form("studio:prompt:deadbeefdeadbeef"), FORM_CLOSED
    ),
    Case("a form id of another bot", unknown_form("something-else"), FORM_CLOSED),
    # -- buttons -------------------------------------------------------------------------------
    Case(
        "an unknown action",
        forged_click(custom_id("studio:explode:abc")),
        UNKNOWN_BUTTON,
        needs_result=True,
    ),
    Case(
        "an over-long custom_id",
        forged_click(custom_id("studio:reroll:" + "x" * 200)),
        UNKNOWN_BUTTON,
        needs_result=True,
    ),
    Case(
        "a foreign custom_id", forged_click(custom_id("hello")), UNKNOWN_BUTTON, needs_result=True
    ),
    Case("an empty custom_id", forged_click(custom_id("")), UNKNOWN_BUTTON, needs_result=True),
    Case(
        "a button of another message",
        forged_click(custom_id("studio:cancel:AAAAAAAAAA")),
        UNKNOWN_BUTTON,
        needs_result=True,
    ),
    Case(
        "a moderator's button on a result",
        forged_click(
            lambda p: p["data"].update(
                custom_id="modlog:approve:" + p["data"]["custom_id"].split(":")[2]
            )
        ),
        UNKNOWN_BUTTON,
        needs_result=True,
    ),
    Case(
        "a click without its message",
        forged_click(remove_key("message")),
        UNKNOWN_BUTTON,
        needs_result=True,
    ),
    Case(
        "a click as a select menu",
        forged_click(lambda p: p["data"].update(component_type=3, values=["x"])),
        UNKNOWN_BUTTON,
        needs_result=True,
    ),
    # -- where the interaction comes from ------------------------------------------------------
    Case("/imagine from a server the bot isn't in", forged_imagine(foreign_server), FOREIGN),
    Case("/quota from a server the bot isn't in", forged_command("quota", foreign_server), FOREIGN),
    Case("Re-roll from a server the bot isn't in", forged_click(foreign_server), FOREIGN, True),
    Case(
        "Delete from a server the bot isn't in",
        forged_click(foreign_server, "Delete"),
        FOREIGN,
        True,
    ),
]


async def reply_of(sent: SentInteraction) -> str:
    callback = await sent.wait_for_callback()
    body = callback.json
    if body["type"] == 4:
        assert sent.ephemeral, f"a public answer: {body}"
        return str(body["data"]["content"])
    assert body["type"] == 5, body  # deferred first: the answer is an ephemeral followup
    (followup,) = await sent.wait_for_followups(lambda found: len(found) >= 1)
    assert followup.ephemeral
    return followup.content


async def charged(env: StudioEnv, user_id: int) -> int:
    assert env.storage is not None
    return len(await env.storage.quota.ledger(user_id, env.discord.guild.id))


async def make_result(env: StudioEnv) -> StoredMessage:
    sent = await env.imagine("a lighthouse at dusk")
    status = await env.acknowledged(sent)
    await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
    return await env.wait_message(status.id, lambda m: bool(m.attachments))


def test_the_catalogue_is_large_and_named_once() -> None:
    names = [case.name for case in CASES]
    assert len(names) >= 60 and len(set(names)) == len(names)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_hostile_input_is_refused_clearly_and_costs_nothing(
    tmp_path: Path, case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with studio_env(tmp_path) as env, env.running():
        member = env.discord.guild.member
        if case.needs_result:
            env.extra["result"] = await make_result(env)
        submits = env.runcomfy.count("submit")
        entries = await charged(env, member.id)

        text = await reply_of(await case.act(env))

        assert case.says in text, text
        for internal in ("Something went wrong", "Traceback", "Error(", "<", "127.0.0.1"):
            assert internal not in text, text
        assert env.runcomfy.count("submit") == submits  # nothing reached RunComfy
        assert await charged(env, member.id) == entries  # nothing in the ledger
        assert env.storage is not None and await env.storage.quota.audit() == []
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]

        # ... and the studio still serves the next member normally
        after = await make_result(env)
        assert after.attachments and button_id(after, "Re-roll")


@pytest.mark.parametrize("times", [2, 5])
async def test_a_form_sent_several_times_makes_one_job_and_one_charge(
    tmp_path: Path, times: int
) -> None:
    async with studio_env(tmp_path) as env, env.running():
        member = env.discord.guild.member
        target = await member_post((png_bytes(), PNG_OPTS))(env)
        menu = await env.discord.message_context_menu("Edit image", target, user=member)
        await menu.wait_for_callback()
        assert menu.modal is not None
        form_id = menu.modal["custom_id"]
        (field,) = [
            c["custom_id"] for c in iter_components(menu.modal["components"]) if c["type"] == 4
        ]
        sends = await asyncio.gather(
            *(env.discord.submit_modal(form_id, {field: "paint it gold"}) for _ in range(times))
        )
        answers = [await s.wait_for_callback() for s in sends]
        started = [s for s, a in zip(sends, answers, strict=True) if not s.ephemeral]
        assert len(started) == 1, [a.json for a in answers]
        (status,) = [await env.acknowledged(s) for s in started]
        await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
        refused = [s.callback_data["content"] for s in sends if s.ephemeral]
        assert len(refused) == times - 1
        assert all("already sent" in text or FORM_CLOSED in text for text in refused), refused
        assert env.runcomfy.count("submit") == 1
        reserves = [e for e in await env.storage.quota.ledger(member.id, env.discord.guild.id)]
        assert [e.kind.value for e in reserves].count("reserve") == 1
        # and again, after the first submit was handled
        again = await env.discord.submit_modal(form_id, {field: "paint it gold"})
        assert FORM_CLOSED in await reply_of(again)
        assert env.runcomfy.count("submit") == 1


async def test_a_job_whose_answer_never_reached_discord_is_refunded_at_the_next_start(
    tmp_path: Path,
) -> None:
    async with studio_env(tmp_path) as env:
        member = env.discord.guild.member
        async with env.running():
            assert env.storage is not None
            # The bot died after holding the credits, before the interaction was answered:
            # what it leaves is the reserved row alone (as ``create_reserved`` writes it).
            lost = await env.storage.jobs.create_reserved(
                NewJob(
                    kind=JobKind.IMAGINE,
                    user_id=member.id,
                    guild_id=env.discord.guild.id,
                    channel_id=env.discord.guild.text_channel.id,
                    prompt="never seen",
                    params={"num_images": 1, "seed": 1, "resolution": "1K"},
                    cost=1,
                )
            )
            shown = await make_result(env)  # a normal job in the same life
        before = len(env.discord.messages)
        async with env.running():
            job = await env.wait_state(lost.id, JobState.FAILED)
            assert job.error is not None and "never started" in job.error
            assert env.runcomfy.count("submit") == 1  # only the answered job, never this one
            assert (await env.storage.quota.balance(member.id, env.discord.guild.id)).used == 1
            assert await env.storage.quota.audit() == []
            assert len(env.discord.messages) == before  # nothing posted about it
            assert shown.attachments
