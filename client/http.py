"""HTTP plumbing: calls to the RunComfy API (token, timeouts, retries) and output downloads.

Every call has a timeout, cut to the time left when the caller has a deadline. API calls carry
the Bearer token; downloads never do, since output images live on other hosts. The session is
injected and shared; nothing here opens its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import aiohttp

from client.errors import (
    APIConnectionError,
    AuthenticationError,
    DownloadError,
    InsufficientBalanceError,
    RateLimitedError,
    RunComfyError,
    ServerError,
)
from client.models import DownloadedImage
from client.parsing import decode_body, error_for_response, parse_retry_after
from client.retry import RetryPolicy, Sleep, is_retryable, is_retryable_status, with_retries
from client.settings import ClientSettings

IMAGE_TYPES: Final = ("image/png", "image/jpeg", "image/webp")
# The shortest time an attempt gets even when the caller's deadline is (nearly) reached, so a
# last poll at the deadline can still be answered: a deadline is overrun by at most this.
DEADLINE_FLOOR: Final = 2.0
_CHUNK = 64 * 1024
SNIFF_BYTES: Final = 16  # enough for every signature sniff_image_type knows


class _NotSentError(APIConnectionError):
    """The connection failed before the request could be written: safe to send again."""


class _TransientDownloadError(DownloadError):
    """A download failure that a later attempt may not see (408, 429, 5xx, connection)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


