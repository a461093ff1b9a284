"""UTC time helpers: how the storage layer writes, reads and buckets times.

Times are stored as ISO-8601 text in UTC with a fixed width (microseconds, ``+00:00``), so text
order is time order and a human reading the file sees real dates. Quota days are UTC dates.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime, *, name: str = "time") -> datetime:
    """``value`` in UTC; a naive datetime is refused (its zone would be a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: must be timezone-aware, got a naive datetime")
    return value.astimezone(UTC)


def to_db(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="microseconds")


def to_db_opt(value: datetime | None) -> str | None:
    return None if value is None else to_db(value)


def from_db(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    # We always write +00:00, which parses to UTC itself; convert anything else.
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def from_db_opt(text: str | None) -> datetime | None:
    return None if text is None else from_db(text)


def quota_day(moment: datetime) -> str:
    """The UTC day a moment counts against, as stored ('2025-01-31')."""
    return as_utc(moment).date().isoformat()


def next_midnight(moment: datetime) -> datetime:
    """When the UTC day containing ``moment`` ends: the next daily reset."""
    day: date = as_utc(moment).date() + timedelta(days=1)
    return datetime.combine(day, time(0), tzinfo=UTC)
