"""Storage settings: where the database lives and how credits are counted.

Environment variables (read by :meth:`QuotaSettings.from_env` and :func:`database_path_from_env`;
the bot's settings module passes its environment in):

- ``DATABASE_PATH``: the SQLite file (default ``data/bot.sqlite3``; its folder is created).
- ``QUOTA_DAILY_CREDITS``: a member's daily allowance where nothing more specific applies
  (default 20).
- ``QUOTA_GLOBAL_DAILY_CREDITS``: credits the whole bot may spend per UTC day (unset or empty:
  no cap).
- ``QUOTA_RESOLUTION_WEIGHTS``: credits per image by resolution, e.g. ``0.5K=1,1K=1,2K=2,4K=4``
  (the default; resolutions left out keep their default weight).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from storage.validate import is_whole

DEFAULT_DATABASE_PATH: Final = Path("data/bot.sqlite3")
DEFAULT_DAILY_CREDITS: Final = 20
DEFAULT_RESOLUTION_WEIGHTS: Final[Mapping[str, int]] = MappingProxyType(
    {"0.5K": 1, "1K": 1, "2K": 2, "4K": 4}
)


@dataclass(frozen=True)
class QuotaSettings:
    default_daily_credits: int = DEFAULT_DAILY_CREDITS
    global_daily_cap: int | None = None  # None: no cap
    resolution_weights: Mapping[str, int] = field(
        default_factory=lambda: DEFAULT_RESOLUTION_WEIGHTS
    )

    def __post_init__(self) -> None:
        if not is_whole(self.default_daily_credits, 0):
            raise ValueError("default_daily_credits: must be a whole number of 0 or more")
        if self.global_daily_cap is not None and not is_whole(self.global_daily_cap, 0):
            raise ValueError("global_daily_cap: must be a whole number of 0 or more, or None")
        weights = dict(DEFAULT_RESOLUTION_WEIGHTS)
        for resolution, weight in self.resolution_weights.items():
            if resolution not in DEFAULT_RESOLUTION_WEIGHTS:
                known = ", ".join(DEFAULT_RESOLUTION_WEIGHTS)
                raise ValueError(f"resolution_weights: unknown resolution {resolution!r} ({known})")
            if not is_whole(weight, 0):
                raise ValueError(f"resolution_weights: {resolution} must be a whole number >= 0")
            weights[resolution] = weight
        # Read-only, so a shared settings object cannot be changed behind the stores' backs.
        object.__setattr__(self, "resolution_weights", MappingProxyType(weights))

    def cost(self, num_images: int, resolution: str) -> int:
        """Credits a job costs: images x the resolution's weight (1K is 1 credit per image)."""
        if not is_whole(num_images, 1):
            raise ValueError(f"num_images: must be a whole number of 1 or more, got {num_images!r}")
        try:
            weight = self.resolution_weights[resolution]
        except KeyError:
            known = ", ".join(self.resolution_weights)
            raise ValueError(f"resolution: must be one of {known}, got {resolution!r}") from None
        return num_images * weight

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QuotaSettings:
        """Read the QUOTA_* variables; ValueError("NAME: problem") if one is malformed."""
        daily = _env_count(env, "QUOTA_DAILY_CREDITS")
        cap = _env_count(env, "QUOTA_GLOBAL_DAILY_CREDITS")
        weights = _env_weights(env, "QUOTA_RESOLUTION_WEIGHTS")
        return cls(
            default_daily_credits=DEFAULT_DAILY_CREDITS if daily is None else daily,
            global_daily_cap=cap,
            resolution_weights=weights,
        )


def database_path_from_env(env: Mapping[str, str]) -> Path:
    raw = (env.get("DATABASE_PATH") or "").strip()
    return Path(raw) if raw else DEFAULT_DATABASE_PATH


def _env_count(env: Mapping[str, str], name: str) -> int | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}: must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name}: must be 0 or more, got {value}")
    return value


def _env_weights(env: Mapping[str, str], name: str) -> Mapping[str, int]:
    raw = (env.get(name) or "").strip()
    weights: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        resolution, sep, weight = item.partition("=")
        resolution = resolution.strip()
        if not sep or resolution not in DEFAULT_RESOLUTION_WEIGHTS:
            known = ", ".join(DEFAULT_RESOLUTION_WEIGHTS)
            raise ValueError(f"{name}: expected RESOLUTION=WEIGHT ({known}), got {item!r}")
        try:
            weights[resolution] = int(weight)
        except ValueError:
            raise ValueError(f"{name}: weight of {resolution} must be a whole number") from None
        if weights[resolution] < 0:
            raise ValueError(f"{name}: weight of {resolution} must be 0 or more")
    return weights
