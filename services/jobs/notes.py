"""What the engine says in words: a timed-out job's reason, and log notes for the operator."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from services.wording import Wording, said
from storage.models import Job, JobState

log = logging.getLogger("services.jobs")

SUBMIT_UNKNOWN = said(
    "The connection to RunComfy broke while sending this job, so the bot can't follow it."
    " Your credits are back; please try again."
)
NO_IMAGE = said("RunComfy finished without any image.")


def unexpected(job_id: str) -> Wording:
    """A job ended by a bug: the member gets the job id an operator can look up."""
    return said("Something went wrong on our side (job `{job_id}`).", job_id=job_id)


def timeout_reason(job_timeout: float, cancelled: bool) -> Wording:
    """Why a job past its deadline failed (``cancelled``: RunComfy dropped it too).

    ``{duration}`` (seconds) is written as a duration in the reader's words ("10 min")."""
    seconds = round(job_timeout)
    if cancelled:
        return said(
            "RunComfy didn't finish this job within {duration}, so it was cancelled there.",
            duration=seconds,
        )
    return said(
        "RunComfy didn't finish this job within {duration}, so the bot gave up on it.",
        duration=seconds,
    )


def moved_note(job: Job) -> str:
    """What the log line of a state change adds about the job's new state."""
    if job.state == JobState.FAILED and job.error:
        return f" ({Wording.parse(job.error)})"
    if job.state == JobState.SUBMITTED:
        return f" (RunComfy request {job.request_id})"
    if job.state == JobState.DELIVERED:
        return f" ({job.committed} credits committed)"
    return ""


def late_submit(submit: asyncio.Future[Any]) -> None:
    """A submit that outlived the shutdown grace: its outcome is the next start's business."""
    if not submit.cancelled() and submit.exception() is not None:
        log.warning("a submit finished after shutdown: %s", submit.exception())
