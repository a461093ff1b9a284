"""Storage benchmark: reservation throughput and the resume query on a large history.

Run from the checkout: ``.venv/bin/python bench/storage.py`` (``--help`` for sizes).

1. Reserve + commit pairs per second: ``--users`` concurrent members (default 200) on one
   database file, each in a loop doing ``jobs.create_reserved`` then ``quota.commit``; then the
   same with ``jobs.transition(DELIVERED)`` (the bot's real path: state change, event and
   commit in one transaction) as the second step. ``--repeat`` runs of each (default 3), each on
   a fresh file; the median and the best are printed (the machine may be shared).
2. ``jobs.unfinished()`` with ``--jobs`` jobs stored (default 100,000), ``--unfinished`` of them
   (default 100) not finished: median and worst of repeated calls.
3. On that same large history, the bot's real reservation path (``create_reserved`` with
   ``max_in_flight``, which counts the member's unfinished jobs inside the transaction) + deliver,
   and the per-member reads asked on each request (``last_created_at``, ``in_flight_count``).

``--postgres URL`` runs 1. against fresh databases on that PostgreSQL server (with ``--jobs 0``,
which skips 2. and 3.).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder is sys.path[0] and its name would shadow the storage
# package; put the checkout first instead.
_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench"]
sys.path.insert(0, str(_ROOT))

from storage import JobKind, JobState, NewJob, QuotaSettings, Storage  # noqa: E402
from tests.pg_fixtures import make_database  # noqa: E402

GUILDS = 8


def _new_job(user: int) -> NewJob:
    return NewJob(
        kind=JobKind.IMAGINE,
        user_id=user,
        guild_id=1000 + user % GUILDS,
        channel_id=5000 + user % GUILDS,
        prompt="a lighthouse at dusk, oil painting",
        params={"num_images": 1, "resolution": "1K", "aspect_ratio": "1:1"},
        cost=1,
        interaction_token="t" * 64,
    )


async def _pairs(
    storage: Storage,
    users: int,
    per_user: int,
    via_transition: bool,
    max_in_flight: int | None = None,
) -> tuple[float, float]:
    """Run users x per_user pairs concurrently; returns (pairs per second, CPU µs per pair)."""

    async def member(user: int) -> None:
        for _ in range(per_user):
            job = await storage.jobs.create_reserved(_new_job(user), max_in_flight=max_in_flight)
            if via_transition:
                await storage.jobs.transition(job.id, JobState.DELIVERED, result_urls=["u"])
            else:
                await storage.quota.commit(job.id)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(member(u) for u in range(1, users + 1)))
    pairs = users * per_user
    cpu_per_pair = (time.process_time() - cpu) / pairs * 1e6
    return pairs / (time.perf_counter() - started), cpu_per_pair


async def _fill(storage: Storage, missing: int, unfinished: int, users: int) -> None:
    """Add ``missing`` finished jobs and ``unfinished`` running ones."""
    per_user, extra = divmod(max(0, missing), users)

    async def member(user: int, n: int) -> None:
        for _ in range(n):
            job = await storage.jobs.create_reserved(_new_job(user))
            await storage.jobs.transition(job.id, JobState.DELIVERED, result_urls=["u"])

    await asyncio.gather(
        *(member(u, per_user + (1 if u <= extra else 0)) for u in range(1, users + 1))
    )
    for i in range(unfinished):
        job = await storage.jobs.create_reserved(_new_job(users + 1 + i))
        await storage.jobs.transition(job.id, JobState.RUNNING, request_id=f"req-{i}")


async def _time_unfinished(storage: Storage, runs: int) -> tuple[float, float, int]:
    timings = []
    found = 0
    for _ in range(runs):
        started = time.perf_counter()
        found = len(await storage.jobs.unfinished())
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), max(timings), found


async def _time_member_reads(storage: Storage, users: int, runs: int) -> str:
    """Median µs of the per-request reads, for members spread over the history."""
    figures = []
    for name, call in (
        ("last_created_at", lambda u: storage.jobs.last_created_at(u, 1000 + u % GUILDS)),
        (
            "in_flight_count",
            lambda u: storage.jobs.in_flight_count(user_id=u, guild_id=1000 + u % GUILDS),
        ),
    ):
        timings = []
        for i in range(runs):
            started = time.perf_counter()
            await call(1 + i % users)
            timings.append(time.perf_counter() - started)
        figures.append(f"{name} median {statistics.median(timings) * 1e6:.0f} µs")
    return ", ".join(figures)


async def _throughput(folder: Path, args: argparse.Namespace, via_transition: bool) -> str:
    """Each repeat on a fresh file; returns the figures as one line."""
    quota = QuotaSettings(default_daily_credits=10**6)
    per_user = max(1, args.pairs // args.users)
    rates, cpus = [], []
    for attempt in range(args.repeat):
        path: Path | str = folder / f"pairs-{via_transition}-{attempt}.sqlite3"
        if args.postgres:  # a fresh database on that server
            path = await asyncio.to_thread(make_database, args.postgres)
        async with Storage.open(path, quota) as storage:
            rate, cpu = await _pairs(storage, args.users, per_user, via_transition)
            rates.append(rate)
            cpus.append(cpu)
            assert await storage.quota.audit() == [], "the books do not balance"
    runs = ", ".join(f"{r:,.0f}" for r in rates)
    return (
        f"median {statistics.median(rates):,.0f} pairs/s, best {max(rates):,.0f}"
        f" (runs: {runs}); CPU {statistics.median(cpus):.0f} µs/pair"
        f" ({args.users} users x {per_user} pairs)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=20_000, help="pairs per throughput run")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs of each kind")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--unfinished", type=int, default=100)
    parser.add_argument("--runs", type=int, default=50, help="unfinished() calls to time")
    parser.add_argument(
        "--history-pairs", type=int, default=10_000, help="pairs on the large history (3.)"
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run 1. on fresh databases of this PostgreSQL server instead (2. and 3.: --jobs 0)",
    )
    args = parser.parse_args()

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average before: {load} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        line = await _throughput(folder, args, via_transition=False)
        print(f"create_reserved + quota.commit:          {line}")
        line = await _throughput(folder, args, via_transition=True)
        print(f"create_reserved + transition(DELIVERED): {line}")
        if args.jobs <= 0:
            return

        path = folder / "history.sqlite3"
        quota = QuotaSettings(default_daily_credits=10**6)
        async with Storage.open(path, quota) as storage:
            started = time.perf_counter()
            await _fill(storage, args.jobs - args.unfinished, args.unfinished, args.users)
            filled = time.perf_counter() - started
            print(f"stored {args.jobs:,} jobs in {filled:.1f} s (reserve + deliver each)")
            median, worst, found = await _time_unfinished(storage, args.runs)
            print(
                f"unfinished() with {args.jobs:,} jobs stored, {found} unfinished:"
                f" median {median * 1000:.2f} ms, worst {worst * 1000:.2f} ms"
                f" over {args.runs} calls"
            )
            print(
                f"per-member reads with {args.jobs:,} jobs stored: "
                + await _time_member_reads(storage, args.users, args.runs)
            )
            per_user = max(1, args.history_pairs // args.users)
            rate, cpu = await _pairs(storage, args.users, per_user, True, max_in_flight=3)
            print(
                f"create_reserved(max_in_flight=3) + transition(DELIVERED) with {args.jobs:,}"
                f" jobs stored: {rate:,.0f} pairs/s; CPU {cpu:.0f} µs/pair"
                f" ({args.users} users x {per_user} pairs)"
            )
            assert await storage.quota.audit() == [], "the books do not balance"
            print(f"database file: {path.stat().st_size / 2**20:.1f} MiB; books balance")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average after: {load}")


if __name__ == "__main__":
    asyncio.run(main())
