"""The bot's settings, read from a mapping of environment variables.

Every problem is collected, not just the first, so an operator fixing a ``.env`` sees all of them
at once; ``bot.py`` prints one line per problem and exits non-zero. The RunComfy client's own
settings (``RUNCOMFY_*``) are parsed by ``client.settings`` and reported the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from client.settings import ClientSettings, SettingError, env_int, env_str
from services.image_inputs import DISCORD_CDN_ORIGINS
from storage.settings import DEFAULT_DATABASE_PATH, QuotaSettings, database_path_from_env

T = TypeVar("T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


class SettingsError(Exception):
    """One or more settings are missing or invalid; ``problems`` holds one ``SettingError`` each."""

    def __init__(self, problems: list[SettingError]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class JobTiming:
    """How the job engine paces itself. Tests and the benchmark shrink these."""

    status_interval: float = 3.0  # at most one status edit per job this often (the final always)
    job_timeout: float = 15 * 60.0  # give up waiting for RunComfy after this long
    submit_grace: float = 5.0  # on shutdown, how long an in-progress submit may finish
    parallel_steps: int = 4  # submits in progress at once (the rest queue)
    parallel_deliveries: int = 4  # deliveries (download + upload) in progress at once
    parallel_edits: int = 4  # status-message edits in progress at once
    # Requests first: while interactions arrive faster than yield_burst per yield_window
    # seconds (a burst: 200/s by default), background steps wait, for at most yield_max
    # seconds each. yield_window 0 turns this off.
    yield_window: float = 0.1
    yield_burst: int = 20
    yield_max: float = 1.0
    # Discord wants an answer within 3 s: work before it (policy, reservation) gets this long,
    # then the interaction is deferred and answered when the work is done.
    ack_budget: float = 2.0
    # The same member asking for the same thing on the same result again within this many
    # seconds (a double click on Re-roll, a modal sent twice) is refused: one job, one charge.
    repeat_window: float = 3.0
    # A finished job Discord would not take is tried again after this long (doubling, capped),
    # at most delivery_attempts times per run; it stays COMPLETED for the next start after that.
    delivery_retry: float = 5.0
    delivery_retry_max: float = 300.0
    delivery_attempts: int = 6
    # Several processes on PostgreSQL: a job's lease lasts this long unrenewed (renewed every
    # third of it), so a dead process's jobs are taken over within about this long; jobs another
    # process ended are checked for this often when no signal came (storage.cluster).
    lease_seconds: float = 30.0
    lease_check: float = 1.0


@dataclass(frozen=True, slots=True)
class BotSettings:
    discord_token: str = field(repr=False)
    client: ClientSettings = field(repr=False)
    guild_id: int | None = None  # where --sync / changed commands go while testing; None: global
    database_path: Path = DEFAULT_DATABASE_PATH
    quota: QuotaSettings = field(default_factory=QuotaSettings)
    log_level: str = "INFO"
    log_format: str = "text"  # "json": one JSON object per line, for log collectors
    default_safety: int = 4
    allow_dms: bool = False  # whether /imagine and /edit work in DMs (no guild policy there)
    timing: JobTiming = field(default_factory=JobTiming)
    # Where members' uploads may come from (tests point it at the fake Discord).
    discord_cdn_origins: tuple[str, ...] = DISCORD_CDN_ORIGINS
    metrics_port: int | None = None  # METRICS_PORT: serve /metrics and /healthz; None: off
    metrics_host: str = "127.0.0.1"
    # DATABASE_URL: PostgreSQL (several processes may share it); None: the SQLite file above.
    database_url: str | None = field(default=None, repr=False)  # may hold a password
    shard_count: int | None = None  # SHARD_COUNT: the gateway shards of the whole bot
    shard_ids: tuple[int, ...] | None = None  # SHARD_IDS: this process's; None: all of them

    @property
    def shards(self) -> list[int]:
        """This process's gateway shards (all of them without SHARD_IDS)."""
        return list(self.shard_ids or range(self.shard_count or 1))

    @property
    def lease_owner(self) -> str:
        """This process's name on the jobs it holds: its shards, which no other live process
        on the database has (bot.py refuses a second one), so a restart finds its own jobs."""
        return f"shards {','.join(map(str, self.shards))} of {self.shard_count or 1}"

    @property
    def database_target(self) -> Path | str:
        """What storage opens: the PostgreSQL URL if set, else the SQLite file."""
        return self.database_url or self.database_path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BotSettings:
        """Parse every setting; raise ``SettingsError`` listing each problem found."""
        problems: list[SettingError] = []

        def take(read: Callable[[], T], fallback: T) -> T:
            try:
                return read()
            except SettingError as err:
                problems.append(err)
                return fallback

        token = take(lambda: env_str(env, "DISCORD_TOKEN", required=True), None)
        client = take(lambda: ClientSettings.from_env(env), None)
        guild_id = take(lambda: env_int(env, "DISCORD_GUILD_ID", minimum=1), None)
        database_path = database_path_from_env(env)
        quota = take(lambda: _quota(env), QuotaSettings())
        log_level = take(lambda: _log_level(env), "INFO")
        log_format = take(lambda: _log_format(env), "text")
        default_safety = take(lambda: _safety(env), 4)
        allow_dms = take(lambda: env_bool(env, "ALLOW_DMS", False), False)
        interval = take(lambda: env_int(env, "STATUS_UPDATE_SECONDS", 3, minimum=1), 3)
        timeout = take(lambda: env_int(env, "JOB_TIMEOUT_SECONDS", 900, minimum=30), 900)
        metrics_port = take(lambda: _port(env), None)
        metrics_host = env_str(env, "METRICS_HOST", "127.0.0.1") or "127.0.0.1"
        database_url = take(lambda: _database_url(env), None)
        shard_count, shard_ids = take(lambda: _shards(env, database_url), (None, None))

        if problems:
            raise SettingsError(problems)
        assert token is not None and client is not None
        return cls(
            discord_token=token,
            client=client,
            guild_id=guild_id,
            database_path=database_path,
            quota=quota,
            log_level=log_level,
            log_format=log_format,
            default_safety=default_safety,
            allow_dms=allow_dms,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            database_url=database_url,
            shard_count=shard_count,
            shard_ids=shard_ids,
            timing=JobTiming(
                status_interval=float(interval or 3), job_timeout=float(timeout or 900)
            ),
        )


