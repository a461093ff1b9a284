"""Logging: tokens that discord.py puts in webhook URLs never reach the log output."""

from __future__ import annotations

import io
import logging

from bot import RedactTokens


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
