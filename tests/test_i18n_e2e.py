"""End to end: members read the studio in their own language (issue 13).

The real bot against the fake Discord and fake RunComfy: /imagine, a refusal, /quota and a
result in Korean and in French carry no English word of the bot's own (prompts and the API's
technical values aside), what is posted later speaks the requester's language, moderators read
the server's language, and the synced commands carry localizations for every catalog.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cogs.catalogs import app_commands_of_cogs, code_messages, translatable_command_strings
from cogs.i18n import catalogs, languages
from storage.models import JobState
from tests.e2e_harness import StudioEnv, labels, studio_env
from tests.fakes.discord import SentInteraction, StoredMessage

PROMPT = "a red fox sleeping in the snow, watercolor"
# Shown as the API takes them (option values, brand and format names), in every language.
TECHNICAL = {"auto", "png", "jpeg", "webp", "runcomfy", "discord", "nano", "banana"}
_WORD = re.compile(r"[A-Za-z]{3,}")
_MARKUP = re.compile(r"<(@[!&]?|#|t:)[^>]*>|`[^`]*`")  # mentions, timestamps, code (job ids)


def english_words() -> set[str]:
    words: set[str] = set()
    for message, _ in code_messages():
        for text in message if isinstance(message, tuple) else (message,):
            words |= {w.lower() for w in _WORD.findall(re.sub(r"\{[^}]*\}", "", text))}
    for _, text in translatable_command_strings(app_commands_of_cogs()):
        words |= {w.lower() for w in _WORD.findall(text)}
    return words - TECHNICAL


def own_words(code: str) -> set[str]:
    """Words the language's catalog itself uses (French "image", "Discord"...)."""
    words: set[str] = set()
    for message in catalogs()[code]:
        if not message.id:
            continue  # the header
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        for form in forms:
            words |= {w.lower() for w in _WORD.findall(re.sub(r"\{[^}]*\}", "", form or ""))}
    return words


def english_in(text: str, code: str, *, job_id: str = "") -> set[str]:
    shown = text.replace(PROMPT, " ")
    shown = _MARKUP.sub(" ", shown.replace(job_id, " ") if job_id else shown)
    found = {w.lower() for w in _WORD.findall(shown)}
    return found & (english_words() - own_words(code))


def seen(message: StoredMessage | dict[str, Any]) -> str:
    """Everything a message shows: content, embeds, button labels, select placeholders."""
    if isinstance(message, dict):
        data = message
    else:
        data = {"content": message.content, "embeds": message.embeds}
        data["components"] = message.components
    parts = [data.get("content") or ""]
    for embed in data.get("embeds") or []:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']} {f['value']}" for f in embed.get("fields", [])]
        parts.append((embed.get("footer") or {}).get("text", ""))
    pending = list(data.get("components") or [])
    while pending:
        component = pending.pop()
        parts += [str(component.get("label") or ""), str(component.get("placeholder") or "")]
        pending += component.get("components") or []
    return "\n".join(parts)


async def answered(sent: SentInteraction) -> str:
    await sent.wait_for_callback()
    assert sent.ephemeral, sent.callback_data
    return seen(sent.callback_data or {})


async def run_in(env: StudioEnv, code: str) -> None:
    """/imagine to a result, a refusal and /quota as a member whose Discord speaks ``code``."""
    sent = await env.imagine(PROMPT, locale=code)
    status = await env.acknowledged(sent)
    job_id = next(b["custom_id"] for b in status.buttons()).rsplit(":", 1)[-1]
    assert not english_in(seen(status), code, job_id=job_id), seen(status)
    result = await env.wait_message(status.id, lambda m: bool(m.attachments))
    await env.wait_state(job_id, JobState.DELIVERED)
    assert PROMPT in seen(result)  # the prompt as written: never translated
    assert not english_in(seen(result), code, job_id=job_id), seen(result)
    assert len(labels(result)) >= 3

    refusal = await answered(await env.imagine(PROMPT, safety=6, locale=code))
    assert refusal and not english_in(refusal, code), refusal
    quota = await answered(await env.discord.slash_command("quota", {}, locale=code))
    assert quota and not english_in(quota, code), quota


