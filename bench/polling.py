"""Polling benchmark: API requests per job and completion-detection delay.

Compares the client's adaptive polling (``JobHandle.wait``) with fixed 1 s and 2 s intervals, in
the same run, against the fake RunComfy on 127.0.0.1. Jobs spend 20% of their duration queued
(queue position 2, counting down) and 80% running.

- Requests: status + result calls per job (the one submit is left out; it is the same for all).
- Delay: from the moment the fake completes the job (its timeline, on the shared event loop
  clock) to the moment ``wait()`` returns with the image URLs.

To finish in minutes, the adaptive client runs several jobs at once per round (they share what
it learns, as a bot's jobs do), and time may be scaled: ``--scale 0.25`` runs every duration
(job timelines, polling intervals, fixed intervals) at a quarter, and the figures are converted
back to real-second equivalents. Request counts do not depend on the scale; only the loopback
latency (~1-2 ms) is inflated by 1/scale in the delays.

Exact job lengths (the target) put a fixed-interval poller at the same phase every time, so
its delay is one constant; ``--jitter 0.1`` draws each length within +-10% for a fairer picture.

Run from the repository root::

    .venv/bin/python -m bench.polling [--scale 0.25] [--jitter 0.1] [--durations 5 20 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import aiohttp

from client import ClientSettings, PollingPolicy, RunComfyClient
from client.api import JobHandle
from client.models import JobState, TextToImageRequest
from tests.fakes.runcomfy import FakeRunComfy, JobScript

REQUEST = TextToImageRequest("a lighthouse at dawn")
QUEUE_SHARE = 0.2


@dataclass(frozen=True)
class Measurement:
    duration: float  # nominal job length, real seconds
    strategy: str
    phase: str
    requests: int
    delay: float  # real seconds


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
    fake: FakeRunComfy,
    client: RunComfyClient,
    args: argparse.Namespace,
    waiter: Callable[[JobHandle], Awaitable[object]],
) -> tuple[int, float]:
    """One job: (status/result requests, detection delay in real seconds)."""
    loop = asyncio.get_running_loop()
    # Concurrent submits take the queued scripts in arrival order; all are draws from the
    # same distribution, so which job gets which does not matter.
    fake.script(job_script(fake.default_script, args.jitter, args.scale))
    handle = await client.submit(REQUEST)
    await waiter(handle)
    noticed = loop.time()
    job = fake.jobs[handle.request_id]
    requests = sum(
        1
        for r in fake.requests
        if r.endpoint in ("status", "result") and f"/{handle.request_id}/" in r.path
    )
    return requests, (noticed - job.finished_at) / args.scale


async def adaptive_stream(
    fake: FakeRunComfy,
    session: aiohttp.ClientSession,
    duration: float,
    args: argparse.Namespace,
) -> list[Measurement]:
    """One client (fresh history): a first job alone, then rounds of parallel jobs."""
    client = make_client(fake, session, args.scale)
    timeout = 10 * duration * args.scale + 10

    async def wait(handle: JobHandle) -> object:
        return await handle.wait(timeout=timeout)

    out = []
    requests, delay = await run_job(fake, client, args, wait)
    out.append(Measurement(duration, "adaptive", "first job (no history)", requests, delay))
    for number in range(args.rounds):
        phase = "learning (rounds 1-2)" if number < 2 else "steady (rounds 3+)"
        results = await asyncio.gather(
            *(run_job(fake, client, args, wait) for _ in range(args.parallel))
        )
        out += [Measurement(duration, "adaptive", phase, r, d) for r, d in results]
    return out


async def fixed_stream(
    fake: FakeRunComfy,
    session: aiohttp.ClientSession,
    duration: float,
    interval: float,
    args: argparse.Namespace,
) -> list[Measurement]:
    client = make_client(fake, session, args.scale)

    async def wait(handle: JobHandle) -> object:
        return await fixed_interval_wait(handle, interval * args.scale)

    out = []
    for _ in range(args.rounds):
        results = await asyncio.gather(
            *(run_job(fake, client, args, wait) for _ in range(args.parallel))
        )
        out += [Measurement(duration, f"fixed {interval:g} s", "-", r, d) for r, d in results]
    return out


def make_client(fake: FakeRunComfy, session: aiohttp.ClientSession, scale: float) -> RunComfyClient:
    default = PollingPolicy()
    policy = replace(
        default,
        first_poll=default.first_poll * scale,
        min_interval=default.min_interval * scale,
        max_interval=default.max_interval * scale,
        warmup_interval=default.warmup_interval * scale,
    )
    settings = ClientSettings(api_token="bench", api_base=fake.base_url)
    return RunComfyClient(session, settings, polling=policy)


def table(measurements: list[Measurement]) -> str:
    rows = [
        f"{'job':>5}  {'strategy':<10} {'phase':<24} {'jobs':>4}  "
        f"{'req/job mean':>12} {'max':>4}  {'delay median':>12} {'p90':>6} {'max':>6}"
    ]
    groups: dict[tuple[float, str, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.duration, m.strategy, m.phase), []).append(m)
    for (duration, strategy, phase), group in groups.items():
        requests = [m.requests for m in group]
        delays = sorted(m.delay for m in group)
        p90 = delays[min(len(delays) - 1, int(0.9 * len(delays)))]
        rows.append(
            f"{duration:>4g}s  {strategy:<10} {phase:<24} {len(group):>4}  "
            f"{statistics.mean(requests):>12.1f} {max(requests):>4}  "
            f"{statistics.median(delays):>11.2f}s {p90:>5.2f}s {delays[-1]:>5.2f}s"
        )
    return "\n".join(rows)


def job_script(nominal: JobScript, jitter: float, scale: float) -> JobScript:
    """A job of the nominal length times a uniform draw from 1 +- jitter."""
    factor = 1 + random.uniform(-jitter, jitter)
    return replace(
        nominal,
        queue_seconds=nominal.queue_seconds * factor,
        run_seconds=nominal.run_seconds * factor,
    )


async def main(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        streams = []
        for duration in args.durations:
            # One fake per job length: every job it runs follows that length's timeline.
            nominal = JobScript(
                queue_seconds=QUEUE_SHARE * duration * args.scale,
                run_seconds=(1 - QUEUE_SHARE) * duration * args.scale,
                queue_position=2,
            )
            fake = await stack.enter_async_context(FakeRunComfy(token=None, default_script=nominal))
            streams.append(adaptive_stream(fake, session, duration, args))
            streams += [fixed_stream(fake, session, duration, i, args) for i in (1.0, 2.0)]
        results = await asyncio.gather(*streams)
    measurements = sorted(
        (m for stream in results for m in stream),
        key=lambda m: (m.duration, m.strategy != "adaptive", m.strategy),
    )
    print(
        f"time scale {args.scale:g} (figures in real-second equivalents); job lengths "
        f"{'exact' if not args.jitter else f'uniform within +-{args.jitter:.0%}'}; "
        f"{args.parallel} jobs in parallel per round; {args.rounds} rounds after the first job"
    )
    print(table(measurements))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.25, help="time scale (1 = real time)")
    parser.add_argument("--durations", type=float, nargs="+", default=[5.0, 20.0, 60.0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds after the first job")
    parser.add_argument("--parallel", type=int, default=4, help="jobs per round")
    parser.add_argument("--jitter", type=float, default=0.0, help="job length spread, e.g. 0.1")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    asyncio.run(main(args))
