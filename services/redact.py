"""Secrets kept out of the logs, whatever logged them."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence


class RedactTokens(logging.Filter):
    """Hide secrets in log lines, whatever logged them (discord.py logs a lot at DEBUG).

    - interaction/webhook tokens in URLs (``/webhooks/<app>/<token>``, ``/interactions/...``);
    - ``'token': '...'`` / ``"token": "..."`` (and ``*_token``, ``authorization``) in the dict
      reprs of gateway events, which carry every interaction's token;
    - ``Authorization: Bot ...`` / ``Bearer ...`` headers;
    - the given ``secrets`` verbatim (the bot token, the RunComfy API token).
    """

    _TOKEN_IN_URL = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._\-]+")
    _TOKEN_IN_DICT = re.compile(
        r"""(['"](?:[a-z_]*token|authorization)['"]\s*:\s*)(['"])(?:(?!\2).)+\2""",
        re.IGNORECASE,
    )
    _AUTH_HEADER = re.compile(r"\b(Bot|Bearer)\s+[A-Za-z0-9._\-]{8,}")

    def __init__(self, secrets: Sequence[str | None] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s and len(s) >= 8]

    def redact(self, text: str) -> str:
        text = self._TOKEN_IN_URL.sub(r"\1<token>", text)
        text = self._TOKEN_IN_DICT.sub(r"\1\2<token>\2", text)
        text = self._AUTH_HEADER.sub(r"\1 <token>", text)
        for secret in self._secrets:
            text = text.replace(secret, "<token>")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
