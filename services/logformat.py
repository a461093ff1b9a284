"""How log lines look: one JSON object per line for collectors, and start-up noise left out."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from services.redact import RedactTokens

# discord.py warns about these on every start; the bot never joins voice channels.
VOICE_WARNINGS = (
    "PyNaCl is not installed, voice will NOT be supported",
    "davey is not installed, voice will NOT be supported",
)
VOICE_LOGGER = "discord.client"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"[, "exception"]}``, one object per line.

    The handler's ``RedactTokens`` has already cleaned the message; the exception text is
    formatted here, after the filters ran, so it is cleaned here too.
    """

    def __init__(self, redact: RedactTokens) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self._redact.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self._redact.redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self._redact.redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


class DropVoiceWarnings(logging.Filter):
    """Drops exactly discord.py's "voice will NOT be supported" warnings, nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in VOICE_WARNINGS


def silence_voice_warnings() -> None:
    """Install the filter once on discord.py's client logger (a logger filter sees only the
    records logged there, which is where the warnings come from)."""
    logger = logging.getLogger(VOICE_LOGGER)
    if not any(isinstance(f, DropVoiceWarnings) for f in logger.filters):
        logger.addFilter(DropVoiceWarnings())
