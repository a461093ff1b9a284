"""Table tests: how RunComfy bodies become states, URLs, outcomes and typed errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

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
from client.models import CancelOutcome, JobState, JobStatus
from client.parsing import (
    decode_body,
    error_for_response,
    parse_cancel,
    parse_result,
    parse_retry_after,
    parse_status,
    parse_submit,
)

Q, R, C, X, F = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.COMPLETED,
    JobState.CANCELLED,
    JobState.FAILED,
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"status": "in_queue", "queue_position": 3}, JobStatus(Q, queue_position=3)),
        ({"status": "in_queue"}, JobStatus(Q)),
        ({"status": "in_queue", "queue_position": "2"}, JobStatus(Q, queue_position=2)),
        ({"status": "in_queue", "queue_position": 1.0}, JobStatus(Q, queue_position=1)),
        ({"status": "in_queue", "queue_position": -1}, JobStatus(Q)),
        ({"status": "in_queue", "queue_position": True}, JobStatus(Q)),
        ({"status": "in_queue", "queue_position": "soon"}, JobStatus(Q)),
        ({"status": "in_queue", "queue_position": float("inf")}, JobStatus(Q)),  # Infinity
        ({"status": "in_queue", "queue_position": float("nan")}, JobStatus(Q)),  # NaN
        ({"status": "in_queue", "queue_position": "²"}, JobStatus(Q)),  # a digit, not a number
        ({"status": "in_queue", "queue_position": " 7 "}, JobStatus(Q, queue_position=7)),
        ({"status": "queued"}, JobStatus(Q)),
        ({"status": "pending"}, JobStatus(Q)),
        ({"status": "in_progress", "queue_position": 0}, JobStatus(R)),
        ({"status": "running"}, JobStatus(R)),
        ({"status": "completed"}, JobStatus(C)),
        ({"status": "succeeded"}, JobStatus(C)),
        ({"status": " Completed "}, JobStatus(C)),
        ({"state": "completed"}, JobStatus(C)),
        ({"status": "cancelled"}, JobStatus(X)),
        ({"status": "canceled"}, JobStatus(X)),
        ({"status": "failed", "error": "NSFW"}, JobStatus(F, error="NSFW")),
        ({"status": "failed", "error": {"message": "GPU lost"}}, JobStatus(F, error="GPU lost")),
        ({"status": "failed", "error_message": "bad input"}, JobStatus(F, error="bad input")),
        ({"status": "error", "error": {"code": 7}}, JobStatus(F, error='{"code": 7}')),
        ({"status": "failed"}, JobStatus(F, error="the job failed without a reason")),
    ],
)
def test_parse_status(body: dict[str, Any], expected: JobStatus) -> None:
    status = parse_status(body)
    assert status == expected
    assert status.raw is body


@pytest.mark.parametrize(
    "body",
    [
        {"status": "thinking"},
        {"status": None},
        {"status": 3},
        {"queue_position": 1},
        ["completed"],
        "completed",
        None,
    ],
)
def test_unknown_states_and_shapes_are_typed_errors_with_the_raw_body(body: Any) -> None:
    with pytest.raises(UnexpectedResponseError) as caught:
        parse_status(body)
    assert caught.value.body is body


@pytest.mark.parametrize(
    ("body", "urls"),
    [
        ({"status": "completed", "output": {"image": "https://cdn/a.png"}}, ("https://cdn/a.png",)),
        (
            {"status": "succeeded", "output": {"images": ["https://cdn/a.png", "http://cdn/b"]}},
            ("https://cdn/a.png", "http://cdn/b"),
        ),
        ({"output": {"images": [{"url": "https://cdn/a.webp"}]}}, ("https://cdn/a.webp",)),
    ],
)
def test_parse_result_completed(body: dict[str, Any], urls: tuple[str, ...]) -> None:
    status, found = parse_result(body)
    assert status.state is C
    assert found == urls


@pytest.mark.parametrize(
    ("body", "state"),
    [
        ({"status": "in_queue", "queue_position": 0}, Q),
        ({"status": "in_progress"}, R),
        ({"status": "failed", "error": "x"}, F),
        ({"status": "canceled"}, X),
    ],
)
def test_parse_result_of_an_unfinished_or_unsuccessful_job(body: Any, state: JobState) -> None:
    assert parse_result(body) == (
        JobStatus(state, queue_position=body.get("queue_position"), error=body.get("error")),
        (),
    )


@pytest.mark.parametrize(
    "body",
    [
        {"status": "completed"},
        {"status": "completed", "output": {}},
        {"status": "completed", "output": {"images": []}},
        {"status": "completed", "output": {"video": "https://cdn/v.mp4"}},
        {"status": "completed", "output": {"image": "file:///etc/passwd"}},
        {"status": "completed", "output": {"images": ["/relative.png"]}},
        {"status": "completed", "output": {"images": [42]}},
        {"output": "https://cdn/a.png"},
        {"status": "completed", "output": {"image": "http://[x"}},  # urlsplit: ValueError
        {"status": "completed", "output": {"image": "http://cdn:99999/a.png"}},
    ],
)
def test_completed_without_usable_images_is_unexpected(body: Any) -> None:
    with pytest.raises(UnexpectedResponseError):
        parse_result(body)


@pytest.mark.parametrize(
    ("body", "cls", "message"),
    [
        (
            {"message": "Internal error"},
            UnexpectedResponseError,
            "RunComfy answered the result with neither a job state nor an output: Internal error",
        ),
        (
            {"request_id": "abc"},
            UnexpectedResponseError,
            "RunComfy answered the result with neither a job state nor an output",
        ),
        (
            {"error_code": 404001, "message": "expired"},
            NotFoundError,
            "unknown or expired request: expired",
        ),
    ],
)
def test_a_result_body_without_state_or_output_is_not_a_completed_job(
    body: Any, cls: type[RunComfyError], message: str
) -> None:
    with pytest.raises(RunComfyError) as caught:
        parse_result(body)
    assert type(caught.value) is cls
    assert str(caught.value) == message
    assert caught.value.body is body


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ({"outcome": "cancelled"}, CancelOutcome.CANCELLED),
        ({"outcome": "canceled"}, CancelOutcome.CANCELLED),
        ({"outcome": "not_cancellable"}, CancelOutcome.NOT_CANCELLABLE),
        ({"status": "cancelled"}, CancelOutcome.CANCELLED),
        ({"status": "in_progress"}, CancelOutcome.NOT_CANCELLABLE),
        ({"status": "completed"}, CancelOutcome.NOT_CANCELLABLE),
    ],
)
def test_parse_cancel(body: Any, outcome: CancelOutcome) -> None:
    assert parse_cancel(body) is outcome


@pytest.mark.parametrize("body", [{"outcome": "maybe"}, {}, "ok"])
def test_parse_cancel_rejects_unknown_answers(body: Any) -> None:
    with pytest.raises(UnexpectedResponseError):
        parse_cancel(body)


def test_parse_submit() -> None:
    assert parse_submit({"request_id": "abc", "status_url": "..."}) == "abc"
    for body in ({}, {"request_id": ""}, {"request_id": 5}, "abc"):
        with pytest.raises(UnexpectedResponseError):
            parse_submit(body)


def test_decode_body_keeps_non_json_text() -> None:
    assert decode_body('{"a": 1}') == {"a": 1}
    assert decode_body("<html>Bad gateway</html>") == "<html>Bad gateway</html>"


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "attrs"),
    [
        # Errors sent with HTTP 200: the body decides.
        (200, {"error_code": 400004, "message": "token expired"}, {}, AuthenticationError, {}),
        (200, {"error_code": "400002", "message": "no money"}, {}, InsufficientBalanceError, {}),
        (200, {"error_code": 404001}, {}, NotFoundError, {"error_code": 404001}),
        (200, {"error_code": 403001}, {}, PermissionDeniedError, {}),
        (200, {"error_code": 500003, "message": "db down"}, {}, ServerError, {"status": 200}),
        (200, {"error_code": 429001}, {}, RateLimitedError, {"retry_after": None}),
        (200, {"error_code": 999999}, {}, UnexpectedResponseError, {}),
        # By HTTP status.
        (401, {"error_code": 400004, "message": "bad token"}, {}, AuthenticationError, {}),
        (401, "", {}, AuthenticationError, {"status": 401}),
        (403, {"message": "forbidden"}, {}, AuthenticationError, {}),
        (403, {"error_code": 403001}, {}, PermissionDeniedError, {}),
        (402, {}, {}, InsufficientBalanceError, {}),
        (400, {"error_code": 400002}, {}, InsufficientBalanceError, {}),
        (404, {"error_code": 404001}, {}, NotFoundError, {}),
        (410, {}, {}, NotFoundError, {}),
        (408, "", {}, APIConnectionError, {}),
        (
            422,
            {"detail": [{"loc": ["body", "num_images"], "msg": "too many"}]},
            {},
            ValidationError,
            {"detail": [{"loc": ["body", "num_images"], "msg": "too many"}]},
        ),
        (400, {"message": "prompt too long"}, {}, ValidationError, {}),
        (429, {}, {"Retry-After": "3"}, RateLimitedError, {"retry_after": 3.0}),
        (429, {"retry_after": 1.5}, {}, RateLimitedError, {"retry_after": 1.5}),
        (429, {}, {}, RateLimitedError, {"retry_after": None}),
        (500, "Internal Server Error", {}, ServerError, {"status": 500}),
        (502, "<html>Bad gateway</html>", {}, ServerError, {"body": "<html>Bad gateway</html>"}),
        (503, {"error_code": 503001}, {}, ServerError, {}),
        (418, {}, {}, UnexpectedResponseError, {}),
        (400, {"error_code": 400005}, {}, JobNotFinishedError, {"job_status": None}),
        # Odd but valid JSON: typed errors, never a crash.
        (
            422,
            {"detail": [{"loc": 5, "msg": "x"}]},
            {},
            ValidationError,
            {"message": "RunComfy rejected the request: x"},
        ),
        (
            422,
            {"detail": [{"loc": None, "msg": "y"}]},
            {},
            ValidationError,
            {"message": "RunComfy rejected the request: y"},
        ),
        (200, {"error_code": "²"}, {}, None, {}),
        (200, {"error_code": "٥٠٠٠٠١"}, {}, ServerError, {"error_code": 500001}),
        (429, {}, {"Retry-After": "1e400"}, RateLimitedError, {"retry_after": None}),
    ],
)
def test_error_for_response(
    status: int,
    body: Any,
    headers: dict[str, str],
    cls: type[RunComfyError] | None,
    attrs: dict[str, Any],
) -> None:
    error = error_for_response(status, body, headers, request_id="req-1")
    if cls is None:
        assert error is None
        return
    assert type(error) is cls
    assert error.request_id == "req-1"
    assert error.body == body
    for name, value in attrs.items():
        assert getattr(error, name) == value


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, {"request_id": "x"}), (200, {"error_code": None}), (200, {"error_code": 0}), (204, "")],
)
def test_success_is_not_an_error(status: int, body: Any) -> None:
    assert error_for_response(status, body, {}) is None


def test_error_messages_are_short_and_carry_the_api_reason() -> None:
    error = error_for_response(
        422,
        {"detail": [{"loc": ["body", "aspect_ratio"], "msg": "Input should be 'auto'"}]},
        {},
    )
    assert str(error) == "RunComfy rejected the request: aspect_ratio: Input should be 'auto'"
    assert str(error_for_response(401, {"error_code": 400004, "message": "Token expired"}, {})) == (
        "RunComfy rejected the API token: Token expired"
    )
    # An HTML error page is not a message worth showing.
    assert str(error_for_response(502, "<html>" + "x" * 5000, {})) == (
        "RunComfy server error (HTTP 502)"
    )
    long = error_for_response(500, {"message": "y" * 5000}, {})
    assert long is not None and len(str(long)) < 400


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("2", 2.0),
        ("0.25", 0.25),
        ("-4", 0.0),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        ("Sat, 21 Nov 2026 12:00:30 GMT", 30.0),
        ("Sat, 21 Nov 2026 11:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == seconds
