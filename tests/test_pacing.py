"""Requests first: background steps wait while an interaction is unanswered or in a burst."""

from __future__ import annotations

import asyncio

from cogs.pacing import Pacing
from services.settings import JobTiming


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def started(pacing: Pacing) -> asyncio.Task[None]:
    """A background step waiting for its turn."""

    async def step() -> None:
        async with pacing.step("submit"):
            pass

    return asyncio.create_task(step())


async def test_a_step_waits_until_the_request_being_prepared_is_answered() -> None:
    pacing = Pacing(JobTiming(yield_window=0.1, yield_burst=20, yield_max=30.0))
    with pacing.request() as answered:
        step = started(pacing)
        await settle()
        assert not step.done()  # the request's answer comes first
        answered()
        await settle()
        assert step.done()  # right after the answer, not after a timer
    later = started(pacing)
    await settle()
    assert later.done()  # calm: nothing holds a new step


async def test_a_step_waits_for_every_unanswered_request_even_after_an_error() -> None:
    pacing = Pacing(JobTiming(yield_window=0.1, yield_burst=20, yield_max=30.0))
    first = pacing.request()
    first.__enter__()
    try:
        with pacing.request():
            raise RuntimeError("refused")
    except RuntimeError:
        pass
    step = started(pacing)
    await settle()
    assert not step.done()  # the first request is still unanswered
    first.__exit__(None, None, None)
    await settle()
    assert step.done()


async def test_in_a_burst_steps_wait_until_it_has_passed() -> None:
    pacing = Pacing(JobTiming(yield_window=0.05, yield_burst=3, yield_max=30.0))
    for _ in range(3):
        with pacing.request():
            pass
    step = started(pacing)
    await settle()
    assert not step.done()  # answered, but requests still arrive faster than 3 per 50 ms
    await asyncio.wait_for(step, timeout=5.0)  # the burst's end is noticed by a timer


async def test_a_step_never_waits_longer_than_yield_max() -> None:
    pacing = Pacing(JobTiming(yield_window=0.1, yield_burst=20, yield_max=0.05))
    with pacing.request():
        step = started(pacing)
        await asyncio.wait_for(step, timeout=5.0)  # bounded: background work cannot starve


async def test_with_requests_first_off_or_stopped_nothing_waits() -> None:
    off = Pacing(JobTiming(yield_window=0, yield_max=30.0))
    with off.request():
        step = started(off)
        await settle()
        assert step.done()
    stopping = Pacing(JobTiming(yield_window=0.1, yield_max=30.0))
    with stopping.request():
        step = started(stopping)
        await settle()
        assert not step.done()
        stopping.stop()
        await settle()
        assert step.done()
