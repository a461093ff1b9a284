"""Turning RunComfy response bodies into typed values or typed errors.

Pure functions (no I/O), so every rule here is covered by table tests. The API is parsed
defensively (ARCHITECTURE.md section 5): alternative state spellings, error bodies sent with
HTTP 200, a too-early result answered with 400005, and anything unrecognised becomes an
``UnexpectedResponseError`` carrying the raw body instead of a crash.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

from client.errors import (
    APIConnectionError,
    AuthenticationError,
    InsufficientBalanceError,
    JobNotFinishedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RunComfyError,
    ServerError,
    UnexpectedResponseError,
    ValidationError,
)
from client.models import CancelOutcome, JobState, JobStatus, is_http_url

# Documented spellings first, then those seen in the provider's own clients and common synonyms.
STATE_SPELLINGS: Final[Mapping[str, JobState]] = {
    "in_queue": JobState.QUEUED,
    "queued": JobState.QUEUED,
    "pending": JobState.QUEUED,
    "in_progress": JobState.RUNNING,
    "running": JobState.RUNNING,
    "processing": JobState.RUNNING,
    "completed": JobState.COMPLETED,
    "succeeded": JobState.COMPLETED,
    "success": JobState.COMPLETED,
    "cancelled": JobState.CANCELLED,
    "canceled": JobState.CANCELLED,
    "failed": JobState.FAILED,
    "error": JobState.FAILED,
}

TOO_EARLY_CODE: Final = 400005
_ERRORS_BY_CODE: Final[Mapping[int, type[RunComfyError]]] = {
    400002: InsufficientBalanceError,
    400004: AuthenticationError,
    403001: PermissionDeniedError,
    404001: NotFoundError,
}
_ERRORS_BY_STATUS: Final[Mapping[int, type[RunComfyError]]] = {
    400: ValidationError,
    401: AuthenticationError,
    402: InsufficientBalanceError,
    403: AuthenticationError,
    404: NotFoundError,
    408: APIConnectionError,
    410: NotFoundError,
    422: ValidationError,
    429: RateLimitedError,
}
_SUMMARIES: Final[Mapping[type[RunComfyError], str]] = {
    AuthenticationError: "RunComfy rejected the API token",
    InsufficientBalanceError: "the RunComfy account has no balance left",
    PermissionDeniedError: "this request belongs to another RunComfy account",
    ValidationError: "RunComfy rejected the request",
    NotFoundError: "unknown or expired request",
    RateLimitedError: "rate limited by RunComfy",
    ServerError: "RunComfy server error",
    APIConnectionError: "RunComfy timed out handling the request",
    UnexpectedResponseError: "unexpected response from RunComfy",
}
# A body stands in for an error message only if it is short enough to show a user.
_MAX_MESSAGE = 300
# Where a body keeps its human message, most telling first. An error answer's "error" is often
# just the HTTP reason ("Bad Request"), so "message" comes first; a failed job's "error" is the
# job's own reason, so it comes first there; nested objects (a "detail" entry) use "msg".
ERROR_MESSAGE_KEYS: Final = ("message", "error_message", "error", "detail")
FAILURE_MESSAGE_KEYS: Final = ("error", "error_message", "message", "detail")
_NESTED_MESSAGE_KEYS: Final = ("message", "error_message", "msg", "detail", "error")


def decode_body(text: str) -> Any:
    """JSON if it parses, otherwise the text itself (proxies answer HTML error pages)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_state(value: Any, body: Any) -> JobState:
    if isinstance(value, str) and (state := STATE_SPELLINGS.get(value.strip().lower())):
        return state
    raise UnexpectedResponseError(f"unknown job state {value!r}", body=body)


def parse_status(body: Any) -> JobStatus:
    """The one parser for a job's state, used for status, result and cancel bodies alike."""
    if not isinstance(body, dict):
        raise UnexpectedResponseError("job status is not a JSON object", body=body)
    state = parse_state(body.get("status", body.get("state")), body)
    position = _queue_position(body.get("queue_position")) if state is JobState.QUEUED else None
    error = _failure_message(body) if state is JobState.FAILED else None
    return JobStatus(state=state, queue_position=position, error=error, raw=body)


def _queue_position(value: Any) -> int | None:
    # Only a hint for progress display and timing: a strange value is dropped, not fatal.
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):  # JSON's Infinity and NaN
        return None
    if isinstance(value, int | float) and value >= 0 and value == int(value):
        return int(value)
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value)
    return None


def _failure_message(body: Mapping[str, Any]) -> str:
    return first_message(body, FAILURE_MESSAGE_KEYS) or "the job failed without a reason"


