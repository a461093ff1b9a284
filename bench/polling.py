"""Polling benchmark: API requests per job and completion-detection delay.

Compares the client's adaptive polling (``JobHandle.wait``) with fixed 1 s and 2 s intervals, in
the same run, against the fake RunComfy on 127.0.0.1. Jobs spend 20% of their duration queued
(queue position 2, counting down) and 80% running.

- Requests: status + result calls per job (the one submit is left out; it is the same for all).
- Delay: from the moment the fake completes the job (its timeline, on the shared event loop
  clock) to the moment ``wait()`` returns with the image URLs.

Cases: each job length of ``--durations`` (1K jobs), exact and, by default, within +-20% (real
jobs vary; ``--jitter X`` runs just that spread); and a two-peaked mix (``--mix``) of 1K jobs of
20 s and 4K jobs of 60 s, half each, within the same spread. Phases of the adaptive client:

- first jobs (no history): a new install, only the per-resolution prior to go on;
- learning (rounds 1-2), steady (rounds 3+): one client learning from its finished jobs;
- after a restart: the first jobs of new clients that loaded what the first one learned
  (exported as plain data and read back from JSON, as the bot keeps it in its database).

To finish in minutes, the adaptive client runs several jobs at once per round (they share what
it learns, as a bot's jobs do), and time may be scaled: ``--scale 0.25`` runs every duration
(job timelines, polling intervals, fixed intervals) at a quarter, and the figures are converted
back to real-second equivalents. Request counts do not depend on the scale; only the loopback
latency (~1-2 ms) is inflated by 1/scale in the delays.

Run from the repository root::

    .venv/bin/python -m bench.polling [--scale 0.25] [--jitter 0.2] [--durations 5 20 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import aiohttp

from client import ClientSettings, PollingPolicy, RunComfyClient
from client.api import JobHandle
from client.models import GenerationOptions, JobState, TextToImageRequest
from tests.fakes.runcomfy import FakeRunComfy, JobScript

QUEUE_SHARE = 0.2
MIX = ((20.0, "1K"), (60.0, "4K"))  # the two peaks: (nominal seconds, resolution)


@dataclass(frozen=True)
class Case:
    """Jobs of one kind: drawn from ``kinds`` (nominal seconds, resolution), each +- jitter."""

    label: str
    kinds: tuple[tuple[float, str], ...]
    jitter: float

    @property
    def longest(self) -> float:
        return max(seconds for seconds, _ in self.kinds)


@dataclass(frozen=True)
class Measurement:
    case: str
    strategy: str
    phase: str
    requests: int
    delay: float  # real seconds


class Jobs:
    """Submits jobs of a case to one fake, each with the timeline its resolution calls for."""

    def __init__(self, fake: FakeRunComfy, case: Case, scale: float) -> None:
        self.fake, self.case, self.scale = fake, case, scale
        self._submitting = asyncio.Lock()  # the fake gives scripts out in submit order

    async def submit(self, client: RunComfyClient) -> JobHandle:
        seconds, resolution = random.choice(self.case.kinds)
        factor = 1 + random.uniform(-self.case.jitter, self.case.jitter)
        script = JobScript(
            queue_seconds=QUEUE_SHARE * seconds * factor * self.scale,
            run_seconds=(1 - QUEUE_SHARE) * seconds * factor * self.scale,
            queue_position=2,
        )
        request = TextToImageRequest(
            "a lighthouse at dawn", GenerationOptions(resolution=resolution)
        )
        async with self._submitting:
            self.fake.script(script)
            return await client.submit(request)


async def fixed_interval_wait(handle: JobHandle, interval: float) -> None:
    """The naive client: /status every ``interval``, then /result once it says completed."""
    while True:
        await asyncio.sleep(interval)
        status = await handle.status()
        if status.state is JobState.COMPLETED:
            await handle.result()
            return
        if status.state.is_terminal:
            raise RuntimeError(f"job ended {status.state}")


async def run_job(
    jobs: Jobs, client: RunComfyClient, waiter: Callable[[JobHandle], Awaitable[object]]
) -> tuple[int, float]:
    """One job: (status/result requests, detection delay in real seconds)."""
    loop = asyncio.get_running_loop()
    handle = await jobs.submit(client)
    await waiter(handle)
    noticed = loop.time()
    job = jobs.fake.jobs[handle.request_id]
    requests = sum(
        1
        for r in jobs.fake.requests
        if r.endpoint in ("status", "result") and f"/{handle.request_id}/" in r.path
    )
    return requests, (noticed - job.finished_at) / jobs.scale


async def adaptive_stream(
    jobs: Jobs, session: aiohttp.ClientSession, args: argparse.Namespace
) -> list[Measurement]:
    """One client from a new install: rounds of parallel jobs; then a restarted client."""
    timeout = 10 * jobs.case.longest * args.scale + 10

    async def wait(handle: JobHandle) -> object:
        return await handle.wait(timeout=timeout)

    async def round_of(client: RunComfyClient, phase: str) -> list[Measurement]:
        results = await asyncio.gather(*(run_job(jobs, client, wait) for _ in range(args.parallel)))
        return [Measurement(jobs.case.label, "adaptive", phase, r, d) for r, d in results]

    client = make_client(jobs.fake, session, args.scale)
    out = await round_of(client, "first jobs (no history)")
    for number in range(args.rounds):
        out += await round_of(
            client, "learning (rounds 1-2)" if number < 2 else "steady (rounds 3+)"
        )
    # Restarts: what was learned goes through JSON (as in the database) into a new client,
    # whose first jobs run at once (none learns from another); twice, for more samples.
    stored = json.dumps(client.durations.export())
    for _ in range(2):
        restarted = make_client(jobs.fake, session, args.scale)
        restarted.durations.load(json.loads(stored))
        out += await round_of(restarted, "after a restart")
    return out


async def fixed_stream(
    jobs: Jobs, session: aiohttp.ClientSession, interval: float, args: argparse.Namespace
) -> list[Measurement]:
    client = make_client(jobs.fake, session, args.scale)

    async def wait(handle: JobHandle) -> object:
        return await fixed_interval_wait(handle, interval * args.scale)

    out = []
    for _ in range(args.rounds):
        results = await asyncio.gather(*(run_job(jobs, client, wait) for _ in range(args.parallel)))
        out += [
            Measurement(jobs.case.label, f"fixed {interval:g} s", "-", r, d) for r, d in results
        ]
    return out


def make_client(fake: FakeRunComfy, session: aiohttp.ClientSession, scale: float) -> RunComfyClient:
    default = PollingPolicy()
    policy = replace(
        default,
        first_poll=default.first_poll * scale,
        min_interval=default.min_interval * scale,
        max_interval=default.max_interval * scale,
        warmup_interval=default.warmup_interval * scale,
        dense_interval=default.dense_interval * scale,
        early_look_min=default.early_look_min * scale,
        cold_interval=default.cold_interval * scale,
        cold_until=tuple((res, seconds * scale) for res, seconds in default.cold_until),
    )
    settings = ClientSettings(api_token="bench", api_base=fake.base_url)
    return RunComfyClient(session, settings, polling=policy)


def table(measurements: list[Measurement]) -> str:
    rows = [
        f"{'jobs':<15} {'strategy':<10} {'phase':<24} {'jobs':>4}  "
        f"{'req/job mean':>12} {'max':>4}  {'delay median':>12} {'p90':>6} {'max':>6}"
    ]
    groups: dict[tuple[str, str, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.case, m.strategy, m.phase), []).append(m)
    for (case, strategy, phase), group in groups.items():
        requests = [m.requests for m in group]
        delays = sorted(m.delay for m in group)
        p90 = delays[min(len(delays) - 1, int(0.9 * len(delays)))]
        rows.append(
            f"{case:<15} {strategy:<10} {phase:<24} {len(group):>4}  "
            f"{statistics.mean(requests):>12.1f} {max(requests):>4}  "
            f"{statistics.median(delays):>11.2f}s {p90:>5.2f}s {delays[-1]:>5.2f}s"
        )
    return "\n".join(rows)


def cases(durations: Sequence[float], jitters: Sequence[float], mix: bool) -> list[Case]:
    out = []
    for jitter in jitters:
        spread = f" +-{jitter:.0%}" if jitter else " exact"
        out += [Case(f"{d:g}s{spread}", ((d, "1K"),), jitter) for d in durations]
        if mix:
            out.append(Case(f"1K/4K{spread}", MIX, jitter))
    return out


async def main(args: argparse.Namespace) -> None:
    jitters = [0.0, 0.2] if args.jitter is None else [args.jitter]
    chosen = cases(args.durations, jitters, args.mix)
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        streams = []
        for case in chosen:
            # One fake per case and strategy, so request logs stay small and separate.
            for interval in (None, 1.0, 2.0):
                fake = await stack.enter_async_context(FakeRunComfy(token=None))
                jobs = Jobs(fake, case, args.scale)
                if interval is None:
                    streams.append(adaptive_stream(jobs, session, args))
                else:
                    streams.append(fixed_stream(jobs, session, interval, args))
        results = await asyncio.gather(*streams)
    order = {case.label: number for number, case in enumerate(chosen)}
    measurements = sorted(
        (m for stream in results for m in stream),
        key=lambda m: (order[m.case], m.strategy != "adaptive", m.strategy),
    )
    print(
        f"time scale {args.scale:g} (figures in real-second equivalents); "
        f"{args.parallel} jobs in parallel per round; {args.rounds} rounds after the first jobs"
    )
    print(table(measurements))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.25, help="time scale (1 = real time)")
    parser.add_argument("--durations", type=float, nargs="+", default=[5.0, 20.0, 60.0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds after the first jobs")
    parser.add_argument("--parallel", type=int, default=4, help="jobs per round")
    parser.add_argument(
        "--jitter", type=float, default=None, help="only this spread (default: exact and 0.2)"
    )
    parser.add_argument("--no-mix", dest="mix", action="store_false", help="leave out the mix")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    asyncio.run(main(args))
