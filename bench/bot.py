"""Benchmark: the real bot against the fake Discord and the fake RunComfy.

    .venv/bin/python -m bench.bot                 # every scenario, default sizes
    .venv/bin/python -m bench.bot --only ack      # one scenario (see SCENARIOS)

Scenarios (each on a fresh database and a fresh bot, production pacing and polling):
- baseline: calibration, a bare discord.py bot whose /imagine only defers (same fake, same load).
- ack: 500 /imagine from 100 members spread evenly over one second; the time from the fake
  sending INTERACTION_CREATE to it receiving the interaction callback (median, p99).
- burst: the same 500 arriving at once.
- throughput: 500 jobs with an instant API (no queue, no run time): jobs delivered per second
  from the first dispatch to the last delivery, and process CPU time per job.
- memory: 1,000 jobs in flight (a long queue): resident memory of the process.
- split-ack, split-burst, split-throughput: the same with the fake Discord in a worker process,
  so this process runs only the bot: its CPU time per job is the bot's own.

The fake RunComfy always runs in a subprocess (``python -m tests.fakes.runcomfy``). In the
in-process scenarios the fake Discord shares the bot's process and event loop, as in the issue's
calibration, so their CPU figure is an upper bound for the bot. Members get 10 jobs in flight and
1,000 credits so that every request takes the full path (policy, reservation, job) rather than an
early refusal. Timings depend on the machine and what else runs on it: compare with baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl
from discord.ext import commands

from client import PollingPolicy
from services.settings import JobTiming
from storage.models import JobState
from tests.e2e_harness import StudioEnv, harness_settings
from tests.fakes.discord import FakeDiscord, FakeMember, SentInteraction

ROOT = Path(__file__).resolve().parent.parent
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
PRODUCTION_POLLING = PollingPolicy()  # the client's defaults
INSTANT_POLLING = PollingPolicy(
    first_poll=0.02, min_interval=0.02, max_interval=0.2, warmup_interval=0.02
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def runcomfy_process(queue_seconds: float, run_seconds: float) -> AsyncIterator[str]:
    """The fake RunComfy in its own process; yields its base URL."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.runcomfy",
        "--port",
        str(port),
        "--token",
        "test-token",
        "--queue-seconds",
        str(queue_seconds),
        "--run-seconds",
        str(run_seconds),
        "--queue-position",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(base + "/v1/requests/x/status"):
                        break
                await asyncio.sleep(0.05)
        yield base
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=10)


@contextlib.asynccontextmanager
async def environment(
    members: int, *, queue_seconds: float, run_seconds: float
) -> AsyncIterator[tuple[StudioEnv, list[FakeMember]]]:
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            runcomfy_process(queue_seconds, run_seconds) as base,
            FakeDiscord(interaction_ack_timeout=None, message_events=False) as discord_fake,
            aiohttp.ClientSession() as session,
        ):
            guild = discord_fake.guild
            crowd = [
                discord_fake.add_member(guild, f"member{i}", roles=[guild.member_role])
                for i in range(members)
            ]
            settings = harness_settings(
                Path(tmp),
                runcomfy_base=base,
                guild_id=guild.id,
                daily_credits=1000,
                status_interval=3.0,  # the production default
                job_timeout=900.0,
            )
            # the production pacing (the harness turns request-first yielding off for tests)
            settings = replace(settings, timing=JobTiming(job_timeout=900.0))
            env = StudioEnv(discord_fake, None, session, settings)  # type: ignore[arg-type]
            yield env, crowd


async def allow_many(env: StudioEnv, guild_id: int | None = None) -> None:
    assert env.storage is not None and env.bot is not None
    guild_id = guild_id or env.discord.guild.id
    await env.storage.policy.update(guild_id, max_jobs_in_flight=10)
    env.bot.policy.invalidate(guild_id)


async def send_spread(
    env: StudioEnv, crowd: Sequence[FakeMember], count: int, over: float
) -> list[SentInteraction]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent: list[SentInteraction] = []
    for i in range(count):
        delay = start + over * i / count - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append(
            await env.discord.slash_command(
                "imagine", {"prompt": f"bench {i}"}, user=crowd[i % len(crowd)]
            )
        )
    return sent


async def send_burst(
    env: StudioEnv, crowd: Sequence[FakeMember], count: int
) -> list[SentInteraction]:
    return list(
        await asyncio.gather(
            *(
                env.discord.slash_command(
                    "imagine", {"prompt": f"burst {i}"}, user=crowd[i % len(crowd)]
                )
                for i in range(count)
            )
        )
    )


