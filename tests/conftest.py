"""Shared fixtures: the fake RunComfy on loopback and a client wired to it with tiny delays."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from client import ClientSettings, RunComfyClient
from tests.fakes.runcomfy import FakeRunComfy
from tests.helpers import FAST_POLLING, FAST_RETRY

__all__ = ["FAST_POLLING", "FAST_RETRY"]  # also imported from here by the client's tests


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
        request_timeout=10.0,
    )
