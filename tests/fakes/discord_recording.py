"""Request log of the fake Discord: what was received, how to match it, how to wait for it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, TypeAlias, TypeVar

T = TypeVar("T")

_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*"}


@dataclass(frozen=True)
class RecordedFile:
    """One ``files[n]`` part of a multipart request."""

    field: str
    filename: str
    content_type: str | None
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def is_png(self) -> bool:
        return self.data.startswith(b"\x89PNG\r\n\x1a\n")


@dataclass
class Recorded:
    """One HTTP request the fake received (recorded once it has been answered).

    ``path`` is relative to the API base (``/channels/1/messages``); requests outside the API
    (attachment downloads, the gateway upgrade) keep their full path. ``json`` is the JSON body,
    or the ``payload_json`` part of a multipart body. ``status``/``response`` are what the fake
    answered; ``injected`` names the fault that produced the answer (``"rate_limit"``,
    ``"failure"``, ``"expired_token"``, ``"unknown_interaction"``), None for normal handling.
    """

    index: int
    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[RecordedFile]
    headers: dict[str, str]
    received_at: float
    received_wall: datetime
    raw_body: bytes = b""
    status: int = 0
    response: Any = None
    injected: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def matches(self, matcher: Matcher) -> bool:
        return match(matcher, self)

    def __repr__(self) -> str:
        return f"<Recorded #{self.index} {self.route} -> {self.status}>"


#: How tests pick requests: ``"POST /channels/*/messages"`` (method optional, ``*`` glob on the
#: path without ``/api/v10`` and without the query), a compiled regex searched in
#: ``"METHOD /path"``, or a predicate over :class:`Recorded`.
Matcher: TypeAlias = str | re.Pattern[str] | Callable[[Recorded], bool]


def match(matcher: Matcher, rec: Recorded) -> bool:
    """Whether ``rec`` is selected by ``matcher`` (see :data:`Matcher`)."""
    if callable(matcher):
        return bool(matcher(rec))
    if isinstance(matcher, re.Pattern):
        return matcher.search(rec.route) is not None
    if isinstance(matcher, str):
        method, _, path = matcher.partition(" ")
        if path and method.upper() in _METHODS:
            if method != "*" and method.upper() != rec.method:
                return False
            return fnmatchcase(rec.path, path)
        return fnmatchcase(rec.path, matcher)
    raise TypeError(f"unsupported matcher {matcher!r}")


class ChangeWaiters:
    """Event-driven waiting on the fake's state: checks are re-run on every change.

    A check returns None while the condition does not hold, or the value to hand back.
    """

    def __init__(self) -> None:
        self._waiters: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []

    def notify(self) -> None:
        still: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        for check, fut in self._waiters:
            if fut.done():
                continue
            try:
                value = check()
            except Exception as exc:  # a broken check fails its waiter, not the server
                fut.set_exception(exc)
                continue
            if value is None:
                still.append((check, fut))
            else:
                fut.set_result(value)
        self._waiters = still

    async def wait(
        self,
        check: Callable[[], T | None],
        timeout: float,  # noqa: ASYNC109
        describe: str,
        poll: float | None = None,
    ) -> T:
        """Return ``check()``'s first non-None value; re-checked on every change (and every
        ``poll`` seconds when given, for state the fake cannot see change)."""
        value = check()
        if value is not None:
            return value
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        entry = (check, fut)
        self._waiters.append(entry)
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                step = remaining if poll is None else min(poll, remaining)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), step)
                except TimeoutError:
                    if poll is None:
                        raise
                value = check()
                if value is not None:
                    return value
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout}s waiting for {describe}") from None
        finally:
            fut.cancel()
            if entry in self._waiters:
                self._waiters.remove(entry)
