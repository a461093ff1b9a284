"""Shared fixtures: the fake RunComfy on loopback and a client wired to it with tiny delays."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from client import ClientSettings, PollingPolicy, RetryPolicy, RunComfyClient
from tests.fakes.runcomfy import FakeRunComfy

# Milliseconds instead of seconds, so fault and polling tests run in a blink.
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.002, max_delay=0.01, max_retry_after=0.5)
FAST_POLLING = PollingPolicy(
    first_poll=0.005, min_interval=0.005, max_interval=0.02, warmup_interval=0.005
)


@pytest.fixture
async def fake_runcomfy() -> AsyncIterator[FakeRunComfy]:
    async with FakeRunComfy(token="test-token") as fake:
        yield fake


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def runcomfy_settings(fake_runcomfy: FakeRunComfy) -> ClientSettings:
    return ClientSettings(api_token="test-token", api_base=fake_runcomfy.base_url)


@pytest.fixture
def runcomfy_client(
    http_session: aiohttp.ClientSession, runcomfy_settings: ClientSettings
) -> RunComfyClient:
    return RunComfyClient(
        http_session,
        runcomfy_settings,
        retry=FAST_RETRY,
        polling=FAST_POLLING,
        request_timeout=2.0,
    )