def _database_url(env: Mapping[str, str]) -> str | None:
    raw = (env.get("DATABASE_URL") or "").strip()
    if not raw:
        return None
    if not raw.startswith(("postgresql://", "postgres://")):
        raise SettingError("DATABASE_URL", "must be a postgresql:// URL (unset: SQLite)")
    return raw


def _shards(
    env: Mapping[str, str], database_url: str | None
) -> tuple[int | None, tuple[int, ...] | None]:
    """SHARD_COUNT and SHARD_IDS: this process's slice of the gateway shards."""
    count = env_int(env, "SHARD_COUNT", minimum=1)
    raw = (env.get("SHARD_IDS") or "").strip()
    if not raw:
        return count, None
    if count is None:
        raise SettingError("SHARD_IDS", "needs SHARD_COUNT, the shards of the whole bot")
    if database_url is None:
        raise SettingError("SHARD_IDS", "needs DATABASE_URL: several processes share PostgreSQL")
    try:
        ids = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        raise SettingError("SHARD_IDS", f"must be shard numbers like 0,1, got {raw!r}") from None
    if not ids or ids[0] < 0 or ids[-1] >= count:
        raise SettingError("SHARD_IDS", f"each must be from 0 to {count - 1} (SHARD_COUNT - 1)")
    return count, ids


def _quota(env: Mapping[str, str]) -> QuotaSettings:
    try:
        return QuotaSettings.from_env(env)
    except ValueError as err:  # storage's own parser says "NAME: problem"
        name, _, problem = str(err).partition(": ")
        raise SettingError(name, problem or str(err)) from None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env_str(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SettingError(name, f"must be true or false, got {raw!r}")


def _log_level(env: Mapping[str, str]) -> str:
    level = (env_str(env, "LOG_LEVEL", "INFO") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise SettingError("LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _log_format(env: Mapping[str, str]) -> str:
    value = (env_str(env, "LOG_FORMAT", "text") or "text").lower()
    if value not in LOG_FORMATS:
        raise SettingError("LOG_FORMAT", f"must be one of {', '.join(LOG_FORMATS)}")
    return value


def _port(env: Mapping[str, str]) -> int | None:
    value = env_int(env, "METRICS_PORT", None, minimum=1)
    if value is not None and value > 65535:
        raise SettingError("METRICS_PORT", "must be a port number from 1 to 65535")
    return value


def _safety(env: Mapping[str, str]) -> int:
    value = env_int(env, "DEFAULT_SAFETY", 4, minimum=1)
    if value is None or value > 6:
        raise SettingError("DEFAULT_SAFETY", "must be a whole number from 1 to 6")
    return value


def log_level_number(name: str) -> int:
    return logging.getLevelNamesMapping()[name]
