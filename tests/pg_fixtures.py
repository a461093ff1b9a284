"""Fixtures for tests against a real PostgreSQL server.

One server per test session: the one ``.ci/run`` started (``TEST_DATABASE_URL``), else a
throwaway cluster started here (tests.pg_server). Each test gets a fresh, empty database.
Without PostgreSQL the tests that need it skip with the reason, except under ``CI=true``, where
they fail with it: CI must never pass by skipping them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests import pg_server

_names = itertools.count(1)


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL server: {reason}")


def run_sync(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion on a loop of its own (fixtures run outside the test's)."""
    box: list[Any] = []

    def main() -> None:
        box.append(asyncio.run(make()))  # type: ignore[arg-type]

    thread = threading.Thread(target=main)
    thread.start()
    thread.join()
    if not box:
        raise RuntimeError("the coroutine failed; see the thread's exception above")
    return box[0]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of the session's server's maintenance database."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    parent = Path(tempfile.mkdtemp(prefix="studio-pg-"))
    parent.chmod(0o755)  # the server's own user must reach its folder inside
    folder = parent / "cluster"
    try:
        url = pg_server.start(folder)
    except pg_server.PostgresMissing as exc:
        _missing(str(exc))
    except Exception as exc:  # a cluster that would not start: say why
        _missing(f"could not start a throwaway cluster: {exc!r}")
    try:
        yield url
    finally:
        pg_server.stop(folder)
        shutil.rmtree(parent, ignore_errors=True)


def make_database(server: str, name: str | None = None) -> str:
    """Create an empty database on ``server``; its URL."""
    name = name or f"studio_test_{os.getpid()}_{next(_names)}"

    async def create() -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run_sync(create)
    return server.rsplit("/", 1)[0] + "/" + name


def drop_database(server: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    run_sync(drop)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for this test."""
    url = make_database(postgres_server)
    try:
        yield url
    finally:
        drop_database(postgres_server, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's storage lives: a folder for an SQLite file, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path
    return request.getfixturevalue("postgres_url")