async def ack_delays(env: StudioEnv, sent: Sequence[SentInteraction]) -> list[float]:
    pending = list(sent)

    def all_answered() -> bool:
        # re-run on every request the fake answers: drop the answered ones as we go
        while pending and pending[-1].callback is not None:
            pending.pop()
        return not pending or all(s.callback is not None for s in pending)

    await env.discord.wait_until(all_answered, timeout=120, describe="every callback")
    refused = sum(1 for s in sent if s.ephemeral)
    if refused:
        print(f"  note: {refused} requests were refused (ephemeral)")
    return [s.callback_delay or 0.0 for s in sent]


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


def report_delays(name: str, delays: Sequence[float]) -> None:
    ms = [d * 1000 for d in delays]
    print(
        f"{name}: n={len(ms)} median {statistics.median(ms):.1f} ms,"
        f" p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms"
    )


async def scenario_ack(count: int, members: int) -> None:
    async with (
        environment(members, queue_seconds=2.0, run_seconds=3.0) as (env, crowd),
        env.running(polling=PRODUCTION_POLLING),
    ):
        await allow_many(env)
        sent = await send_spread(env, crowd, count, over=1.0)
        report_delays(f"ack, {count} spread over 1 s", await ack_delays(env, sent))


async def scenario_burst(count: int, members: int) -> None:
    async with (
        environment(members, queue_seconds=2.0, run_seconds=3.0) as (env, crowd),
        env.running(polling=PRODUCTION_POLLING),
    ):
        await allow_many(env)
        sent = await send_burst(env, crowd, count)
        report_delays(f"ack, {count} at once", await ack_delays(env, sent))


async def scenario_throughput(count: int, members: int) -> None:
    async with (
        environment(members, queue_seconds=0.0, run_seconds=0.0) as (env, crowd),
        env.running(polling=INSTANT_POLLING),
    ):
        await allow_many(env)
        assert env.storage is not None
        cpu_before = time.process_time()
        started = time.perf_counter()
        await send_spread(env, crowd, count, over=0.5)
        while True:
            stats = await env.storage.jobs.stats(env.discord.guild.id, since=EPOCH)
            if stats.delivered + stats.failures >= count:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        print(
            f"throughput, instant API: {stats.delivered} delivered"
            f" ({stats.failures} failed) in {elapsed:.2f} s ="
            f" {stats.delivered / elapsed:.0f} jobs/s"
        )
        print(
            f"CPU per job (bot + discord.py + fake Discord, one process):"
            f" {cpu / count * 1000:.2f} ms"
        )


async def scenario_memory(count: int, members: int) -> None:
    async with environment(members, queue_seconds=600.0, run_seconds=1.0) as (env, crowd):
        rss_idle = rss_mib()
        async with env.running(polling=PRODUCTION_POLLING):
            await allow_many(env)
            rss_ready = rss_mib()
            sent = await send_spread(env, crowd, count, over=2.0)
            await ack_delays(env, sent)
            assert env.bot is not None and env.storage is not None
            await asyncio.sleep(3.0)  # polls under way, status edits sent
            in_flight = env.bot.jobs.active_count()
            queued = sum(
                1 for j in await env.storage.jobs.unfinished() if j.state == JobState.QUEUED
            )
            print(
                f"memory: {in_flight} jobs in flight ({queued} queued at RunComfy):"
                f" RSS {rss_mib():.0f} MiB (before start {rss_idle:.0f} MiB,"
                f" bot ready {rss_ready:.0f} MiB, peak {peak_rss_mib():.0f} MiB)"
            )


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class BareBot(commands.Bot):
    """The calibration: a discord.py bot whose /imagine only defers."""

    def __init__(self) -> None:
        super().__init__(
            command_prefix="!", intents=discord.Intents.none(), guild_ready_timeout=0.05
        )

        @self.tree.command(name="imagine", description="defer only")
        async def imagine(interaction: discord.Interaction, prompt: str) -> None:
            await interaction.response.defer()

    async def setup_hook(self) -> None:
        await self.tree.sync()


async def scenario_baseline(count: int, members: int) -> None:
    async with FakeDiscord(interaction_ack_timeout=None, message_events=False) as fake:
        guild = fake.guild
        crowd = [fake.add_member(guild, f"m{i}", roles=[guild.member_role]) for i in range(members)]
        env = StudioEnv(fake, None, None, None)  # type: ignore[arg-type]
        async with fake.run_bot(BareBot()):
            sent = await send_spread(env, crowd, count, over=1.0)
            report_delays(f"baseline (bare defer), {count} spread", await ack_delays(env, sent))
            sent = await send_burst(env, crowd, count)
            report_delays(f"baseline (bare defer), {count} at once", await ack_delays(env, sent))


# -- the fake Discord in its own process ---------------------------------------------------------
# discord.py is pointed at a FakeDiscord living in a worker process (python -m bench.bot
# --fake-discord-worker ...), so this process runs the bot alone: its CPU time is the bot's
# (with discord.py and its HTTP clients), and the fake no longer competes for its event loop.


