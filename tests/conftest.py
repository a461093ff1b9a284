"""Shared fixtures: the fake RunComfy on loopback and a client wired to it with tiny delays.

Also: any ERROR log a test does not declare with ``@pytest.mark.expect_errors`` fails it.
"""

from __future__ import annotations

import gc
import logging
import re
import traceback
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from client import ClientSettings, RunComfyClient
from tests.fakes.runcomfy import FakeRunComfy
from tests.helpers import FAST_POLLING, FAST_RETRY
from tests.pg_fixtures import db_target, postgres_server, postgres_url

__all__ = ["FAST_POLLING", "FAST_RETRY"]  # also imported from here by the client's tests
_FIXTURES = (db_target, postgres_server, postgres_url)  # PostgreSQL ones, for every test


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


# -- unexpected error logs fail the test -------------------------------------------------------
#
# Whatever logs at ERROR or above during a test (the bot, discord.py's "Ignoring exception in
# ...", asyncio's "Task exception was never retrieved", which all go through ``logging``) fails
# it, unless the test declares it:
#
#     @pytest.mark.expect_errors(logger="cogs.tree", match=r"interaction \d+")
#
# ``logger`` matches that logger and its children; ``match`` is a regex searched in the message
# and the exception's last line (``ValueError: boom``). Both are optional, at least one is given.
# Stack the marker for several kinds. A declared error that never came fails the test too, so
# markers do not outlive the behaviour they excuse.


@dataclass(frozen=True)
class ExpectedError:
    logger: str | None
    match: re.Pattern[str] | None

    @classmethod
    def from_marker(cls, mark: pytest.Mark) -> ExpectedError:
        if mark.args or set(mark.kwargs) - {"logger", "match"} or not mark.kwargs:
            raise pytest.UsageError(
                f"use @pytest.mark.expect_errors(logger=..., match=...), not {mark!r}"
            )
        pattern = mark.kwargs.get("match")
        return cls(mark.kwargs.get("logger"), re.compile(pattern) if pattern else None)

    def covers(self, record: logging.LogRecord) -> bool:
        name = record.name
        if (
            self.logger is not None
            and name != self.logger
            and not name.startswith(self.logger + ".")
        ):
            return False
        return self.match is None or self.match.search(_searchable(record)) is not None

    def __str__(self) -> str:
        pattern = self.match.pattern if self.match else None
        return f"expect_errors(logger={self.logger!r}, match={pattern!r})"


def _searchable(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text += "\n" + "".join(traceback.format_exception_only(record.exc_info[1])).strip()
    return text


class ErrorLogCollector(logging.Handler):
    """Keeps every record at ERROR and above; the test's expectations sort them afterwards."""

    def __init__(self, expected: list[ExpectedError]) -> None:
        super().__init__(logging.ERROR)
        self.expected = expected
        self.records: list[logging.LogRecord] = []
        self.reported = 0  # records already turned into a failure
        self.formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def unexpected(self) -> list[logging.LogRecord]:
        """Unexpected records not reported yet (each is reported once: call, then teardown)."""
        fresh = self.records[self.reported :]
        self.reported = len(self.records)
        return [r for r in fresh if not any(e.covers(r) for e in self.expected)]

    def never_seen(self) -> list[ExpectedError]:
        return [e for e in self.expected if not any(e.covers(r) for r in self.records)]


_COLLECTOR = pytest.StashKey[ErrorLogCollector]()
_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def fail_on_error_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect ERROR records for the whole test; ``pytest_runtest_makereport`` judges them."""
    expected = [ExpectedError.from_marker(m) for m in request.node.iter_markers("expect_errors")]
    collector = ErrorLogCollector(expected)
    request.node.stash[_COLLECTOR] = collector
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield
        # Set up first, torn down last: the event loop is closed by now. An abandoned task's
        # "exception was never retrieved" is only logged when it is garbage collected.
        gc.collect()
    finally:
        root.removeHandler(collector)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    collector = item.stash.get(_COLLECTOR, None)
    if collector is None or report.when == "setup":
        return report
    if report.failed or hasattr(report, "wasxfail"):
        item.stash[_FAILED] = True  # that failure says enough; its logs are shown with it
    if item.stash.get(_FAILED, False) or not report.passed:
        return report
    problems = [collector.format(r) for r in collector.unexpected()]
    if report.when == "call":  # the bot is closed by the end of the test body
        problems += [f"{e}: declared, but no such ERROR was logged" for e in collector.never_seen()]
    if problems:
        item.stash[_FAILED] = True
        report.outcome = "failed"
        report.longrepr = "ERROR logs not as declared with @pytest.mark.expect_errors:\n\n" + (
            "\n\n".join(problems)
        )
    return report
