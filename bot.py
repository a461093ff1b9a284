"""Banana Studio: start the Discord bot.

    python bot.py          # run (settings from the environment and .env)
    python bot.py --sync   # push the slash commands to Discord now, then exit
    python bot.py --check  # check the tokens and the database, print the invite URL, exit

``--sync`` logs in, syncs and exits: no gateway connection, no job resumed, so it is safe while
the service runs. On SQLite a running bot holds an exclusive lock (``DATABASE_PATH`` + ``.lock``)
for its lifetime: a second instance on the same database refuses to start. On PostgreSQL
(``DATABASE_URL``) several processes share the database, one per gateway shard (bot_locks.py).

Settings come from the process environment, then ``.env`` (the environment wins). The HTTP
session, the database and the RunComfy client are opened here with ``async with`` and handed to
the bot; nothing lives in module globals. SIGTERM or Ctrl-C: the bot stops taking commands,
leaves unfinished jobs in the database (the next start resumes them) and closes cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord.ext import commands
from dotenv import load_dotenv

from bot_locks import claim_shards, instance_lock
from bot_metrics import serve_metrics
from bot_startup import StartupError, invite_url, login_within, run_check, setup_logging
from client import RunComfyClient
from cogs.i18n import fingerprint as catalogs_fingerprint
from cogs.render import NO_MENTIONS
from cogs.translator import StudioTranslator
from cogs.tree import StudioTree
from cogs.wiring import Services, wire
from services.leadership import Leadership
from services.metrics import Metrics
from services.policy import default_safety_warning
from services.redact import RedactTokens as RedactTokens  # tests import it from here
from services.settings import BotSettings, SettingsError
from storage import SchemaTooNewError, Storage

log = logging.getLogger("studio")

READY_GRACE = 2.0  # seconds a stop waits for discord.py to finish becoming ready
HANDLING_GRACE = 5.0  # seconds a stop waits for buttons and forms being handled
# Loaded in this order by setup_hook; each module has an async setup(bot).
EXTENSIONS = (
    "cogs.studio",
    "cogs.presets",
    "cogs.library",
    "cogs.admin",
    "cogs.modlog",
    "cogs.unanswered",
)


class StudioBot(commands.Bot):
    """The bot, holding the services it was given (never creating its own).

    ``services`` builds them around the bot, once, here: the Discord side (presenter, log) needs
    the bot to talk to Discord, and the engine needs the Discord side from its first moment.
    """

    def __init__(
        self,
        *,
        settings: BotSettings,
        storage: Storage,
        runcomfy: RunComfyClient,
        services: Callable[[StudioBot], Services],
        sync_commands: bool = False,
        sync_only: bool = False,
        **options: Any,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels and the guild's upload limit; no privileged intents
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents,
            tree_cls=StudioTree,
            allowed_mentions=NO_MENTIONS,
            **options,
        )
        self.settings = settings
        self.storage = storage
        self.runcomfy = runcomfy
        built = services(self)
        self.policy = built.policy
        self.admin = built.admin
        self.jobs = built.jobs
        self.moderation = built.moderation
        self.pacing = built.pacing
        self.presenter = built.presenter
        self.modlog_sink = built.modlog_sink
        self.metrics = built.metrics
        self.timings = built.timings
        self.presets = built.presets
        self.library = built.library
        self.sync_commands = sync_commands
        self.sync_only = sync_only  # --sync: set up the commands, sync, nothing else
        self.accepting = True  # False once shutting down: new commands are refused
        self.synced: bool | None = None  # what setup_hook decided, for tests and logs
        self.open_forms: set[str] = set()  # custom_ids of the forms discord.py holds (cogs.routing)
        self.handling: set[asyncio.Task[Any]] = set()  # button and form actions running now
        self.answered = asyncio.Event()  # Discord answered the log-in (setup_hook began)
        self.leadership = Leadership(storage.cluster, self.lead)

    @property
    def tree(self) -> StudioTree:  # type: ignore[override]  # narrowed to our subclass
        return super().tree  # type: ignore[return-value]

    async def setup_hook(self) -> None:
        self.answered.set()
        await self.tree.set_translator(StudioTranslator())  # before any sync or hash
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.sync_only:
            self.synced = await self.sync_if_changed()
            return
        # Jobs first: a failing sync must not keep members waiting for their results.
        await self.timings.load()  # before resumed jobs poll: they use what was learned
        await self.jobs.resume()
        await self.leadership.begin()  # one process of several: sync, held log entries

    async def lead(self) -> None:
        """The once-per-bot duties (services.leadership), run by one process of several."""
        self.moderation.start()  # held jobs whose log entry could not be posted before
        self.synced = await self.sync_if_changed()

    # -- command sync ---------------------------------------------------------------------

    def command_hash(self) -> str:
        """A digest of every command definition, the application and where they are synced."""
        definitions = sorted(
            (c.to_dict(self.tree) for c in self.tree.get_commands()),
            key=lambda d: (d.get("type", 1), d["name"]),
        )
        blob = json.dumps(
            {
                "application": self.application_id,
                "guild": self.settings.guild_id,
                "commands": definitions,
                "translations": catalogs_fingerprint(),  # a changed translation re-syncs
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def hash_path(self) -> Path:
        path = self.settings.database_path
        return path.with_name(path.name + ".commands.sha256")

    async def sync_if_changed(self) -> bool:
        """Sync when asked (--sync) or when the definitions changed since the last sync."""
        digest = self.command_hash()
        path = self.hash_path()
        try:
            previous = path.read_text().strip()
        except FileNotFoundError:
            previous = None
        if not self.sync_commands and previous == digest:
            log.info("commands unchanged since the last sync; not syncing")
            return False
        guild_id = self.settings.guild_id
        try:
            if guild_id is not None:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d commands to guild %s", len(synced), guild_id)
            else:
                synced = await self.tree.sync()
                log.info("synced %d global commands (may take a while to appear)", len(synced))
        except discord.HTTPException as err:
            # Not fatal: the commands Discord already has keep working; the next start retries.
            where = (
                f"DISCORD_GUILD_ID={guild_id}: is the bot in that server, invited with the"
                " applications.commands scope?"
                if guild_id is not None
                else "global commands"
            )
            log.error(
                "command sync failed (HTTP %s, code %s: %s); %s",
                err.status,
                err.code,
                err.text,
                where,
            )
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(digest + "\n")
        return True

    # -- lifecycle ------------------------------------------------------------------------

    async def on_ready(self) -> None:
        log.info("ready as %s (%s) in %d guilds", self.user, self.application_id, len(self.guilds))

    async def close(self) -> None:
        if not self.is_ready() and self.ws is not None:
            # Connected but READY not yet dispatched: discord.py would dispatch it after close
            # had torn the client down (and log a task error). Let it finish first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait_until_ready(), timeout=READY_GRACE)
        if self.accepting:
            self.accepting = False
            log.info("shutting down: no new commands; unfinished jobs stay in the database")
            if self.handling:  # clicks being handled (an Approve posting its result) finish
                await asyncio.wait(list(self.handling), timeout=HANDLING_GRACE)
            self.pacing.stop()  # background steps stop waiting for calm
            await self.leadership.close()
            await self.jobs.close()
            await self.timings.close()
            self.presenter.close()
            await self.moderation.close()
        await super().close()


class ShardedStudioBot(StudioBot, commands.AutoShardedBot):
    """The bot on several gateway shards (SHARD_COUNT, SHARD_IDS)."""


def create_bot(
    settings: BotSettings,
    *,
    session: aiohttp.ClientSession,
    storage: Storage,
    runcomfy: RunComfyClient | None = None,
    metrics: Metrics | None = None,
    sync_commands: bool = False,
    sync_only: bool = False,
    **options: Any,
) -> StudioBot:
    """The bot, with its services, around an open session and database.

    ``metrics``: the registry the RunComfy client given as ``runcomfy`` reports to (one is
    made when the client is made here)."""
    metrics = metrics or Metrics()
    client = runcomfy or RunComfyClient(session, settings.client, on_request=metrics.api_request)
    cls = StudioBot
    if settings.shard_count is not None:  # this process's slice of the gateway shards
        cls = ShardedStudioBot
        options.update(shard_count=settings.shard_count, shard_ids=settings.shards)
    return cls(
        settings=settings,
        storage=storage,
        runcomfy=client,
        services=lambda bot: wire(bot, settings, storage, client, metrics),
        sync_commands=sync_commands or sync_only,
        sync_only=sync_only,
        **options,
    )


async def _open_storage(stack: contextlib.AsyncExitStack, settings: BotSettings) -> Storage:
    name = "DATABASE_URL" if settings.database_url else "DATABASE_PATH"
    try:
        return await stack.enter_async_context(
            Storage.open(settings.database_target, settings.quota)
        )
    except SchemaTooNewError as err:
        raise StartupError(f"{name}: {err}") from err
    except (OSError, sqlite3.Error) as err:
        if settings.database_url:  # the error names the server, never the password
            raise StartupError(f"{name}: {err}") from err
        raise StartupError(f"{name}: cannot open {settings.database_path}: {err}") from err


async def sync_only(settings: BotSettings, **options: Any) -> bool:
    """``--sync``: log in, push the commands, close. No gateway, no jobs touched."""
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        storage = await _open_storage(stack, settings)
        bot = create_bot(settings, session=session, storage=storage, sync_only=True, **options)
        async with bot:
            # runs setup_hook: the sync
            await login_within(bot, settings.discord_token, answered=bot.answered)
            return bool(bot.synced)


async def run(settings: BotSettings, *, sync_commands: bool = False, **options: Any) -> None:
    """Open everything, run the bot until SIGTERM / Ctrl-C (or a fatal error), close everything."""
    log.info("RunComfy API: %s", settings.client.api_base)
    if warning := default_safety_warning(settings.default_safety):
        log.warning("%s", warning)
    async with contextlib.AsyncExitStack() as stack:
        if settings.database_url is None:  # PostgreSQL: shard claims instead (services.cluster)
            stack.enter_context(instance_lock(settings.database_path))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        storage = await _open_storage(stack, settings)
        await claim_shards(storage, settings)  # PostgreSQL: one process per shard
        bot = create_bot(
            settings, session=session, storage=storage, sync_commands=sync_commands, **options
        )
        async with bot, serve_metrics(bot, settings.metrics_host, settings.metrics_port):
            stopping: set[asyncio.Task[None]] = set()

            def stop() -> None:
                task = asyncio.create_task(bot.close())
                stopping.add(task)  # keep a reference until it is done
                task.add_done_callback(stopping.discard)

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop)
            try:
                # bot.start() is log-in then connect; the log-in is bounded so that a silent
                # Discord is one line and exit 1, not a five-minute hang.
                await login_within(bot, settings.discord_token, answered=bot.answered)
                if bot.application_id is not None:
                    log.info("invite URL: %s", invite_url(bot.application_id))
                await bot.connect()
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Banana Studio Discord bot.")
    parser.add_argument(
        "--sync", action="store_true", help="push the slash commands to Discord now, then exit"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the tokens and the database, print the invite URL, then exit",
    )
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env)")
    args = parser.parse_args(argv)

    load_dotenv(args.env_file, override=False)  # the process environment wins
    try:
        settings = BotSettings.from_env(os.environ)
    except SettingsError as err:
        for problem in err.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2

    secrets = [settings.discord_token, settings.client.api_token]
    # --check prints its own lines; the libraries' INFO chatter would only get in between.
    level = "WARNING" if args.check else settings.log_level
    setup_logging(level, secrets=secrets, log_format=settings.log_format)
    try:
        if args.check:
            return asyncio.run(run_check(settings))
        if args.sync:
            synced = asyncio.run(sync_only(settings))
            return 0 if synced else 1
        asyncio.run(run(settings))
    except StartupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except discord.LoginFailure:
        print("error: DISCORD_TOKEN: Discord rejected the token", file=sys.stderr)
        return 1
    except discord.PrivilegedIntentsRequired as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except aiohttp.ClientConnectionError as err:
        print(f"error: cannot reach Discord: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
