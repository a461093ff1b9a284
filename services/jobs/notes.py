"""What the engine says in words: a timed-out job's reason, and log notes for the operator."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from storage.models import Job, JobState

log = logging.getLogger("services.jobs")


def timeout_reason(job_timeout: float, cancelled: bool) -> str:
    """Why a job past its deadline failed (``cancelled``: RunComfy dropped it too)."""
    minutes = job_timeout / 60
    if minutes >= 1:
        took = f"{minutes:g} minute" + ("" if minutes == 1 else "s")
    else:
        took = f"{job_timeout:g} s"
    what = "it was cancelled there" if cancelled else "the bot gave up on it"
    return f"RunComfy didn't finish this job within {took}, so {what}."


def moved_note(job: Job) -> str:
    """What the log line of a state change adds about the job's new state."""
    if job.state == JobState.FAILED and job.error:
        return f" ({job.error})"
    if job.state == JobState.SUBMITTED:
        return f" (RunComfy request {job.request_id})"
    if job.state == JobState.DELIVERED:
        return f" ({job.committed} credits committed)"
    return ""


def late_submit(submit: asyncio.Future[Any]) -> None:
    """A submit that outlived the shutdown grace: its outcome is the next start's business."""
    if not submit.cancelled() and submit.exception() is not None:
        log.warning("a submit finished after shutdown: %s", submit.exception())