def first_message(body: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    """The first of ``keys`` in ``body`` that holds a usable message (see ``message_text``)."""
    for key in keys:
        if text := message_text(body.get(key)):
            return text
    return None


def message_text(value: Any) -> str | None:
    """A short human message from a string, an object with a message, or a detail list."""
    if isinstance(value, str):
        return value.strip()[:_MAX_MESSAGE] or None
    if isinstance(value, dict):
        return first_message(value, _NESTED_MESSAGE_KEYS) or json.dumps(value)[:_MAX_MESSAGE]
    if isinstance(value, list) and value:
        parts = [_detail_item(item) for item in value[:3]]
        return "; ".join(p for p in parts if p)[:_MAX_MESSAGE] or None
    return None


def _detail_item(item: Any) -> str | None:
    """One entry of a 422 ``detail`` list: ``{"loc": ["body", "num_images"], "msg": "..."}``."""
    if isinstance(item, dict) and isinstance(item.get("msg"), str):
        where = item.get("loc")
        loc = [str(p) for p in where if p != "body"] if isinstance(where, list) else []
        return f"{'.'.join(loc)}: {item['msg']}" if loc else item["msg"]
    return message_text(item)


def parse_result(body: Any) -> tuple[JobStatus, tuple[str, ...]]:
    """The job's state and, when it completed, its image URLs (never empty then)."""
    if isinstance(body, dict) and "status" not in body and "state" not in body:
        if "output" not in body:
            raise _stateless_error(body)
        # Some result bodies carry only the output.
        status = JobStatus(JobState.COMPLETED, raw=body)
    else:
        status = parse_status(body)
    if status.state is not JobState.COMPLETED:
        return status, ()
    return status, _image_urls(body)


def _image_urls(body: Mapping[str, Any]) -> tuple[str, ...]:
    output = body.get("output")
    if not isinstance(output, dict):
        raise UnexpectedResponseError("completed job has no output", body=body)
    images = output.get("images")
    if images is None and output.get("image") is not None:
        images = [output["image"]]
    if not isinstance(images, list) or not images:
        raise UnexpectedResponseError("completed job has no images", body=body)
    urls = tuple(item.get("url") if isinstance(item, dict) else item for item in images)
    for url in urls:
        if not is_http_url(url):
            raise UnexpectedResponseError(f"bad image URL {url!r}", body=body)
    return urls  # type: ignore[return-value]  # checked to be str above


def _stateless_error(body: Mapping[str, Any]) -> RunComfyError:
    """A result body with neither a state nor an output: an error body, not a finished job."""
    error = error_for_response(200, body, {})
    if error is not None:  # it has an error_code (the transport usually catches these first)
        return error
    message = first_message(body, ERROR_MESSAGE_KEYS)
    summary = "RunComfy answered the result with neither a job state nor an output"
    return UnexpectedResponseError(f"{summary}: {message}" if message else summary, body=body)


def parse_submit(body: Any) -> str:
    """The new job's request id."""
    request_id = body.get("request_id") if isinstance(body, dict) else None
    if not isinstance(request_id, str) or not request_id.strip():
        raise UnexpectedResponseError("submit answer has no request_id", body=body)
    return request_id.strip()


def parse_cancel(body: Any) -> CancelOutcome:
    """``{"outcome": ...}`` as documented, or a plain state, which is all some answers carry."""
    if isinstance(body, dict) and isinstance(body.get("outcome"), str):
        outcome = body["outcome"].strip().lower()
        if outcome in ("cancelled", "canceled"):
            return CancelOutcome.CANCELLED
        if outcome in ("not_cancellable", "not_cancelable"):
            return CancelOutcome.NOT_CANCELLABLE
        raise UnexpectedResponseError(f"unknown cancel outcome {outcome!r}", body=body)
    status = parse_status(body)
    if status.state is JobState.CANCELLED:
        return CancelOutcome.CANCELLED
    return CancelOutcome.NOT_CANCELLABLE


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_code_of(body: Any) -> int | None:
    """RunComfy's six-digit ``error_code``, if the body has one."""
    code = body.get("error_code") if isinstance(body, dict) else None
    if isinstance(code, str) and code.strip().isdecimal():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        return code
    return None


def error_for_response(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    request_id: str | None = None,
) -> RunComfyError | None:
    """The typed error an answer means, or None if it is a success.

    A 2xx answer with an ``error_code`` is an error too (the API sometimes sends them with 200).
    """
    code = error_code_of(body)
    if 200 <= status < 300 and code is None:
        return None
    api_message = None
    if isinstance(body, dict):
        api_message = first_message(body, ERROR_MESSAGE_KEYS)
    elif isinstance(body, str) and body.strip() and not body.lstrip().startswith("<"):
        api_message = message_text(body)
    kwargs: dict[str, Any] = {
        "status": status,
        "error_code": code,
        "request_id": request_id,
        "body": body,
    }
    if code == TOO_EARLY_CODE:
        return JobNotFinishedError(api_message or "the job has not finished yet", **kwargs)
    cls = error_class(status, code)
    summary = _SUMMARIES[cls]
    if cls is ServerError or cls is UnexpectedResponseError:
        summary = f"{summary} (HTTP {status})"
    message = f"{summary}: {api_message}" if api_message else summary
    if cls is ValidationError:
        return ValidationError(message, detail=_detail(body), **kwargs)
    if cls is RateLimitedError:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if retry_after is None and isinstance(body, dict):
            retry_after = parse_retry_after(str(body.get("retry_after") or ""))
        return RateLimitedError(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


def error_class(status: int, code: int | None = None) -> type[RunComfyError]:
    """The error type an HTTP status (and RunComfy error code, if any) stands for."""
    if code in _ERRORS_BY_CODE:
        return _ERRORS_BY_CODE[code]
    if code is not None and 200 <= status < 300:
        # An error body sent with 200: its code starts with the HTTP status it stands for.
        status = code // 1000
    if status in _ERRORS_BY_STATUS:
        return _ERRORS_BY_STATUS[status]
    if 500 <= status < 600:
        return ServerError
    return UnexpectedResponseError


def _detail(body: Any) -> Any:
    return body.get("detail", body) if isinstance(body, dict) else body
