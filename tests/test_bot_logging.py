"""Logging: tokens (in URLs, gateway events, headers) never reach the log output."""

from __future__ import annotations

import io
import logging
from pathlib import Path

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
