"""One error root for everything the RunComfy client raises.

Every error carries what a caller needs to explain it or decide what to do next: the HTTP status,
RunComfy's six-digit ``error_code`` when there is one, the request id, and the raw body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.models import JobStatus


class RunComfyError(Exception):
    """Root of every client error. ``str(err)`` is a short message fit for a user."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: int | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code
        self.request_id = request_id
        self.body = body


class InvalidRequestError(RunComfyError, ValueError):
    """A request failed local validation before anything was sent."""

    def __init__(self, field: str, allowed: str, *, value: Any = None) -> None:
        super().__init__(f"{field}: {allowed}")
        self.field = field
        self.allowed = allowed
        self.value = value


class AuthenticationError(RunComfyError):
    """Missing, bad or expired API token (HTTP 401/403, error_code 400004)."""


class InsufficientBalanceError(RunComfyError):
    """The RunComfy account has no balance left (HTTP 402, error_code 400002)."""


class PermissionDeniedError(RunComfyError):
    """The request belongs to another account (error_code 403001)."""


class ValidationError(RunComfyError):
    """The API rejected the inputs (HTTP 422); ``detail`` is the API's list of problems."""

    def __init__(self, message: str, *, detail: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.detail = detail


class NotFoundError(RunComfyError):
    """Unknown or expired request id (HTTP 404, error_code 404001)."""


class RateLimitedError(RunComfyError):
    """HTTP 429; ``retry_after`` is in seconds when the server said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(RunComfyError):
    """HTTP 5xx from the API."""


class APIConnectionError(RunComfyError):
    """The API could not be reached, the connection dropped, or a request timed out."""


class SubmitOutcomeUnknownError(APIConnectionError):
    """A submit failed after it may have reached RunComfy: the job may exist and be billed.

    Raised for a connection lost after the request was sent, a read timeout, and an HTTP 408 or
    5xx answer to the submit. It must NOT be re-submitted automatically (that could pay twice);
    tell the user, or look for the job by other means. ``status``, ``error_code`` and ``body`` are
    those of the original failure (also kept as ``__cause__``).
    """


class UnexpectedResponseError(RunComfyError):
    """A body we cannot make sense of (unknown state, missing fields); ``body`` holds it raw."""


class JobFailedError(RunComfyError):
    """The job ended in failure; ``message`` is the API's reason."""


class JobCancelledError(RunComfyError):
    """The job was cancelled before it produced output."""


class JobNotFinishedError(RunComfyError):
    """``result()`` was asked for a job that is still queued or running.

    ``job_status`` is the state the API reported, or None when it only said "too early" (400005).
    (Not ``status``: on every error that is the HTTP status.)
    """

    def __init__(self, message: str, *, job_status: JobStatus | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.job_status = job_status


class JobTimeoutError(RunComfyError):
    """``wait()`` passed its deadline before the job finished (the job may still run)."""


class DownloadError(RunComfyError):
    """An output image could not be fetched: too large, wrong content type, or HTTP error."""
