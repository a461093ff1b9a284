"""A real bot process on a PostgreSQL database, for the several-processes tests and benchmark.

    python -m tests.cluster_bot --discord URL --runcomfy URL --database URL --folder DIR \
        --shard-count N --shard-ids 0,1 [--lease-seconds S] [--instant]

It points discord.py at the fake Discord (URL: its base), opens the database and takes its
shards as ``python bot.py`` does (a second process with the same shards exits with one line),
then runs the real bot with a fast RunComfy client. Prints ``ready`` once connected; SIGTERM
closes it as it closes the real bot. ``--instant``: the polling of bench/bot.py's instant API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from dataclasses import replace
from pathlib import Path

import aiohttp
import discord.gateway
import discord.http
import yarl

from bot import create_bot
from bot_locks import claim_shards
from bot_startup import StartupError
from client import PollingPolicy, RunComfyClient
from services.metrics import Metrics
from storage import Storage
from tests.e2e_harness import harness_settings
from tests.helpers import FAST_POLLING, FAST_RETRY

INSTANT_POLLING = PollingPolicy(
    first_poll=0.02, min_interval=0.02, max_interval=0.2, warmup_interval=0.02
)


async def _run(args: argparse.Namespace) -> None:
    discord.http.Route.BASE = f"{args.discord}/api/v10"
    gateway = args.discord.replace("http://", "ws://") + "/gateway"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    settings = harness_settings(
        Path(args.folder), runcomfy_base=args.runcomfy, guild_id=0, daily_credits=1000
    )
    postgres = args.database.startswith("postgresql://")
    settings = replace(
        settings,
        guild_id=None,  # global commands: every guild, whichever process syncs them
        database_url=args.database if postgres else None,
        database_path=Path(args.folder) / "bot.sqlite3" if postgres else Path(args.database),
        shard_count=args.shard_count,
        shard_ids=tuple(int(i) for i in args.shard_ids.split(",")),
        discord_cdn_origins=(args.discord,),
        timing=replace(settings.timing, lease_seconds=args.lease_seconds, lease_check=0.2),
    )
    async with (
        aiohttp.ClientSession() as session,
        Storage.open(settings.database_target, settings.quota) as storage,
    ):
        await claim_shards(storage, settings)
        metrics = Metrics()
        client = RunComfyClient(
            session,
            settings.client,
            retry=FAST_RETRY,
            polling=INSTANT_POLLING if args.instant else FAST_POLLING,
            request_timeout=15.0,
            on_request=metrics.api_request,
        )
        bot = create_bot(
            settings,
            session=session,
            storage=storage,
            runcomfy=client,
            metrics=metrics,
            guild_ready_timeout=0.05,
        )
        async with bot:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
            await bot.login("fake-bot-token")
            connect = asyncio.create_task(bot.connect())
            await bot.wait_until_ready()
            print("ready", flush=True)
            with contextlib.suppress(asyncio.CancelledError):
                await connect


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--discord", required=True)
    parser.add_argument("--runcomfy", required=True)
    parser.add_argument("--database", required=True, help="a postgresql:// URL or an SQLite file")
    parser.add_argument("--folder", required=True, help="where the command hash is kept")
    parser.add_argument("--shard-count", type=int, required=True)
    parser.add_argument("--shard-ids", required=True)
    parser.add_argument("--lease-seconds", type=float, default=1.0)
    parser.add_argument("--instant", action="store_true")
    args = parser.parse_args()
    try:
        asyncio.run(_run(args))
    except StartupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