async def _stdin_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def fake_discord_worker(kind: str, count: int, members: int) -> None:
    async with FakeDiscord(interaction_ack_timeout=None, message_events=False) as fake:
        guild = fake.guild
        crowd = [fake.add_member(guild, f"m{i}", roles=[guild.member_role]) for i in range(members)]
        info = {
            "api_base": fake.api_base,
            "gateway": fake.gateway_url,
            "guild_id": guild.id,
            "token": fake.token,
        }
        print(json.dumps(info), flush=True)
        await fake.wait_until_connected(timeout=60)
        await fake.wait_until(lambda: fake.commands(guild.id), timeout=60)
        if (await _stdin_line()).strip() != "go":  # the bot is ready and configured
            return
        env = StudioEnv(fake, None, None, None)  # type: ignore[arg-type]
        started = time.perf_counter()
        if kind == "burst":
            sent = await send_burst(env, crowd, count)
        else:
            sent = await send_spread(env, crowd, count, over=1.0 if kind == "ack" else 0.5)
        delays = await ack_delays(env, sent)
        if kind == "throughput":
            await fake.wait_until(
                lambda: sum(1 for s in sent if (m := s.original) and m.attachments) >= count,
                timeout=300,
                describe="every delivery",
            )
        elapsed = time.perf_counter() - started
        print(json.dumps({"delays": delays, "elapsed": elapsed}), flush=True)
        await _stdin_line()  # "quit"


async def split_scenario(kind: str, count: int, members: int) -> None:
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.bot",
        "--fake-discord-worker",
        kind,
        "--jobs",
        str(count),
        "--members",
        str(members),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert worker.stdin is not None and worker.stdout is not None
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    try:
        info = json.loads(await worker.stdout.readline())
        discord.http.Route.BASE = info["api_base"]
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(info["gateway"])
        instant = kind == "throughput"
        queue, run = (0.0, 0.0) if instant else (2.0, 3.0)
        with tempfile.TemporaryDirectory() as tmp:
            async with runcomfy_process(queue, run) as base, aiohttp.ClientSession() as session:
                settings = harness_settings(
                    Path(tmp), runcomfy_base=base, guild_id=info["guild_id"], daily_credits=1000
                )
                settings = replace(settings, timing=JobTiming(job_timeout=900.0))
                env = StudioEnv(None, None, session, settings)  # type: ignore[arg-type]
                polling = INSTANT_POLLING if instant else PRODUCTION_POLLING
                async with env.bare_running(info["token"], polling=polling):
                    await allow_many(env, info["guild_id"])
                    cpu_before = time.process_time()
                    worker.stdin.write(b"go\n")
                    result = json.loads(await worker.stdout.readline())
                    cpu = time.process_time() - cpu_before
        label = {"ack": f"{count} spread over 1 s", "burst": f"{count} at once"}.get(kind, "")
        if kind == "throughput":
            elapsed = result["elapsed"]
            print(
                f"[split] throughput, instant API: {count} delivered in {elapsed:.2f} s ="
                f" {count / elapsed:.0f} jobs/s; bot process CPU per job"
                f" {cpu / count * 1000:.2f} ms"
            )
        else:
            report_delays(f"[split] ack, {label}", result["delays"])
            print(
                f"[split] bot process CPU per request (ack + its job so far): "
                f"{cpu / count * 1000:.2f} ms"
            )
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
        if worker.returncode is None:
            worker.stdin.write(b"quit\n")
            await asyncio.wait_for(worker.wait(), timeout=30)


async def scenario_split_ack(count: int, members: int) -> None:
    await split_scenario("ack", count, members)


async def scenario_split_burst(count: int, members: int) -> None:
    await split_scenario("burst", count, members)


async def scenario_split_throughput(count: int, members: int) -> None:
    await split_scenario("throughput", count, members)


SCENARIOS = {
    "baseline": scenario_baseline,
    "ack": scenario_ack,
    "burst": scenario_burst,
    "throughput": scenario_throughput,
    "memory": scenario_memory,
    "split-ack": scenario_split_ack,
    "split-burst": scenario_split_burst,
    "split-throughput": scenario_split_throughput,
}


async def main(args: argparse.Namespace) -> None:
    chosen = [args.only] if args.only else list(SCENARIOS)
    for name in chosen:
        count = args.memory_jobs if name == "memory" else args.jobs
        members = max(args.members, count // 10) if name == "memory" else args.members
        await SCENARIOS[name](count, members)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SCENARIOS))
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--memory-jobs", type=int, default=1000)
    parser.add_argument("--fake-discord-worker", choices=("ack", "burst", "throughput"))
    arguments = parser.parse_args()
    if arguments.fake_discord_worker:
        asyncio.run(
            fake_discord_worker(arguments.fake_discord_worker, arguments.jobs, arguments.members)
        )
    else:
        asyncio.run(main(arguments))
