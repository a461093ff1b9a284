"""Start the real StudioBot against the fake Discord and the fake RunComfy, on 127.0.0.1.

    async with studio_env(tmp_path) as env:        # both fakes, a temp database, one session
                                                   # (or studio_env(postgres_url): PostgreSQL)
        async with env.running() as bot:           # the real bot: login, setup_hook, READY
            sent = await env.imagine("a cat", count=2)
            ...
        async with env.running() as bot:           # a restart on the same database
            ...

Everything is torn down on exit. The bot is built by ``bot.create_bot`` (the same wiring as
``python bot.py``) with a fast RunComfy client, ``guild_ready_timeout=0.05`` and a status
throttle of 0 s unless a test asks otherwise. Used by tests/test_bot*.py and bench/bot.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from bot import StudioBot, create_bot
from client import ClientSettings, PollingPolicy, RunComfyClient
from services.metrics import Metrics
from services.settings import BotSettings, JobTiming
from storage import QuotaSettings, Storage
from storage.models import Job, JobState
from tests.fakes.discord import FakeDiscord, SentInteraction, StoredMessage
from tests.fakes.runcomfy import FakeRunComfy
from tests.helpers import FAST_POLLING, FAST_RETRY, wait_job_state

_INTERACTION_KEYS = (
    "user",
    "channel_id",
    "attachment_size_limit",
    "created_at",
    "roles",
    "member_permissions",
    "locale",
)
JOB_ID_IN_TEXT = re.compile(r"job `([A-Za-z0-9_-]+)`")


@dataclass
class StudioEnv:
    discord: FakeDiscord
    runcomfy: FakeRunComfy
    session: aiohttp.ClientSession
    settings: BotSettings
    bot: StudioBot | None = None
    storage: Storage | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def _bot(
        self, polling: PollingPolicy, options: dict[str, Any]
    ) -> AsyncIterator[StudioBot]:
        """Open the database and build the bot like ``python bot.py`` (a fast RunComfy client)."""
        async with Storage.open(self.settings.database_target, self.settings.quota) as storage:
            metrics = Metrics()
            client = RunComfyClient(
                self.session,
                self.settings.client,
                retry=FAST_RETRY,
                polling=polling,
                request_timeout=15.0,
                on_request=metrics.api_request,
            )
            bot = create_bot(
                self.settings,
                session=self.session,
                storage=storage,
                runcomfy=client,
                metrics=metrics,
                guild_ready_timeout=0.05,
                **options,
            )
            self.bot, self.storage = bot, storage
            try:
                yield bot
            finally:
                self.bot = self.storage = None

    @contextlib.asynccontextmanager
    async def running(
        self, *, sync_commands: bool = False, polling: PollingPolicy = FAST_POLLING, **options: Any
    ) -> AsyncIterator[StudioBot]:
        """Run the bot until the block ends (then close it like SIGTERM would)."""
        async with (
            self._bot(polling, {"sync_commands": sync_commands, **options}) as bot,
            self.discord.run_bot(bot),
        ):
            yield bot

    @contextlib.asynccontextmanager
    async def bare_running(
        self, token: str, *, polling: PollingPolicy = FAST_POLLING, **options: Any
    ) -> AsyncIterator[StudioBot]:
        """Run the bot against whatever discord.py points at (a fake in another process)."""
        async with self._bot(polling, options) as bot:
            await bot.login(token)
            connect = asyncio.create_task(bot.connect())
            try:
                await asyncio.wait_for(bot.wait_until_ready(), timeout=30)
                yield bot
            finally:
                await bot.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connect, timeout=10)

    # -- acting as members ------------------------------------------------------------------

    async def imagine(self, prompt: str, **options: Any) -> SentInteraction:
        """/imagine as a member would type it; interaction settings (user=, channel_id=,
        attachment_size_limit=, created_at=, roles=, member_permissions=) pass through."""
        context = {k: options.pop(k) for k in _INTERACTION_KEYS if k in options}
        return await self.discord.slash_command("imagine", {"prompt": prompt, **options}, **context)

    async def admin(self, command: str, options: dict[str, Any] | None = None) -> str:
        """``/admin <command>`` as the guild's admin; returns the (ephemeral) answer."""
        sent = await self.discord.slash_command(
            f"admin {command}", options or {}, user=self.discord.guild.admin
        )
        await sent.wait_for_callback()
        assert sent.ephemeral and sent.callback_data is not None, sent.callback_data
        return str(sent.callback_data["content"])

    async def click(self, message: StoredMessage, label: str, **who: Any) -> SentInteraction:
        """Click the button labelled ``label`` (user=, member_permissions=, ... pass through)."""
        return await self.discord.click_button(message, button_id(message, label), **who)

    # -- looking at results -----------------------------------------------------------------

    async def log_entry(
        self,
        channel_id: int,
        check: Callable[[StoredMessage], bool] = lambda m: True,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        """A moderators' log entry (a message with an embed) in ``channel_id``."""
        return await self.discord.wait_for_message(
            lambda m: m.channel_id == channel_id and bool(m.embeds) and check(m), timeout=timeout
        )

    async def acknowledged(self, sent: SentInteraction) -> StoredMessage:
        """The public status message the command was answered with."""
        callback = await sent.wait_for_callback()
        assert callback.json["type"] == 4, callback.json
        original = await sent.wait_for_original()
        return original

    def job_id_of(self, message: StoredMessage) -> str:
        texts = [message.content] + [
            str(e.get("footer", {}).get("text", "")) for e in message.embeds
        ]
        for text in texts:
            found = JOB_ID_IN_TEXT.search(text) or re.search(r"job ([A-Za-z0-9_-]+) ·", text)
            if found:
                return found.group(1)
        raise AssertionError(f"no job id in message {message.id}: {texts}")

    async def job(self, job_id: str) -> Job:
        assert self.storage is not None, "the bot is not running"
        job = await self.storage.jobs.get(job_id)
        assert job is not None
        return job

    async def wait_state(
        self,
        job_id: str,
        *states: JobState,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> Job:
        assert self.storage is not None, "the bot is not running"
        return await wait_job_state(self.storage, job_id, *states, timeout=timeout)

    async def wait_message(
        self,
        message_id: int,
        check: Callable[[StoredMessage], bool],
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        return await self.discord.wait_until(
            lambda: m if (m := self.discord.messages.get(message_id)) and check(m) else None,
            timeout=timeout,
            describe=f"message {message_id} to change",
        )


def labels(message: StoredMessage) -> list[str]:
    return [b["label"] for b in message.buttons()]


def button_id(message: StoredMessage, label: str) -> str:
    (button,) = [b for b in message.buttons() if b["label"] == label]
    return str(button["custom_id"])


def harness_settings(
    tmp_path: Path,
    *,
    runcomfy_base: str,
    guild_id: int,
    daily_credits: int = 20,
    status_interval: float = 0.0,
    job_timeout: float = 30.0,
) -> BotSettings:
    return BotSettings(
        discord_token="fake-bot-token",
        client=ClientSettings(api_token="test-token", api_base=runcomfy_base),
        guild_id=guild_id,
        database_path=tmp_path / "studio.sqlite3",
        quota=QuotaSettings(default_daily_credits=daily_credits),
        timing=JobTiming(
            status_interval=status_interval, job_timeout=job_timeout, submit_grace=2, yield_window=0
        ),
    )


@contextlib.asynccontextmanager
async def studio_env(
    where: Path | str,
    *,
    daily_credits: int = 20,
    status_interval: float = 0.0,
    discord_options: dict[str, Any] | None = None,
    timing_changes: dict[str, Any] | None = None,
    **settings_changes: Any,
) -> AsyncIterator[StudioEnv]:
    async with (
        FakeDiscord(**(discord_options or {})) as discord_fake,
        FakeRunComfy(token="test-token") as runcomfy,
        aiohttp.ClientSession() as session,
        contextlib.AsyncExitStack() as stack,
    ):
        # ``where``: a folder for the SQLite file, or a PostgreSQL URL (the db_target fixture);
        # with PostgreSQL the folder only holds the synced commands' hash
        folder = where
        if isinstance(where, str):
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="studio-")))
        settings = harness_settings(
            folder,
            runcomfy_base=runcomfy.base_url,
            guild_id=discord_fake.guild.id,
            daily_credits=daily_credits,
            status_interval=status_interval,
        )
        settings_changes.setdefault("discord_cdn_origins", (discord_fake.base_url,))
        if isinstance(where, str):
            settings_changes.setdefault("database_url", where)
        if timing_changes:
            settings_changes["timing"] = replace(settings.timing, **timing_changes)
        if settings_changes:
            settings = replace(settings, **settings_changes)
        yield StudioEnv(discord_fake, runcomfy, session, settings)
