"""``python bot.py --check``: the checks that need no Discord (RunComfy and the database).

Each check gives one ``CheckResult``: a plain line for the operator (hosts and paths may be
named; tokens never are), and whether it passed. The Discord checks live in ``bot_startup``.
"""

from __future__ import annotations

import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from client import RunComfyClient
from client.errors import (
    APIConnectionError,
    AuthenticationError,
    InsufficientBalanceError,
    NotFoundError,
    PermissionDeniedError,
    RunComfyError,
)
from client.retry import RetryPolicy
from client.settings import ClientSettings
from storage import SchemaTooNewError, Storage, StorageError
from storage.migrations import LATEST_VERSION
from storage.pg import is_postgres_url, redact
from storage.settings import QuotaSettings

# A request id no job can have: its status call proves the token without creating or paying
# for anything. RunComfy answers 404 for it with a good token and 401 (400004) with a bad one.
PROBE_REQUEST_ID = "00000000-0000-0000-0000-000000000000"
PROBE_TIMEOUT = 15.0  # seconds: an API that is up answers a status call in well under this


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str  # what was found (ok) or what is wrong, in plain words

    def line(self) -> str:
        if self.ok:
            return f"{self.name}: ok ({self.detail})" if self.detail else f"{self.name}: ok"
        return f"{self.name}: {self.detail}"


def connection_problem(err: BaseException) -> str:
    """Why a connection failed, in a few plain words (walks the causes of wrapped errors)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(seen, socket.gaierror):
            return "its host name was not found"
        if isinstance(seen, aiohttp.ClientSSLError):
            return "the secure connection failed"
        if isinstance(seen, TimeoutError):
            return "no answer in time"
        if isinstance(seen, aiohttp.ClientConnectorError):
            if isinstance(seen.os_error, ConnectionRefusedError | socket.gaierror):
                seen = seen.os_error  # said plainly above
                continue
            return f"no connection ({seen.strerror or 'unreachable'})"
        if isinstance(seen, aiohttp.ServerDisconnectedError):
            return "the server closed the connection"
        seen = seen.__cause__ or seen.__context__
    return "the connection failed"


async def check_runcomfy(
    session: aiohttp.ClientSession,
    settings: ClientSettings,
    *,
    timeout: float = PROBE_TIMEOUT,  # noqa: ASYNC109  # each request's limit, as the client's
) -> CheckResult:
    """One authenticated status call for a job that cannot exist, no retries."""
    name, base = "RunComfy", settings.api_base.rstrip("/")
    client = RunComfyClient(
        session, settings, retry=RetryPolicy(max_attempts=1), request_timeout=timeout
    )
    try:
        await client.job(PROBE_REQUEST_ID).status()
    except (NotFoundError, PermissionDeniedError):
        return CheckResult(name, True, f"{base} accepted the token")
    except AuthenticationError:
        return CheckResult(
            name, False, f"{base} rejected RUNCOMFY_API_TOKEN; copy your API key again"
        )
    except InsufficientBalanceError:
        return CheckResult(name, False, f"the token works but the account at {base} has no balance")
    except APIConnectionError as err:
        return CheckResult(
            name,
            False,
            f"cannot reach {base}: {connection_problem(err)};"
            " check RUNCOMFY_API_BASE and the network",
        )
    except RunComfyError as err:
        answer = f"HTTP {err.status}" if err.status else "an answer it could not read"
        return CheckResult(name, False, f"{base} gave {answer}; is RUNCOMFY_API_BASE right?")
    # A status for an id that cannot exist came back: odd, but the token was accepted.
    return CheckResult(name, True, f"{base} accepted the token")


async def check_database(path: Path | str, quota: QuotaSettings | None = None) -> CheckResult:
    """Open it as the bot does: created if missing, brought to the current schema (a write,
    so a file or folder that cannot be written fails here), refused if it is newer. ``path``
    may be a PostgreSQL URL (DATABASE_URL), shown without its password."""
    name = "database"
    where = redact(path) if is_postgres_url(path) else path
    try:
        async with Storage.open(path, quota) as storage:
            version = storage.schema_version
    except SchemaTooNewError as err:
        return CheckResult(name, False, f"{where}: {err}")
    except (StorageError, OSError, sqlite3.Error) as err:
        setting = "DATABASE_URL" if is_postgres_url(path) else "DATABASE_PATH"
        return CheckResult(name, False, _database_problem(where, err, setting))
    if version != LATEST_VERSION:  # an open brings it up to date; said plainly if not
        wanted = LATEST_VERSION
        return CheckResult(name, False, f"{where} is at schema version {version}, not {wanted}")
    return CheckResult(name, True, f"{where}, writable, schema version {version}")


def _database_problem(path: Path | str, err: BaseException, setting: str) -> str:
    text = str(err)
    if isinstance(err, sqlite3.OperationalError | StorageError) and "readonly" in text.replace(
        "read-only", "readonly"
    ):
        return f"{path} cannot be written (read-only); check {setting} and its permissions"
    if text.startswith("cannot open the database"):
        return f"{text}; check {setting}"
    return f"cannot use {path}: {text}; check {setting}"