@pytest.mark.parametrize("code", ["ko", "fr"])
async def test_a_member_reads_the_studio_in_their_language(tmp_path: Path, code: str) -> None:
    async with studio_env(tmp_path) as env, env.running():
        await run_in(env, code)


async def test_english_words_would_be_caught(tmp_path: Path) -> None:
    """The check above can fail: the bot's English sentences are caught, French ones pass."""
    assert english_in("Your 1 credit is back. Nothing was charged.", "fr") >= {"back", "nothing"}
    assert not english_in("Vos crédits sont rendus.", "fr")


async def test_a_result_posted_later_speaks_the_requesters_language(tmp_path: Path) -> None:
    """A token that expired: the result goes to the channel in the requester's language, not
    in the language of whoever is around."""
    async with studio_env(tmp_path) as env, env.running():
        old = datetime.now(UTC) - timedelta(minutes=16)
        sent = await env.imagine(PROMPT, locale="ko", created_at=old)
        await sent.wait_for_callback()
        posted = await env.discord.wait_for_message(
            lambda m: m.origin == "channel" and bool(m.attachments)
        )
        job_id = next(b["custom_id"] for b in posted.buttons()).rsplit(":", 1)[-1]
        assert not english_in(seen(posted), "ko", job_id=job_id), seen(posted)
        assert (await env.job(job_id)).locale == "ko"


async def test_synced_commands_carry_every_languages_localizations(tmp_path: Path) -> None:
    async with studio_env(tmp_path) as env, env.running():
        commands = env.discord.commands(env.discord.guild.id) or env.discord.commands(None)
        assert commands
        codes = set(languages())
        for command in commands:
            where = command["name"]
            assert codes <= set(command.get("name_localizations") or {}), where
            if command.get("type", 1) == 1:
                assert codes <= set(command.get("description_localizations") or {}), where
            pending = list(command.get("options") or [])
            while pending:
                option = pending.pop()
                assert codes <= set(option.get("name_localizations") or {}), option
                assert codes <= set(option.get("description_localizations") or {}), option
                for choice in option.get("choices") or []:
                    if re.search(r"[^\W\d_]{2,}", choice["name"]):  # "4:3" stays as it is
                        assert codes <= set(choice.get("name_localizations") or {}), choice
                pending += option.get("options") or []


async def test_moderators_read_the_servers_language_members_their_own(tmp_path: Path) -> None:
    """A French server: /admin and the moderators' log are French; a Korean member's held job,
    and the notice that a moderator rejected it, are Korean."""
    async with studio_env(tmp_path) as env:
        guild = env.discord.guild
        guild.locale = "fr"  # the server's preferred language, sent when the bot connects
        log_channel = env.discord.add_text_channel(guild, "mod-log")
        async with env.running():
            said = [await env.admin("log-channel", {"channel": log_channel})]
            said.append(await env.admin("approval", {"enabled": True}))
            for text in said:
                assert not english_in(text, "fr"), text
            sent = await env.imagine(PROMPT, locale="ko")
            status = await env.acknowledged(sent)
            job_id = next(b["custom_id"] for b in status.buttons()).rsplit(":", 1)[-1]
            await env.wait_state(job_id, JobState.AWAITING_APPROVAL)
            entry = await env.log_entry(log_channel.id, lambda m: job_id in str(m.embeds))
            before = copy.deepcopy(entry.embeds)
            assert not english_in(seen(entry), "fr", job_id=job_id), seen(entry)
            held = await env.wait_message(status.id, lambda m: job_id in m.content)
            assert not english_in(seen(held), "ko", job_id=job_id), seen(held)

            reject = next(b for b in entry.buttons() if ":reject:" in b["custom_id"])
            click = await env.discord.click_button(entry, reject["custom_id"], user=guild.admin)
            await click.wait_for_callback()
            await env.wait_state(job_id, JobState.REJECTED)
            told = await env.wait_message(status.id, lambda m: "🚫" in m.content)
            assert not english_in(seen(told), "ko", job_id=job_id), seen(told)
            updated = await env.wait_message(entry.id, lambda m: m.embeds != before)
            assert not english_in(seen(updated), "fr", job_id=job_id), seen(updated)
