"""The Discord side of starting up: log-in within a time limit, ``--check``, the invite URL and
the log format. ``bot.py`` uses these; the checks that need no Discord are in
``services.startup_check``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import aiohttp
import discord
import yarl

from services.logformat import JsonFormatter, silence_voice_warnings
from services.redact import RedactTokens
from services.settings import BotSettings, log_level_number
from services.startup_check import (
    CheckResult,
    check_database,
    check_runcomfy,
    connection_problem,
)

# Discord answers a log-in in well under a second; a silent one must not hang the start.
LOGIN_TIMEOUT = 20.0
# What the bot needs in a channel: post results and the moderators' log (with files and
# embeds, in threads too), and read back its own messages to edit or delete them. Replies to
# interactions need none of these. Emojis are Unicode, so no external emojis.
BOT_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
)
TEXT_FORMAT = "[{asctime}] [{levelname:<8}] {name}: {message}"  # discord.py's plain format


class StartupError(Exception):
    """The bot cannot start; ``str()`` is the one line to print."""


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(
        application_id, permissions=BOT_PERMISSIONS, scopes=("bot", "applications.commands")
    )


def discord_host() -> str:
    """The host discord.py talks to (discord.com, or a fake in tests), for the operator."""
    url = yarl.URL(discord.http.Route.BASE)
    if url.is_default_port():
        return url.host or str(url)
    return f"{url.host}:{url.port}"


async def login_within(
    client: discord.Client,
    token: str,
    *,
    timeout: float = LOGIN_TIMEOUT,  # noqa: ASYNC109
    answered: asyncio.Event | None = None,
) -> None:
    """``client.login()``, but Discord must answer within ``timeout`` seconds.

    discord.py's own HTTP session waits five minutes on a server that accepts and never
    answers. ``answered`` (set by the bot's setup_hook) ends the limit once Discord has
    answered: what setup_hook does next (resuming jobs, syncing) is not cut short. Every
    failure to log in becomes a one-line ``StartupError``.
    """
    host = discord_host()
    login = asyncio.ensure_future(client.login(token))
    waits: set[asyncio.Future[Any]] = {login}
    if answered is not None:
        waits.add(asyncio.ensure_future(answered.wait()))
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise StartupError(
                f"cannot reach Discord at {host}: no answer within {timeout:g} seconds"
            )
        await login
    except discord.LoginFailure:
        raise StartupError("DISCORD_TOKEN: Discord rejected the token") from None
    except discord.HTTPException as err:
        if answered is not None and answered.is_set():
            raise  # from setup_hook, after the log-in: not a log-in failure
        raise StartupError(
            f"Discord at {host} answered HTTP {err.status} to the log-in; try again later"
        ) from None
    except (aiohttp.ClientError, OSError) as err:
        if answered is not None and answered.is_set():
            raise
        raise StartupError(f"cannot reach Discord at {host}: {connection_problem(err)}") from None
    finally:
        for each in waits:
            each.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await login  # a cancelled log-in is finished before the client closes


async def check_discord(token: str) -> tuple[list[CheckResult], int | None]:
    """The token (GET /users/@me) and the application (its info), as a plain client does
    at log-in; no gateway connection. Returns the results and the application id, if known."""
    client = discord.Client(intents=discord.Intents(guilds=True))  # as the bot's; no gateway
    async with client:
        try:
            await login_within(client, token)
        except StartupError as err:
            return [CheckResult("Discord", False, str(err))], None
        user, app = client.user, client.application
        assert user is not None and app is not None  # login() fetched both
        results = [CheckResult("Discord token", True, f"logged in as {user} at {discord_host()}")]
        if app.interactions_endpoint_url:
            results.append(
                CheckResult(
                    "Discord application",
                    False,
                    f"{app.name} has an Interactions Endpoint URL set, so commands would not"
                    " reach the bot; clear it on the application's General Information page",
                )
            )
        else:
            results.append(CheckResult("Discord application", True, f"{app.name}, id {app.id}"))
        return results, app.id


async def run_check(settings: BotSettings) -> int:
    """``--check``: print one line per check and the invite URL; 0 only when all pass."""
    async with aiohttp.ClientSession() as session:
        (discord_results, app_id), runcomfy, database = await asyncio.gather(
            check_discord(settings.discord_token),
            check_runcomfy(session, settings.client),
            check_database(settings.database_target, settings.quota),
        )
    results = [*discord_results, runcomfy, database]
    for result in results:
        print(result.line(), flush=True)
    if app_id is not None:
        print(f"invite URL: {invite_url(app_id)}", flush=True)
    else:
        print("invite URL: not known until the Discord token works", flush=True)
    return 0 if all(r.ok for r in results) else 1


def setup_logging(
    level: str,
    *,
    secrets: Sequence[str | None] = (),
    handler: logging.Handler | None = None,
    log_format: str = "text",
) -> None:
    """The root logger: JSON lines, or discord.py's format (in colour only on a terminal);
    every handler filtered by ``RedactTokens``; discord.py's voice warnings dropped."""
    handler = handler or logging.StreamHandler()
    redact = RedactTokens(secrets)
    options: dict[str, Any] = {}
    if log_format == "json":
        options["formatter"] = JsonFormatter(redact)
    elif not _is_terminal(handler):
        # discord.py would also colour output redirected inside Docker; colour only a terminal.
        options["formatter"] = logging.Formatter(TEXT_FORMAT, "%Y-%m-%d %H:%M:%S", style="{")
    discord.utils.setup_logging(
        handler=handler, level=log_level_number(level), root=True, **options
    )
    for each in logging.getLogger().handlers:
        each.addFilter(redact)
    silence_voice_warnings()


def _is_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None) or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
