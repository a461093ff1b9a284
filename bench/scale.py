"""Benchmark: several bot processes on one PostgreSQL server, and one process on SQLite.

    .venv/bin/python -m bench.scale [--jobs 500] [--fault-jobs 200] [--only throughput|fault]

Every bot is a real process (``python -m tests.cluster_bot``: the real bot, one gateway shard
per process) against the fake Discord (in this process, routing each guild's events to its
shard) and the fake RunComfy (a process of its own). PostgreSQL is a throwaway cluster
(tests.pg_server) unless ``TEST_DATABASE_URL`` names one; each run gets a fresh database.

- throughput: 1, 2 and 4 processes on PostgreSQL and 1 on SQLite, in the same run, with an
  instant API: ``--jobs`` /imagine from 100 members in 4 guilds spread over 0.5 s; jobs
  delivered per second (first command to last delivery), acknowledgement (INTERACTION_CREATE to
  callback) median and p99, and the bot processes' CPU time per job (from /proc).
- fault: 3 processes, ``--fault-jobs`` jobs (2 s queued, 1 s running at RunComfy) sent over 2 s;
  the process of shard 0 is killed with SIGKILL once half are sent. Jobs lost, results posted
  twice, ledger drift (all must be 0), and the time until its jobs were taken over.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from bench.bot import EPOCH, percentile, runcomfy_process
from storage import Storage
from tests import pg_server
from tests.e2e_harness import JOB_ID_IN_TEXT
from tests.fakes.discord import (
    FakeDiscord,
    FakeGuild,
    FakeMember,
    SentInteraction,
    StoredMessage,
)
from tests.fakes.discord_gateway import NoBotConnected
from tests.pg_fixtures import make_database

ROOT = Path(__file__).resolve().parent.parent
GUILDS = 4
MEMBERS = 25  # per guild
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


@contextlib.asynccontextmanager
async def postgres() -> AsyncIterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="studio-bench-pg-")) / "cluster"
    folder.parent.chmod(0o755)
    url = await asyncio.to_thread(pg_server.start, folder)
    try:
        yield url
    finally:
        await asyncio.to_thread(pg_server.stop, folder)
        shutil.rmtree(folder.parent, ignore_errors=True)


class Bots:
    """The bot processes of one run, one shard each."""

    def __init__(self, fake: FakeDiscord, runcomfy: str, database: str, count: int) -> None:
        self.fake, self.runcomfy, self.database, self.count = fake, runcomfy, database, count
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self.folder = tempfile.mkdtemp(prefix="studio-bench-")  # removed by close()

    async def start(self, shard: int) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.cluster_bot",
            *("--discord", self.fake.base_url, "--runcomfy", self.runcomfy),
            *("--database", self.database, "--folder", self.folder, "--instant"),
            *("--shard-count", str(self.count), "--shard-ids", str(shard)),
            *("--lease-seconds", "3"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert process.stdout is not None
        async with asyncio.timeout(60):
            line = await process.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"bot process for shard {shard} did not start: {line!r}")
        self.processes[shard] = process

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes.values() if p.returncode is None)

    async def close(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def add_guilds(fake: FakeDiscord) -> list[tuple[FakeGuild, list[FakeMember]]]:
    """GUILDS guilds, one on each shard of 4: snowflakes 1,001 ms apart (never an id the fake
    makes later), so ``(id >> 22) % shards`` differs."""
    base = fake.guild.id
    out = []
    for k in range(GUILDS):
        older = base - ((1001 * k) << 22)
        guild = fake.guild if k == 0 else fake.add_guild(older, name=f"Guild {k}")
        members = [
            fake.add_member(guild, f"g{k}m{i}", roles=[guild.member_role]) for i in range(MEMBERS)
        ]
        out.append((guild, members))
    return out


async def prepare(database: str, guilds: list[tuple[FakeGuild, list[FakeMember]]]) -> None:
    async with Storage.open(database) as storage:
        for guild, _ in guilds:
            await storage.policy.update(guild.id, max_jobs_in_flight=10)


async def send(
    fake: FakeDiscord,
    guilds: list[tuple[FakeGuild, list[FakeMember]]],
    count: int,
    over: float,
    at_half: asyncio.Event | None = None,
) -> list[SentInteraction]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = []
    for i in range(count):
        if at_half is not None and i == count // 2:
            at_half.set()
            await asyncio.sleep(0)
        delay = start + over * i / count - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        guild, members = guilds[i % len(guilds)]
        member = members[(i // len(guilds)) % len(members)]
        try:
            sent.append(
                await fake.slash_command(
                    "imagine", {"prompt": f"scale {i}"}, guild_id=guild.id, user=member
                )
            )
        except NoBotConnected:  # its shard's process is dead: "This interaction failed"
            continue
    return sent


async def tally(storage: Storage, guild_ids: list[int]) -> Counter[str]:
    """Jobs by how they stand, over the guilds: delivered, failed, cancelled, unfinished."""
    counts: Counter[str] = Counter()
    for guild_id in guild_ids:
        stats = await storage.jobs.stats(guild_id, since=EPOCH)
        counts.update(
            delivered=stats.delivered,
            failed=stats.failures,
            cancelled=stats.cancelled,
            unfinished=stats.in_flight,
        )
    return counts


async def finished(database: str, guild_ids: list[int], expected: int) -> Counter[str]:
    """Wait (at most 5 minutes) until ``expected`` jobs ended; the tally."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 300
    async with Storage.open(database) as storage:
        while True:
            counts = await tally(storage, guild_ids)
            ended = counts["delivered"] + counts["failed"] + counts["cancelled"]
            if ended >= expected or loop.time() > deadline:
                return counts
            await asyncio.sleep(0.05)


