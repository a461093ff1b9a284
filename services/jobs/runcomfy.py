"""What the pipeline needs of RunComfy besides its steps: images, a quiet cancel, error words."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from client import RunComfyClient
from client.errors import (
    APIConnectionError,
    AuthenticationError,
    InsufficientBalanceError,
    JobFailedError,
    RateLimitedError,
    RunComfyError,
    ServerError,
    UnexpectedResponseError,
)
from client.models import CancelOutcome, DownloadedImage
from services.wording import N_, Wording, said
from storage.models import Job

log = logging.getLogger("services.jobs")

DOWNLOAD_LIMIT = 64 * 2**20
# An outage (bad token, no balance, RunComfy unreachable or down) is the operator's business:
# members get this, and the presenter adds that their credits are back.
OUTAGE_REASON = N_("The image service isn't available right now.")


async def download(
    client: RunComfyClient, job_id: str, urls: Sequence[str]
) -> tuple[list[DownloadedImage], list[str]]:
    """Fetch images (no API token is sent; the client retries what is worth retrying).

    Returns the images fetched and the URLs that failed (shown as links, never dropped).
    """

    async def one(url: str) -> DownloadedImage | None:
        try:
            return await client.download(url, max_bytes=DOWNLOAD_LIMIT)
        except RunComfyError as err:  # DownloadError, HTTP trouble
            log.warning("job %s: download of %s failed: %s", job_id, url, err)
            return None

    results = await asyncio.gather(*(one(u) for u in urls))
    images = [r for r in results if r is not None]
    missing = [u for u, r in zip(urls, results, strict=True) if r is None]
    return images, missing


async def cancel_quietly(client: RunComfyClient, job: Job) -> bool:
    """Best effort: stop a job we gave up on, so it does not cost money for nothing."""
    if job.request_id is None:
        return False
    try:
        outcome = await client.job(job.request_id).cancel()
    except RunComfyError as err:
        log.info("job %s: cancel after timeout failed: %s", job.id, err)
        return False
    log.info("job %s: cancel after timeout: %s", job.id, outcome.value)
    return outcome is CancelOutcome.CANCELLED


def reason_for(err: RunComfyError) -> Wording:
    """What to tell the member about an API error (never the raw body)."""
    if isinstance(err, JobFailedError):
        return said("RunComfy could not make this image ({message}).", message=err.message[:900])
    if isinstance(
        err, APIConnectionError | AuthenticationError | InsufficientBalanceError | ServerError
    ):
        return Wording(OUTAGE_REASON)  # never the message: it names hosts and sockets
    if isinstance(err, RateLimitedError | UnexpectedResponseError):
        return said("The image service had a problem with this job.")
    return said("RunComfy error: {message}.", message=err.message[:900])
