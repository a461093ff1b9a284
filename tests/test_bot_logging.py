"""Logging: tokens (in URLs, gateway events, headers) never reach the log output."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import discord

from bot import RedactTokens, setup_logging
from storage.models import JobState
from tests.e2e_harness import studio_env


def test_interaction_tokens_in_urls_are_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactTokens())
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "PATCH %s has returned 404",
            "https://discord.com/api/v10/webhooks/123/aW50ZXJhY3Rpb246MTIzOnNlY3JldA.x-y_z/messages/@original",
        )
        logger.warning("POST /api/v10/interactions/456/c2VjcmV0LXRva2Vu/callback -> 204")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "aW50ZXJhY3Rpb24" not in output and "c2VjcmV0LXRva2Vu" not in output
    assert "/webhooks/123/<token>/messages/@original" in output
    assert "/interactions/456/<token>/callback" in output


def test_tokens_in_event_dicts_and_auth_headers_are_redacted() -> None:
    redact = RedactTokens(["the-bot-token-123"])
    event = {"t": "INTERACTION_CREATE", "d": {"id": "1", "token": "aW50ZXJhY3Rpb24.secret"}}
    assert "aW50ZXJhY3Rpb24" not in redact.redact(f"WebSocket Event: {event}")
    assert "secret" not in redact.redact('{"token": "secret-json-token"}')
    assert redact.redact("Authorization: Bot abcdefgh.ijk") == "Authorization: Bot <token>"
    assert redact.redact("logged in with the-bot-token-123") == "logged in with <token>"


async def test_at_debug_the_real_bot_logs_no_interaction_or_bot_token(tmp_path: Path) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    try:
        async with studio_env(tmp_path) as env:
            setup_logging(
                "DEBUG",
                secrets=[env.settings.discord_token, env.settings.client.api_token],
                handler=logging.StreamHandler(stream),
            )
            async with env.running():
                sent = await env.imagine("a logged cat")
                status = await env.acknowledged(sent)
                await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
    finally:
        for handler in root.handlers:
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)
    output = stream.getvalue()
    assert "INTERACTION_CREATE" in output  # discord.py did log the event at DEBUG
    assert sent.token not in output
    assert env.settings.discord_token not in output
    assert env.settings.client.api_token not in output


@contextlib.contextmanager
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was (setup_logging changes it for the whole process)."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_logs_are_one_redacted_object_per_line() -> None:
    stream = io.StringIO()
    with root_logging():
        setup_logging(
            "INFO",
            secrets=["the-bot-token-123"],
            handler=logging.StreamHandler(stream),
            log_format="json",
        )
        logger = logging.getLogger("studio.test")
        logger.info("logged in with %s", "the-bot-token-123")
        try:
            raise RuntimeError("boom with the-bot-token-123")
        except RuntimeError:
            logger.warning("it failed", exc_info=True)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert set(first) == {"time", "level", "logger", "message"}
    assert (first["level"], first["logger"]) == ("INFO", "studio.test")
    assert first["message"] == "logged in with <token>"
    assert datetime.fromisoformat(first["time"]).tzinfo is not None
    assert second["message"] == "it failed"
    assert "RuntimeError: boom with <token>" in second["exception"]
    assert "the-bot-token-123" not in stream.getvalue()


def test_colour_only_on_a_terminal() -> None:
    piped, terminal = io.StringIO(), TerminalStream()
    for stream in (piped, terminal):
        with root_logging():
            setup_logging("INFO", handler=logging.StreamHandler(stream))
            logging.getLogger("studio.test").warning("a warning")
    assert "\x1b[" not in piped.getvalue() and "a warning" in piped.getvalue()
    assert "\x1b[" in terminal.getvalue()


def test_the_voice_library_warnings_are_silenced_and_nothing_else() -> None:
    stream = io.StringIO()
    saved = discord.VoiceClient.warn_nacl, discord.VoiceClient.warn_dave
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = True  # as on a fresh start
    try:
        with root_logging():
            setup_logging("INFO", handler=logging.StreamHandler(stream))
            discord.Client(intents=discord.Intents(guilds=True))
            logging.getLogger("discord.client").warning("another warning")
    finally:
        discord.VoiceClient.warn_nacl, discord.VoiceClient.warn_dave = saved
    output = stream.getvalue()
    assert "voice will NOT be supported" not in output
    assert "another warning" in output
