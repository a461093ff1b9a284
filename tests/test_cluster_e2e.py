"""Two real bot processes, one per gateway shard, on one PostgreSQL database, against the fake
Discord (which routes each guild's events to its shard) and the fake RunComfy.

A member's command reaches the process that owns the guild's shard; when that process is killed
with SIGKILL its jobs are taken over by the other and delivered once; a Cancel clicked on a
restarted process stops the job the other process now follows; a third process on a shard that
is already running is refused with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from storage import Storage
from storage.models import JobState
from tests.e2e_harness import JOB_ID_IN_TEXT, button_id
from tests.fakes.discord import FakeDiscord, FakeGuild, StoredMessage
from tests.fakes.runcomfy import FakeRunComfy, JobScript
from tests.helpers import FOREVER, finish_now, wait_job_state

ROOT = Path(__file__).resolve().parent.parent
LEASE = 1.0


def shard_of(guild_id: int) -> int:
    return (guild_id >> 22) % 2


@dataclass
class Cluster:
    discord: FakeDiscord
    runcomfy: FakeRunComfy
    url: str
    guilds: dict[int, FakeGuild]  # by shard
    folder: Path
    processes: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)

    async def start(self, shard: int) -> asyncio.subprocess.Process:
        """A bot process for ``shard`` of 2; returns once it is connected."""
        process = await self.spawn(shard)
        assert process.stdout is not None
        async with asyncio.timeout(60):
            line = await process.stdout.readline()
        assert line.strip() == b"ready", line
        self.processes[shard] = process
        return process

    async def spawn(self, shard: int) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.cluster_bot",
            "--discord",
            self.discord.base_url,
            "--runcomfy",
            self.runcomfy.base_url,
            "--database",
            self.url,
            "--folder",
            str(self.folder),
            "--shard-count",
            "2",
            "--shard-ids",
            str(shard),
            "--lease-seconds",
            str(LEASE),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def kill(self, shard: int) -> None:
        process = self.processes.pop(shard)
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL

    async def imagine(self, shard: int, prompt: str) -> tuple[int, str]:
        """/imagine in the guild on ``shard``: (its status message id, the job id)."""
        guild = self.guilds[shard]
        sent = await self.discord.slash_command("imagine", {"prompt": prompt}, guild_id=guild.id)
        original = await sent.wait_for_original()
        found = JOB_ID_IN_TEXT.search(original.content) or JOB_ID_IN_TEXT.search(
            str(original.embeds)
        )
        assert found, original
        return original.id, found.group(1)


@contextlib.asynccontextmanager
async def cluster(postgres_url: str) -> AsyncIterator[Cluster]:
    async with (
        FakeDiscord() as discord_fake,
        FakeRunComfy(token="test-token") as runcomfy,
        contextlib.AsyncExitStack() as stack,
    ):
        first = discord_fake.guild
        # a guild on the other shard: 1,001 ms older (an odd step in the bits above the low 22),
        # so no id the fake makes from now on can be the same
        other = discord_fake.add_guild(first.id - (1001 << 22), name="Other Guild")
        guilds = {shard_of(first.id): first, shard_of(other.id): other}
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="studio-cluster-")))
        built = Cluster(discord_fake, runcomfy, postgres_url, guilds, folder)
        try:
            yield built
        finally:
            for process in built.processes.values():
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            for process in built.processes.values():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), timeout=20)
                if process.returncode is None:
                    process.kill()
                    await process.wait()


async def owner_of(url: str, job_id: str) -> str | None:
    async with Storage.open(url) as storage:
        holders = await storage.leases.holders([job_id])
    return holders[job_id][1]


async def test_each_guilds_commands_reach_its_shards_process(postgres_url: str) -> None:
    async with cluster(postgres_url) as c:
        await c.start(0)
        await c.start(1)
        jobs = {shard: (await c.imagine(shard, f"a cat on shard {shard}"))[1] for shard in (0, 1)}
        async with Storage.open(postgres_url) as storage:
            for shard, job_id in jobs.items():
                job = await wait_job_state(storage, job_id, JobState.DELIVERED, timeout=30)
                assert job.guild_id == c.guilds[shard].id
                assert (await storage.leases.holders([job_id]))[job_id][1] == f"shards {shard} of 2"
            assert await storage.quota.audit() == []
        for shard in (0, 1):
            channel = c.guilds[shard].text_channel
            assert channel is not None
            results = [m for m in c.discord.messages_in(channel) if m.attachments]
            assert len(results) == 1


async def test_a_killed_processs_job_is_taken_over_and_a_cancel_on_its_restart_stops_it(
    postgres_url: str,
) -> None:
    async with cluster(postgres_url) as c:
        await c.start(0)
        await c.start(1)
        c.runcomfy.script(JobScript(queue_seconds=FOREVER), JobScript(queue_seconds=FOREVER))
        status_id, cancelled_id = await c.imagine(0, "a cat to cancel")
        _, delivered_id = await c.imagine(0, "a cat to deliver")
        async with Storage.open(postgres_url) as storage:
            for job_id in (cancelled_id, delivered_id):
                await wait_job_state(storage, job_id, JobState.QUEUED, timeout=30)
            await c.kill(0)  # SIGKILL: its jobs keep their leases until they expire
            for job_id in (cancelled_id, delivered_id):
                await _until_owner(storage, job_id, "shards 1 of 2")

            # the taken-over job finishes: delivered once, through REST, by shard 1's process
            delivered = await storage.jobs.get(delivered_id)
            assert delivered is not None
            finish_now(c.runcomfy, delivered.request_id)
            await wait_job_state(storage, delivered_id, JobState.DELIVERED, timeout=30)

            # shard 0 back; the Cancel button reaches it, the job is followed by shard 1's
            await c.start(0)
            status = c.discord.message(status_id)
            click = await c.discord.click_button(status, button_id(status, "Cancel"))
            await click.wait_for_callback()
            cancelled = await wait_job_state(storage, cancelled_id, JobState.CANCELLED, timeout=5)
            assert cancelled.request_id is not None
            await asyncio.sleep(1.5)  # shard 1's follower has stopped polling it by now
            polls = _polls(c.runcomfy, cancelled.request_id)
            await asyncio.sleep(1.0)
            assert _polls(c.runcomfy, cancelled.request_id) == polls
            assert await storage.quota.audit() == []
            balance = await storage.quota.balance(c.guilds[0].member.id, c.guilds[0].id)
            assert balance.used == delivered.cost  # the cancelled job's credits are back

        channel = c.guilds[0].text_channel
        assert channel is not None
        results = [m for m in c.discord.messages_in(channel) if m.attachments]
        assert len(results) == 1  # the delivered one, once; nothing for the cancelled one
        assert c.runcomfy.count("submit") == 2


async def test_moderators_buttons_work_on_jobs_another_process_holds(postgres_url: str) -> None:
    async with cluster(postgres_url) as c:
        guild = c.guilds[0]
        log = c.discord.add_text_channel(guild, "mod-log")  # before the bots connect
        await c.start(0)
        await c.start(1)
        for command, options, answer in (
            ("log-channel", {"channel": log}, "The moderators' log now goes to"),
            ("approval", {"enabled": True}, "Approval mode is on"),
        ):
            said = await c.discord.slash_command(
                f"admin {command}", options, guild_id=guild.id, user=guild.admin
            )
            await said.wait_for_callback()
            assert said.callback_data and answer in said.callback_data["content"]
        held_ids = [(await c.imagine(0, f"held {n}"))[1] for n in range(2)]
        async with Storage.open(postgres_url) as storage:
            for job_id in held_ids:
                await wait_job_state(storage, job_id, JobState.AWAITING_APPROVAL, timeout=30)
            await _entries(c, log.id, held_ids)  # posted by shard 0's process
            await c.kill(0)
            for job_id in held_ids:
                await _until_owner(storage, job_id, "shards 1 of 2")
            await c.start(0)  # the clicks reach shard 0's new process; shard 1's holds the jobs
            approve_id, reject_id = held_ids
            entries = await _entries(c, log.id, held_ids)

            loop = asyncio.get_running_loop()
            for label, job_id, state in (
                ("Approve", approve_id, JobState.DELIVERED),
                ("Reject", reject_id, JobState.REJECTED),
            ):
                started = loop.time()
                click = await c.discord.click_button(
                    entries[job_id], button_id(entries[job_id], label), user=guild.admin
                )
                await click.wait_for_callback()
                await wait_job_state(storage, job_id, state, timeout=5)
                assert loop.time() - started < 1.0, label
            delivered = await storage.jobs.get(approve_id)
            assert delivered is not None and delivered.result_message_id is not None
            assert delivered.result_message_id in c.discord.messages

            # Remove and Refund on the approved result's entry, from the same process
            entry = await c.discord.wait_until(
                lambda: (
                    (m := c.discord.messages.get(entries[approve_id].id))
                    and "Refund" in [b["label"] for b in m.buttons()]
                    and m
                ),
                timeout=10,
                describe="the entry with Remove and Refund",
            )
            member = guild.member
            assert member is not None
            before = (await storage.quota.balance(member.id, guild.id)).used
            for label in ("Remove", "Refund"):
                click = await c.discord.click_button(
                    entry, button_id(entry, label), user=guild.admin
                )
                await click.wait_for_callback()
            await c.discord.wait_until(
                lambda: delivered.result_message_id in c.discord.deleted_messages,
                timeout=1.0,
                describe="the result removed",
            )
            async with asyncio.timeout(1.0):
                while (await storage.quota.balance(member.id, guild.id)).used == before:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert (await storage.quota.balance(member.id, guild.id)).used == 0
            assert await storage.quota.audit() == []
        channel = guild.text_channel
        assert channel is not None
        # the approved result was posted once (then removed); nothing for the rejected one
        assert [m.id for m in c.discord.messages_in(channel) if m.attachments] == []
        assert delivered.result_message_id in c.discord.deleted_messages


async def _entries(c: Cluster, log_id: int, job_ids: list[str]) -> dict[str, StoredMessage]:
    """Each job's entry in the moderators' log."""

    def found() -> dict[str, StoredMessage] | None:
        entries = {
            job_id: m
            for m in c.discord.messages_in(log_id)
            for job_id in job_ids
            if job_id in str(m.embeds)
        }
        return entries if len(entries) == len(job_ids) else None

    return await c.discord.wait_until(found, timeout=30, describe="the log entries")


async def test_a_second_process_on_a_running_shard_is_refused_with_one_line(
    postgres_url: str,
) -> None:
    async with cluster(postgres_url) as c:
        await c.start(1)
        second = await c.spawn(1)
        async with asyncio.timeout(60):
            out, err = await second.communicate()
        assert second.returncode == 1
        assert err.decode().strip().splitlines() == [
            "error: SHARD_IDS: another bot process already runs shard 1 on this database;"
            " stop it first or give this one other SHARD_IDS"
        ]
        assert out == b""


async def _until_owner(storage: Storage, job_id: str, owner: str) -> None:
    async with asyncio.timeout(LEASE * 10):
        while (await storage.leases.holders([job_id]))[job_id][1] != owner:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def _polls(fake: FakeRunComfy, request_id: str) -> int:
    return sum(1 for r in fake.requests if request_id in r.path and r.endpoint == "status")


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
