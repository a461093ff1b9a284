"""Banana Studio: start the Discord bot.

    python bot.py          # run (settings from the environment and .env)
    python bot.py --sync   # also push the slash commands to Discord now

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
import re
import signal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord.ext import commands
from dotenv import load_dotenv

from client import RunComfyClient
from cogs.buttons import DYNAMIC_ITEMS
from cogs.tree import StudioTree
from services.admin import AdminService
from services.jobs import JobService
from services.moderation import ModerationService
from services.policy import PolicyService
from services.settings import BotSettings, SettingsError, log_level_number
from storage import SchemaTooNewError, Storage

log = logging.getLogger("studio")

# Loaded in this order by setup_hook; each module has an async setup(bot).
EXTENSIONS = ("cogs.studio", "cogs.admin", "cogs.modlog")


class StudioBot(commands.Bot):
    """The bot, holding the services it was given (never creating its own)."""

    def __init__(
        self,
        *,
        settings: BotSettings,
        storage: Storage,
        runcomfy: RunComfyClient,
        policy: PolicyService,
        admin: AdminService,
        jobs: JobService,
        moderation: ModerationService,
        sync_commands: bool = False,
        **options: Any,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels and the guild's upload limit; no privileged intents
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents,
            tree_cls=StudioTree,
            allowed_mentions=discord.AllowedMentions.none(),
            **options,
        )
        self.settings = settings
        self.storage = storage
        self.runcomfy = runcomfy
        self.policy = policy
        self.admin = admin
        self.jobs = jobs
        self.moderation = moderation
        self.sync_commands = sync_commands
        self.accepting = True  # False once shutting down: new commands are refused
        self.synced: bool | None = None  # what setup_hook decided, for tests and logs

    @property
    def tree(self) -> StudioTree:  # type: ignore[override]  # narrowed to our subclass
        return super().tree  # type: ignore[return-value]

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.add_dynamic_items(*DYNAMIC_ITEMS)  # cogs.modlog registers its own buttons
        self.synced = await self.sync_if_changed()
        await self.jobs.resume()
        self.moderation.start()  # held jobs whose log entry could not be posted before

    # -- command sync ---------------------------------------------------------------------

    def command_hash(self) -> str:
        """A digest of every command definition and where they are synced."""
        definitions = sorted(
            (c.to_dict(self.tree) for c in self.tree.get_commands()),
            key=lambda d: (d.get("type", 1), d["name"]),
        )
        blob = json.dumps(
            {"guild": self.settings.guild_id, "commands": definitions},
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
        if guild_id is not None:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands (may take a while to appear)", len(synced))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(digest + "\n")
        return True

    # -- lifecycle ------------------------------------------------------------------------

    async def on_ready(self) -> None:
        log.info("ready as %s (%s) in %d guilds", self.user, self.application_id, len(self.guilds))

    async def close(self) -> None:
        if self.accepting:
            self.accepting = False
            log.info("shutting down: no new commands; unfinished jobs stay in the database")
            await self.jobs.close()
            await self.moderation.close()
        await super().close()


def create_bot(
    settings: BotSettings,
    *,
    session: aiohttp.ClientSession,
    storage: Storage,
    runcomfy: RunComfyClient | None = None,
    sync_commands: bool = False,
    **options: Any,
) -> StudioBot:
    """Wire the services around an open session and database."""
    runcomfy = runcomfy or RunComfyClient(session, settings.client)
    policy = PolicyService(
        storage, default_safety=settings.default_safety, allow_dms=settings.allow_dms
    )
    admin = AdminService(
        storage, policy, global_default_credits=settings.quota.default_daily_credits
    )
    jobs = JobService(storage, runcomfy, policy, quota=settings.quota, timing=settings.timing)
    moderation = ModerationService(storage, jobs, policy, admin)
    moderation.attach()
    return StudioBot(
        settings=settings,
        storage=storage,
        runcomfy=runcomfy,
        policy=policy,
        admin=admin,
        jobs=jobs,
        moderation=moderation,
        sync_commands=sync_commands,
        **options,
    )


class StartupError(Exception):
    """The bot cannot start; ``str()`` is the one line to print."""


async def run(settings: BotSettings, *, sync_commands: bool = False, **options: Any) -> None:
    """Open everything, run the bot until SIGTERM / Ctrl-C (or a fatal error), close everything."""
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        path = settings.database_path
        try:
            storage = await stack.enter_async_context(Storage.open(path, settings.quota))
        except SchemaTooNewError as err:
            raise StartupError(f"DATABASE_PATH: {err}") from err
        except (OSError, sqlite3.Error) as err:
            raise StartupError(f"DATABASE_PATH: cannot open {path}: {err}") from err
        bot = create_bot(
            settings, session=session, storage=storage, sync_commands=sync_commands, **options
        )
        async with bot:
            stopping: set[asyncio.Task[None]] = set()

            def stop() -> None:
                task = asyncio.create_task(bot.close())
                stopping.add(task)  # keep a reference until it is done
                task.add_done_callback(stopping.discard)

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop)
            try:
                await bot.start(settings.discord_token)
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)


class RedactTokens(logging.Filter):
    """Hide interaction/webhook tokens that discord.py puts in URLs (logged at DEBUG)."""

    _TOKEN_IN_URL = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._\-]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._TOKEN_IN_URL.sub(r"\1<token>", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def setup_logging(level: str) -> None:
    discord.utils.setup_logging(level=log_level_number(level), root=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactTokens())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Banana Studio Discord bot.")
    parser.add_argument(
        "--sync", action="store_true", help="push the slash commands to Discord now"
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

    setup_logging(settings.log_level)
    try:
        asyncio.run(run(settings, sync_commands=args.sync))
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
