"""``python bot.py --check`` and a fast failure when Discord is unreachable or silent.

``run_check`` runs in this process against the fakes (the fake Discord redirects discord.py in
this process only); the fail-fast tests start ``bot.py`` as a subprocess pointed at a server
that never answers, as an operator would meet it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import bot
from bot_startup import BOT_PERMISSIONS, run_check
from services.settings import BotSettings
from storage.migrations import LATEST_VERSION
from tests.e2e_harness import harness_settings
from tests.fakes.discord import FakeDiscord
from tests.fakes.runcomfy import FakeRunComfy
from tests.test_bot_lifecycle import stop

REPO = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def check(settings: BotSettings, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = await run_check(settings)
    out = capsys.readouterr()
    assert out.err == ""
    return code, out.out.splitlines()


def with_client(settings: BotSettings, **changes: str) -> BotSettings:
    return dataclasses.replace(settings, client=dataclasses.replace(settings.client, **changes))


async def test_check_all_good_prints_ok_lines_and_the_invite_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeDiscord() as discord_fake, FakeRunComfy(token="test-token") as runcomfy:
        settings = harness_settings(
            tmp_path, runcomfy_base=runcomfy.base_url, guild_id=discord_fake.guild.id
        )
        code, lines = await check(settings, capsys)
        assert code == 0, lines
        app = discord_fake.application_id
        assert lines == [
            f"Discord token: ok (logged in as ImageStudio at {discord_fake.base_url.removeprefix('http://')})",
            f"Discord application: ok (ImageStudio, id {app})",
            f"RunComfy: ok ({runcomfy.base_url} accepted the token)",
            f"database: ok ({settings.database_path}, writable, schema version {LATEST_VERSION})",
            "invite URL: https://discord.com/oauth2/authorize"
            f"?client_id={app}&scope=bot+applications.commands&permissions={BOT_PERMISSIONS.value}",
        ]
        assert runcomfy.count("status") == 1 and runcomfy.count("submit") == 0  # nothing paid
        assert not any(r.method != "GET" for r in discord_fake.requests)  # nothing changed
        assert not any("fake-bot-token" in line or "test-token" in line for line in lines)


async def test_check_a_wrong_discord_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeDiscord() as discord_fake, FakeRunComfy(token="test-token") as runcomfy:
        settings = harness_settings(
            tmp_path, runcomfy_base=runcomfy.base_url, guild_id=discord_fake.guild.id
        )
        code, lines = await check(dataclasses.replace(settings, discord_token="wrong"), capsys)
        assert code == 1
        assert lines[0] == "Discord: DISCORD_TOKEN: Discord rejected the token"
        assert lines[1].startswith("RunComfy: ok") and lines[2].startswith("database: ok")
        assert lines[3] == "invite URL: not known until the Discord token works"


async def test_check_a_wrong_runcomfy_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeDiscord() as discord_fake, FakeRunComfy(token="test-token") as runcomfy:
        settings = harness_settings(
            tmp_path, runcomfy_base=runcomfy.base_url, guild_id=discord_fake.guild.id
        )
        code, lines = await check(with_client(settings, api_token="not-the-key"), capsys)
        assert code == 1
        assert lines[2] == (
            f"RunComfy: {runcomfy.base_url} rejected RUNCOMFY_API_TOKEN; copy your API key again"
        )
        assert not any("not-the-key" in line for line in lines)
        assert lines[0].startswith("Discord token: ok") and lines[3].startswith("database: ok")


async def test_check_an_unreachable_runcomfy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeDiscord() as discord_fake:
        base = f"http://127.0.0.1:{closed_port()}"
        settings = harness_settings(tmp_path, runcomfy_base=base, guild_id=discord_fake.guild.id)
        code, lines = await check(settings, capsys)
        assert code == 1
        assert lines[2] == (
            f"RunComfy: cannot reach {base}: the connection was refused;"
            " check RUNCOMFY_API_BASE and the network"
        )
        assert lines[0].startswith("Discord token: ok")


async def test_check_a_database_that_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tests run as root in CI, and chmod does not stop root. A path whose parent folder is a
    # regular file cannot be created or written by anyone, root included.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database's folder should be\n")
    async with FakeDiscord() as discord_fake, FakeRunComfy(token="test-token") as runcomfy:
        settings = harness_settings(
            tmp_path, runcomfy_base=runcomfy.base_url, guild_id=discord_fake.guild.id
        )
        path = blocker / "studio.sqlite3"
        code, lines = await check(dataclasses.replace(settings, database_path=path), capsys)
        assert code == 1
        assert lines[3] == (
            f"database: cannot open the database {path}: {blocker} is a file, not a folder;"
            " check DATABASE_PATH"
        )
        assert all(line.startswith(("Discord", "RunComfy")) for line in lines[:3])


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # kept open, never written to

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()


async def start_bot(
    discord_port: int, *args: str, tmp_path: Path
) -> tuple[int, list[str], list[str]]:
    """``bot.main()`` in a subprocess with discord.py pointed at ``discord_port``."""
    script = (
        "import sys, discord, bot; discord.http.Route.BASE = sys.argv[1];"
        " sys.exit(bot.main(sys.argv[2:]))"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "DISCORD_TOKEN": "fake-bot-token",
        "RUNCOMFY_API_TOKEN": "test-token",
        "RUNCOMFY_API_BASE": f"http://127.0.0.1:{closed_port()}",
        "DATABASE_PATH": str(tmp_path / "studio.sqlite3"),
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, f"http://127.0.0.1:{discord_port}/api/v10",
        "--env-file", str(tmp_path / "no.env"), *args,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    # Generous: the bot gives up after bot_startup.LOGIN_TIMEOUT (20 s) on a silent Discord.
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode().splitlines(), err.decode().splitlines()


async def test_a_silent_or_refusing_discord_is_one_line_and_exit_1(
    silent_server: int, tmp_path: Path
) -> None:
    refusing = closed_port()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    silent, refused, checked = await asyncio.gather(
        start_bot(silent_server, tmp_path=tmp_path / "a"),
        start_bot(refusing, tmp_path=tmp_path / "b"),
        start_bot(silent_server, "--check", tmp_path=tmp_path / "c"),
    )
    assert silent == (
        1,
        [],
        [f"error: cannot reach Discord at 127.0.0.1:{silent_server}: no answer within 20 seconds"],
    )
    assert refused == (
        1,
        [],
        [f"error: cannot reach Discord at 127.0.0.1:{refusing}: the connection was refused"],
    )
    code, out, err = checked
    assert (code, err) == (1, [])
    assert out[0] == (
        f"Discord: cannot reach Discord at 127.0.0.1:{silent_server}: no answer within 20 seconds"
    )
    assert out[1].startswith("RunComfy: cannot reach") and out[2].startswith("database: ok")


@pytest.mark.filterwarnings("ignore:coroutine 'Client._run_event' was never awaited")
async def test_start_up_logs_the_api_base_and_the_invite_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord() as discord_fake, FakeRunComfy(token="test-token") as runcomfy:
        settings = harness_settings(
            tmp_path, runcomfy_base=runcomfy.base_url, guild_id=discord_fake.guild.id
        )
        with caplog.at_level(logging.INFO, logger="studio"):
            task = asyncio.create_task(bot.run(settings, guild_ready_timeout=0.05))
            try:
                await discord_fake.wait_until_connected()
            finally:
                await stop(task)
        messages = [r.getMessage() for r in caplog.records if r.name == "studio"]
        assert f"RunComfy API: {runcomfy.base_url}" in messages
        app = discord_fake.application_id
        assert any(
            m.startswith("invite URL: https://discord.com/oauth2/authorize")
            and f"client_id={app}" in m
            for m in messages
        )


async def test_check_a_postgresql_database_names_the_server_never_its_password(
    postgres_url: str,
) -> None:
    from services.startup_check import check_database

    # the throwaway server trusts loopback, so any password is accepted and must not be shown
    with_password = postgres_url.replace("postgres@", "postgres:hunter2@")
    result = await check_database(with_password)
    assert result.ok, result.line()
    assert "hunter2" not in result.line() and "postgres:***@127.0.0.1" in result.line()
    assert result.line().endswith(f"writable, schema version {LATEST_VERSION})")

    unreachable = await check_database("postgresql://studio:hunter2@127.0.0.1:1/studio")
    assert not unreachable.ok and "hunter2" not in unreachable.line()
    assert unreachable.line().startswith(
        "database: cannot open the database postgresql://studio:***@"
    )
    assert unreachable.line().endswith("; check DATABASE_URL")