async def held_by(storage: Storage, owner: str) -> int:
    """Unfinished jobs whose lease ``owner`` holds."""
    ids = [j.id for j in await storage.jobs.unfinished()]
    return sum(1 for _, who in (await storage.leases.holders(ids)).values() if who == owner)


async def throughput_run(
    name: str, database: str, processes: int, args: argparse.Namespace
) -> None:
    async with (
        runcomfy_process(0.0, 0.0) as runcomfy,
        FakeDiscord(interaction_ack_timeout=None, message_events=False) as fake,
    ):
        guilds = add_guilds(fake)
        await prepare(database, guilds)
        bots = Bots(fake, runcomfy, database, processes)
        try:
            for shard in range(processes):
                await bots.start(shard)
            cpu_before = bots.cpu()
            started = time.perf_counter()
            sent = await send(fake, guilds, args.jobs, over=0.5)
            await fake.wait_until(
                lambda: all(s.callback is not None for s in sent), timeout=120, describe="acks"
            )
            counts = await finished(database, [g.id for g, _ in guilds], args.jobs)
            delivered, other = counts["delivered"], counts.total() - counts["delivered"]
            elapsed = time.perf_counter() - started
            cpu = bots.cpu() - cpu_before
        finally:
            await bots.close()
    ms = [(s.callback_delay or 0.0) * 1000 for s in sent]
    print(
        f"{name}: {delivered} delivered ({other} other endings) in {elapsed:.2f} s ="
        f" {delivered / elapsed:.0f} jobs/s; ack median {statistics.median(ms):.1f} ms,"
        f" p99 {percentile(ms, 99):.1f} ms; CPU {cpu / max(1, delivered) * 1000:.2f} ms/job",
        flush=True,
    )


async def fault_run(database: str, args: argparse.Namespace) -> None:
    count, processes, victim = args.fault_jobs, 3, 0
    owner = f"shards {victim} of {processes}"
    async with (
        runcomfy_process(2.0, 1.0) as runcomfy,
        FakeDiscord(interaction_ack_timeout=None, message_events=False) as fake,
        Storage.open(database) as storage,
    ):
        guilds = add_guilds(fake)
        await prepare(database, guilds)
        bots = Bots(fake, runcomfy, database, processes)
        try:
            for shard in range(processes):
                await bots.start(shard)
            half = asyncio.Event()
            sending = asyncio.create_task(send(fake, guilds, count, over=2.0, at_half=half))
            await half.wait()
            bots.processes[victim].send_signal(signal.SIGKILL)
            killed_at = time.perf_counter()
            held = await held_by(storage, owner)

            async def taken_over() -> float:
                while await held_by(storage, owner):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                return time.perf_counter() - killed_at

            watching = asyncio.create_task(taken_over())
            sent = await sending
            taken_after = await watching
            guild_ids = [g.id for g, _ in guilds]
            answered = sum(1 for s in sent if s.callback is not None)
            states = await tally(storage, guild_ids)
            deadline = time.perf_counter() + 120
            while states["unfinished"] and time.perf_counter() < deadline:
                await asyncio.sleep(0.2)
                states = await tally(storage, guild_ids)
            audit = await storage.quota.audit()
        finally:
            await bots.close()
        posts = Counter(job_id for m in fake.messages.values() if (job_id := result_of(m)))
    lost = states["unfinished"]
    twice = sum(1 for n in posts.values() if n > 1)
    print(
        f"fault run: {count} /imagine over 2 s ({count - len(sent)} to the dead shard unsent),"
        f" {processes} processes, shard {victim}'s killed"
        f" (SIGKILL) at the halfway mark holding {held} unfinished jobs; {answered} answered;"
        f" jobs: {dict(states)}; {len(posts)} results posted",
        flush=True,
    )
    print(
        f"  jobs lost {lost}, results posted twice {twice}, ledger drift {len(audit)}"
        f" (audit problems); its jobs all taken over {taken_after:.2f} s after the kill"
        f" (lease 3 s, renewed every 1 s)",
        flush=True,
    )


def result_of(message: StoredMessage) -> str | None:
    """The job id of a posted result (a message with images), as the footer names it."""
    if not message.attachments:
        return None
    texts = [message.content] + [str(e.get("footer", {}).get("text", "")) for e in message.embeds]
    for text in texts:
        if found := JOB_ID_IN_TEXT.search(text) or re.search(r"job ([A-Za-z0-9_-]+) ·", text):
            return found.group(1)
    return None


async def main(args: argparse.Namespace) -> None:
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    async with postgres() as server:
        if args.only in (None, "throughput"):
            with tempfile.TemporaryDirectory() as tmp:
                await throughput_run("1 process, SQLite", str(Path(tmp) / "bot.sqlite3"), 1, args)
            for processes in (1, 2, 4):
                database = await asyncio.to_thread(make_database, server)
                await throughput_run(f"{processes} on PostgreSQL", database, processes, args)
        if args.only in (None, "fault"):
            await fault_run(await asyncio.to_thread(make_database, server), args)
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--fault-jobs", type=int, default=200)
    parser.add_argument("--only", choices=("throughput", "fault"))
    asyncio.run(main(parser.parse_args()))
