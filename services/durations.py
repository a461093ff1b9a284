"""Ban durations as admins type them: "30m", "2h", "7d", "1h30m" or "2 weeks"."""

from __future__ import annotations

import re
from datetime import timedelta

from services.admin_types import InvalidSetting
from services.wording import UserText

MIN_BAN = timedelta(minutes=1)
MAX_BAN = timedelta(days=365)


_DURATION_UNITS = {
    "s": 1,
    "m": 60,
    "h": 3_600,
    "d": 86_400,
    "w": 604_800,
}
_DURATION_PART = re.compile(r"(\d+)\s*(s|m|h|d|w)", re.IGNORECASE)
_UNIT_ALIASES = (
    (re.compile(r"\b(?:seconds?|secs?)\b", re.I), "s"),
    (re.compile(r"\b(?:minutes?|mins?)\b", re.I), "m"),
    (re.compile(r"\b(?:hours?|hrs?)\b", re.I), "h"),
    (re.compile(r"\bdays?\b", re.I), "d"),
    (re.compile(r"\bweeks?\b", re.I), "w"),
)


def parse_duration(text: str) -> timedelta:
    """Parse "30m", "2h", "7d", "1h30m" or "2 weeks"; InvalidSetting if bad or out of range."""
    cleaned = text.strip()
    for pattern, unit in _UNIT_ALIASES:
        cleaned = pattern.sub(unit, cleaned)
    cleaned = cleaned.replace(" ", "").lower()
    parts = _DURATION_PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise InvalidSetting(
            "duration",
            '"{text}" is not a duration; try 30m, 2h, 7d or 1h30m',
            text=UserText(text[:64]),
        )
    seconds = sum(int(n) * _DURATION_UNITS[u.lower()] for n, u in parts)
    if seconds > MAX_BAN.total_seconds():  # also keeps timedelta from overflowing
        raise InvalidSetting("duration", "must be between 1 minute and 365 days")
    duration = timedelta(seconds=seconds)
    if not MIN_BAN <= duration <= MAX_BAN:
        raise InvalidSetting("duration", "must be between 1 minute and 365 days")
    return duration


__all__ = ["MAX_BAN", "MIN_BAN", "parse_duration"]
