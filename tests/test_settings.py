"""The bot's settings: every problem reported, one line each; python bot.py exits cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.settings import BotSettings, SettingsError

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {"DISCORD_TOKEN": "discord-secret", "RUNCOMFY_API_TOKEN": "runcomfy-secret"}


def test_minimal_settings_get_the_documented_defaults() -> None:
    settings = BotSettings.from_env(MINIMAL)
    assert settings.discord_token == "discord-secret"
    assert settings.client.api_token == "runcomfy-secret"
    assert settings.client.api_base == "https://model-api.runcomfy.net"
    assert settings.guild_id is None
    assert settings.database_path == Path("data/bot.sqlite3")
    assert settings.quota.default_daily_credits == 20
    assert settings.quota.global_daily_cap is None
    assert settings.quota.cost(1, "1K") == 1  # a default /imagine costs one credit
    assert settings.log_level == "INFO"
    assert settings.allow_dms is False
    assert settings.timing.status_interval == 3.0


def test_every_setting_is_read() -> None:
    env = {
        **MINIMAL,
        "DISCORD_GUILD_ID": "123456789012345678",
        "DATABASE_PATH": "/tmp/studio/db.sqlite3",
        "QUOTA_DAILY_CREDITS": "50",
        "QUOTA_GLOBAL_DAILY_CREDITS": "1000",
        "QUOTA_RESOLUTION_WEIGHTS": "2K=3,4K=8",
        "LOG_LEVEL": "debug",
        "DEFAULT_SAFETY": "2",
        "ALLOW_DMS": "yes",
        "STATUS_UPDATE_SECONDS": "5",
        "JOB_TIMEOUT_SECONDS": "600",
        "RUNCOMFY_API_BASE": "http://127.0.0.1:8765",
    }
    settings = BotSettings.from_env(env)
    assert settings.guild_id == 123456789012345678
    assert settings.database_path == Path("/tmp/studio/db.sqlite3")
    assert settings.quota.default_daily_credits == 50
    assert settings.quota.global_daily_cap == 1000
    assert settings.quota.cost(2, "4K") == 16 and settings.quota.cost(1, "1K") == 1
    assert settings.log_level == "DEBUG"
    assert settings.default_safety == 2
    assert settings.allow_dms is True
    assert settings.timing.status_interval == 5.0 and settings.timing.job_timeout == 600.0
    assert settings.client.api_base == "http://127.0.0.1:8765"


def test_all_problems_are_reported_together() -> None:
    env = {
        "DISCORD_GUILD_ID": "not-a-number",
        "QUOTA_DAILY_CREDITS": "-1",
        "LOG_LEVEL": "LOUD",
        "ALLOW_DMS": "maybe",
        "DEFAULT_SAFETY": "9",
    }
    with pytest.raises(SettingsError) as caught:
        BotSettings.from_env(env)
    lines = [str(p) for p in caught.value.problems]
    names = [line.split(":")[0] for line in lines]
    assert names == [
        "DISCORD_TOKEN",
        "RUNCOMFY_API_TOKEN",
        "DISCORD_GUILD_ID",
        "QUOTA_DAILY_CREDITS",
        "LOG_LEVEL",
        "DEFAULT_SAFETY",
        "ALLOW_DMS",
    ]
    assert lines[0] == "DISCORD_TOKEN: is required"
    assert all("\n" not in line for line in lines)


def test_log_format_is_text_or_json() -> None:
    assert BotSettings.from_env(MINIMAL).log_format == "text"
    assert BotSettings.from_env({**MINIMAL, "LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(SettingsError) as caught:
        BotSettings.from_env({**MINIMAL, "LOG_FORMAT": "xml"})
    assert [str(p) for p in caught.value.problems] == ["LOG_FORMAT: must be one of text, json"]


def test_tokens_do_not_appear_in_the_settings_repr() -> None:
    settings = BotSettings.from_env(MINIMAL)
    assert "secret" not in repr(settings)


def run_bot(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "RUNCOMFY_"))}
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), *args],
        env={**clean, **env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bot_exits_with_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    result = run_bot({"QUOTA_DAILY_CREDITS": "lots"}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: DISCORD_TOKEN: is required",
        "error: RUNCOMFY_API_TOKEN: is required",
        "error: QUOTA_DAILY_CREDITS: must be a whole number, got 'lots'",
    ]
    assert "Traceback" not in result.stderr


def test_the_environment_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "DISCORD_TOKEN=from-dotenv\nRUNCOMFY_API_TOKEN=ok\nLOG_LEVEL=LOUD\n"
    )
    # .env alone: its bad LOG_LEVEL is reported
    result = run_bot({}, cwd=tmp_path)
    assert (
        result.stderr.strip()
        == "error: LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )
    # the process environment overrides it; the bot then gets as far as opening the database
    (tmp_path / "db").write_text("a file, not a folder")
    result = run_bot(
        {"LOG_LEVEL": "WARNING", "DATABASE_PATH": str(tmp_path / "db" / "x.sqlite3")},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: DATABASE_PATH: cannot open ")


def test_env_example_documents_every_setting_and_parses() -> None:
    from dotenv import dotenv_values

    example = {k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()}
    settings = BotSettings.from_env({**example, **MINIMAL})
    assert settings.database_path == Path("data/bot.sqlite3")
    read = {
        "DISCORD_TOKEN",
        "RUNCOMFY_API_TOKEN",
        "DISCORD_GUILD_ID",
        "ALLOW_DMS",
        "DATABASE_PATH",
        "QUOTA_DAILY_CREDITS",
        "QUOTA_GLOBAL_DAILY_CREDITS",
        "QUOTA_RESOLUTION_WEIGHTS",
        "DEFAULT_SAFETY",
        "STATUS_UPDATE_SECONDS",
        "JOB_TIMEOUT_SECONDS",
        "RUNCOMFY_API_BASE",
        "RUNCOMFY_TEXT_TO_IMAGE_MODEL",
        "RUNCOMFY_EDIT_MODEL",
        "LOG_LEVEL",
    }
    assert set(example) == read


def test_postgresql_and_shards_are_read_and_the_url_stays_out_of_the_repr() -> None:
    env = {
        **MINIMAL,
        "DATABASE_URL": "postgresql://studio:pg-secret@db.example:5432/studio",
        "SHARD_COUNT": "4",
        "SHARD_IDS": "3, 1",
    }
    settings = BotSettings.from_env(env)
    assert settings.database_target == env["DATABASE_URL"]
    assert (settings.shard_count, settings.shard_ids) == (4, (1, 3))
    assert settings.shards == [1, 3] and settings.lease_owner == "shards 1,3 of 4"
    assert "pg-secret" not in repr(settings)
    alone = BotSettings.from_env(MINIMAL)
    assert alone.database_target == Path("data/bot.sqlite3") and alone.shards == [0]


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"DATABASE_URL": "mysql://x"},
            "DATABASE_URL: must be a postgresql:// URL (unset: SQLite)",
        ),
        ({"SHARD_IDS": "0"}, "SHARD_IDS: needs SHARD_COUNT, the shards of the whole bot"),
        (
            {"SHARD_COUNT": "2", "SHARD_IDS": "0"},
            "SHARD_IDS: needs DATABASE_URL: several processes share PostgreSQL",
        ),
        (
            {"DATABASE_URL": "postgresql://h/db", "SHARD_COUNT": "2", "SHARD_IDS": "2"},
            "SHARD_IDS: each must be from 0 to 1 (SHARD_COUNT - 1)",
        ),
        (
            {"DATABASE_URL": "postgresql://h/db", "SHARD_COUNT": "2", "SHARD_IDS": "a"},
            "SHARD_IDS: must be shard numbers like 0,1, got 'a'",
        ),
    ],
)
def test_bad_database_and_shard_settings_are_one_line_each(
    env: dict[str, str], problem: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        BotSettings.from_env({**MINIMAL, **env})
    assert [str(p) for p in caught.value.problems] == [problem]


def test_a_sharded_bot_runs_its_own_slice_of_the_shards(tmp_path: Path) -> None:
    import asyncio

    import aiohttp

    from bot import ShardedStudioBot, create_bot
    from storage import Storage

    env = {**MINIMAL, "DATABASE_URL": "postgresql://h/db", "SHARD_COUNT": "4", "SHARD_IDS": "1,2"}
    settings = BotSettings.from_env(env)

    async def build() -> tuple[object, object, object]:
        async with aiohttp.ClientSession() as session, Storage.open(tmp_path / "s.db") as storage:
            made = create_bot(settings, session=session, storage=storage)
            return type(made), made.shard_ids, made.shard_count

    assert asyncio.run(build()) == (ShardedStudioBot, [1, 2], 4)