def _connection_error(err: Exception, what: str, *, request_id: str | None) -> APIConnectionError:
    if isinstance(err, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        # Refused, unreachable, DNS or TLS failure, or connect timeout: nothing was sent.
        return _NotSentError(f"could not connect to RunComfy: {err}", request_id=request_id)
    if isinstance(err, TimeoutError):
        return APIConnectionError(f"RunComfy did not answer {what} in time", request_id=request_id)
    return APIConnectionError(
        f"connection to RunComfy failed during {what}: {err}", request_id=request_id
    )


def submit_may_retry(error: RunComfyError) -> bool:
    """A submit is repeated only if it certainly never reached the server."""
    return isinstance(error, _NotSentError)


def download_may_retry(error: RunComfyError) -> bool:
    return isinstance(error, _TransientDownloadError)


OnRequest = Callable[[str, str], None]
"""Told ``(endpoint, outcome)`` after every API attempt (metrics); must not raise."""


def endpoint_of(method: str, path: str) -> str:
    """``submit``, ``status``, ``result``, ``cancel`` or ``other``: a path without ids."""
    if method == "POST" and path.startswith("/v1/models/"):
        return "submit"
    last = path.rsplit("/", 1)[-1]
    return last if last in ("status", "result", "cancel") else "other"


def outcome_of(error: RunComfyError | None) -> str:
    """A short label for how an attempt ended (``ok`` or the kind of failure)."""
    if error is None:
        return "ok"
    for kind, label in (
        (APIConnectionError, "connection"),
        (ServerError, "server_error"),
        (AuthenticationError, "auth"),
        (InsufficientBalanceError, "balance"),
        (RateLimitedError, "rate_limited"),
    ):
        if isinstance(error, kind):
            return label
    return "error"


class ApiTransport:
    """Authenticated JSON calls to the API base, each with a timeout and the given retry rule."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: ClientSettings,
        retry: RetryPolicy,
        *,
        timeout: float,
        sleep: Sleep = asyncio.sleep,
        on_request: OnRequest | None = None,
    ) -> None:
        self._session = session
        self._on_request = on_request
        self._base = settings.api_base.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {settings.api_token}",
            "Accept": "application/json",
        }
        self.retry = retry
        self.sleep = sleep
        self._timeout = timeout

    def _attempt_timeout(self, deadline: float | None, floor: float) -> aiohttp.ClientTimeout:
        """The request timeout, cut to the time left before ``deadline`` (but not below floor)."""
        total = self._timeout
        if deadline is not None:
            left = deadline - asyncio.get_running_loop().time()
            total = min(total, max(left, floor))
        return aiohttp.ClientTimeout(total=total, sock_connect=min(total, 10.0))

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        retry_if: Callable[[RunComfyError], bool] = is_retryable,
        request_id: str | None = None,
        deadline: float | None = None,
        deadline_floor: float = DEADLINE_FLOOR,
    ) -> Any:
        """The decoded body of a successful answer; otherwise the typed error it means.

        With a ``deadline`` (loop time), no retry sleeps past it and no attempt is allowed to
        run past it by more than ``deadline_floor`` seconds.
        """
        what = f"{method} {path}"

        async def once() -> Any:
            limits = self._attempt_timeout(deadline, deadline_floor)
            try:
                body = await self._once(method, path, json, request_id, what, limits)
            except RunComfyError as err:
                self._tell(method, path, err)
                raise
            self._tell(method, path, None)
            return body

        return await with_retries(
            once, self.retry, retry_if=retry_if, deadline=deadline, what=what, sleep=self.sleep
        )

    def _tell(self, method: str, path: str, error: RunComfyError | None) -> None:
        if self._on_request is not None:
            self._on_request(endpoint_of(method, path), outcome_of(error))

    async def _once(
        self,
        method: str,
        path: str,
        payload: Any,
        request_id: str | None,
        what: str,
        limits: aiohttp.ClientTimeout,
    ) -> Any:
        try:
            async with self._session.request(
                method,
                self._base + path,
                json=payload,
                headers=self._headers,
                timeout=limits,
            ) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError) as err:
            raise _connection_error(err, what, request_id=request_id) from err
        # Bodies are JSON (UTF-8); a proxy's page in another charset must not crash the parse.
        body = decode_body(raw.decode("utf-8", errors="replace"))
        error = error_for_response(status, body, headers, request_id=request_id)
        if error is not None:
            raise error
        return body


class Downloader:
    """Fetches output images: no token, a size cap, and only image content types."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        retry: RetryPolicy,
        *,
        timeout: float,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session = session
        self._retry = retry
        self._sleep = sleep
        # sock_read catches a stalled transfer well before the total limit.
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(timeout, 10.0), sock_read=min(timeout, 30.0)
        )

    async def download(self, url: str, *, max_bytes: int) -> DownloadedImage:
        if not url.startswith(("http://", "https://")):
            raise DownloadError(f"not an http(s) URL: {url!r}")

        async def once() -> DownloadedImage:
            return await self._once(url, max_bytes)

        return await with_retries(
            once,
            self._retry,
            retry_if=download_may_retry,
            what=f"download {url}",
            sleep=self._sleep,
        )

    async def _once(self, url: str, max_bytes: int) -> DownloadedImage:
        try:
            # No Authorization header: the API token must never reach output hosts.
            async with self._session.get(url, timeout=self._timeout) as response:
                if response.status != 200:
                    raise self._http_error(response)
                content_type = response.content_type
                if content_type not in IMAGE_TYPES:
                    raise DownloadError(
                        f"output is {content_type!r}, not an image", status=response.status
                    )
                if (response.content_length or 0) > max_bytes:
                    raise DownloadError(_too_large(response.content_length, max_bytes))
                data = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK):
                    data += chunk
                    if len(data) > max_bytes:
                        raise DownloadError(_too_large(None, max_bytes))
        except (aiohttp.ClientError, TimeoutError) as err:
            raise _TransientDownloadError(
                f"could not download {url}: {err or 'timed out'}"
            ) from err
        sniffed = sniff_image_type(data)
        if sniffed is None:
            raise DownloadError(
                f"output labelled {content_type!r} is not a PNG, JPEG or WebP image"
            )
        # The bytes decide: a mislabelled file would otherwise get the wrong extension.
        return DownloadedImage(url=url, data=bytes(data), content_type=sniffed)

    async def sniff(self, url: str, *, timeout: float) -> str | None:  # noqa: ASYNC109
        """The image type the first bytes at ``url`` show (None: not PNG, JPEG or WebP).

        One small ranged GET, no retries: for checking an input before it is paid for.
        """
        if not url.startswith(("http://", "https://")):
            raise DownloadError(f"not an http(s) URL: {url!r}")
        head = bytearray()
        try:
            async with self._session.get(
                url,
                headers={"Range": f"bytes=0-{SNIFF_BYTES - 1}"},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if response.status not in (200, 206):  # 200: the host ignored the range
                    raise DownloadError(
                        f"reading the image failed (HTTP {response.status})",
                        status=response.status,
                    )
                while len(head) < SNIFF_BYTES:
                    chunk = await response.content.read(SNIFF_BYTES - len(head))
                    if not chunk:
                        break
                    head += chunk
        except (aiohttp.ClientError, TimeoutError) as err:
            raise DownloadError(f"could not read {url}: {err or 'timed out'}") from err
        return sniff_image_type(head)

    @staticmethod
    def _http_error(response: aiohttp.ClientResponse) -> DownloadError:
        message = f"downloading the image failed (HTTP {response.status})"
        if is_retryable_status(response.status):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return _TransientDownloadError(message, status=response.status, retry_after=retry_after)
        return DownloadError(message, status=response.status)


def sniff_image_type(data: bytes | bytearray) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _too_large(size: int | None, max_bytes: int) -> str:
    limit = f"{max_bytes / 2**20:.1f} MiB"
    if size is None:  # no Content-Length: the transfer passed the limit
        return f"output image is too large (over the {limit} limit)"
    return f"output image is too large ({size / 2**20:.1f} MiB; the limit is {limit})"
