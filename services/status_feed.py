"""A job's status message, throttled: at most one edit per ``status_interval``, the latest
progress always shown in the end, never an edit after the job's final word (``quiet``).

No discord imports: edits go through the ``JobPresenter``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from services.job_types import JobPresenter, Progress
from services.pacing import Pacing
from services.settings import JobTiming
from storage.models import Job

log = logging.getLogger("services.jobs")


@dataclass(slots=True, eq=False)
class StatusFeed:
    """One job's status-message state."""

    job_id: str
    finished: bool = False  # the job's end was shown (or is being shown): no more progress
    last_shown: float = 0.0
    pending: Progress | None = None
    flush: asyncio.TimerHandle | None = None
    showing: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    editing: bool = False  # a status edit is on the wire
    status_message_id: int | None = None


class StatusFeeds:
    """Shows progress on the feeds of every running job."""

    def __init__(
        self,
        timing: JobTiming,
        pacing: Pacing,
        presenter: Callable[[], JobPresenter | None],
        remember_message: Callable[[str, int], Awaitable[object]],
    ) -> None:
        self._timing = timing
        self._pacing = pacing
        self._presenter = presenter
        self._remember_message = remember_message  # stores a status message id learned late

    def push(self, job: Job, feed: StatusFeed, progress: Progress) -> None:
        """Show ``progress`` now if the last update is old enough, else once the interval ends."""
        if feed.finished or self._presenter() is None:
            return
        feed.pending = progress
        wait = feed.last_shown + self._timing.status_interval - time.monotonic()
        if wait <= 0 and (feed.showing is None or feed.showing.done()):
            self._show_pending(job, feed)
        elif feed.flush is None:
            loop = asyncio.get_running_loop()
            feed.flush = loop.call_later(max(wait, 0.0), self._flush, job, feed)

    def cancel_pending(self, feed: StatusFeed) -> None:
        feed.pending = None
        if feed.flush is not None:
            feed.flush.cancel()
            feed.flush = None

    def stop(self, feed: StatusFeed) -> None:
        """Shutdown: drop what is pending and the edit waiting for its turn."""
        self.cancel_pending(feed)
        if feed.showing is not None:
            feed.showing.cancel()

    async def quiet(self, feed: StatusFeed) -> None:
        """No status edit after this: cancel what is pending, wait for one on the wire."""
        self.cancel_pending(feed)
        showing = feed.showing
        if showing is not None and not showing.done() and showing is not asyncio.current_task():
            if not feed.editing:
                showing.cancel()  # still waiting for its turn: no need to send it any more
            await asyncio.wait([showing])

    def _flush(self, job: Job, feed: StatusFeed) -> None:
        feed.flush = None
        if feed.finished or feed.pending is None:
            return
        if feed.showing is not None and not feed.showing.done():
            # the previous edit is still on the wire: try again after it
            feed.showing.add_done_callback(lambda _t: self._flush(job, feed))
            return
        self._show_pending(job, feed)

    def _show_pending(self, job: Job, feed: StatusFeed) -> None:
        progress, feed.pending = feed.pending, None
        if progress is None:
            return
        feed.last_shown = time.monotonic()
        feed.showing = asyncio.create_task(self._show(job, feed, progress))

    async def _show(self, job: Job, feed: StatusFeed, progress: Progress) -> None:
        presenter = self._presenter()
        if presenter is None or feed.finished:
            return
        known = feed.status_message_id or job.status_message_id
        await self._pacing.yield_to_requests()
        async with self._pacing.edits, feed.lock:
            if feed.finished:
                return
            feed.editing = True
            try:
                message_id = await presenter.show_progress(
                    replace(job, status_message_id=known), progress
                )
            except Exception:
                log.exception("job %s: status update failed", job.id)
                return
            finally:
                feed.editing = False
        if message_id is not None and known != message_id:
            feed.status_message_id = message_id
            await self._remember_message(job.id, message_id)
