"""Argument checks shared by the stores: each raises InvalidSettingError naming the field.

One place for "a whole number", "a Discord id", "text", "an aware time", so every store refuses
the same things with the same words (``bool`` is not accepted as a number anywhere).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.clock import as_utc
from storage.models import InvalidSettingError


def is_whole(value: object, minimum: int | None = None) -> bool:
    """An ``int`` (not a ``bool``), at least ``minimum`` if given."""
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return minimum is None or value >= minimum


def whole(name: str, value: Any, low: int, high: int | None = None) -> int:
    if not is_whole(value, low) or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of {low} or more"
        raise InvalidSettingError(name, f"must be a whole number {span}, got {value!r}")
    return value


def snowflake(name: str, value: Any) -> int:
    """A Discord id: a positive whole number."""
    if not is_whole(value, 1):
        raise InvalidSettingError(
            name, f"must be a Discord id (positive whole number), got {value!r}"
        )
    return value


def opt_snowflake(name: str, value: Any) -> int | None:
    return None if value is None else snowflake(name, value)


def opt_text(name: str, value: Any) -> str | None:
    # The value itself is never echoed: it may be a secret (the interaction token).
    if value is not None and not isinstance(value, str):
        raise InvalidSettingError(name, f"must be text or None, got {type(value).__name__}")
    return value


def opt_aware_time(name: str, value: Any) -> datetime | None:
    """None, or the same instant in UTC; a naive datetime is refused (its zone is a guess)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidSettingError(name, "must be a datetime or None")
    try:
        return as_utc(value, name=name)
    except ValueError as exc:
        raise InvalidSettingError(name, "must be timezone-aware") from exc


def aware_time(name: str, value: Any) -> datetime:
    result = opt_aware_time(name, value)
    if result is None:
        raise InvalidSettingError(name, "must be a datetime")
    return result
