"""A job's status message, throttled: at most one edit per ``status_interval``, the latest
progress always shown in the end, never an edit after the job's final word (``finish``).

Edits wait their turn behind interactions (``Pacing``): Discord's answers come first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cogs.pacing import Pacing
from services.jobs import Progress
from services.settings import JobTiming
from storage.models import Job

log = logging.getLogger(__name__)

Show = Callable[[Job, Progress], Awaitable[object]]


@dataclass(slots=True, eq=False)
class StatusFeed:
    """One job's status-message state (memory only: timers and the edit on the wire)."""

    job_id: str
    last_shown: float
    pending: Progress | None = None
    flush: asyncio.TimerHandle | None = None
    showing: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    editing: bool = False  # a status edit is on the wire


class StatusFeeds:
    """Shows the progress of every running job, each on its own throttle."""

    def __init__(self, timing: JobTiming, pacing: Pacing, show: Show) -> None:
        self._timing = timing
        self._pacing = pacing
        self._show_now = show
        self._feeds: dict[str, StatusFeed] = {}
        self._finished: set[str] = set()  # final word being shown: no progress after it
        self._stopped = False

    def push(self, job: Job, progress: Progress) -> None:
        """Show ``progress`` now if the last update is old enough, else once the interval ends."""
        if job.id in self._finished or self._stopped:
            return
        feed = self._feeds.get(job.id)
        if feed is None:  # the acknowledgement was the first word: the interval starts there
            feed = self._feeds[job.id] = StatusFeed(job.id, last_shown=time.monotonic())
        feed.pending = progress
        wait = feed.last_shown + self._timing.status_interval - time.monotonic()
        if wait <= 0 and (feed.showing is None or feed.showing.done()):
            self._show_pending(job, feed)
        elif feed.flush is None:
            loop = asyncio.get_running_loop()
            feed.flush = loop.call_later(max(wait, 0.0), self._flush, job, feed)

    async def finish(self, job_id: str) -> None:
        """The job's final word is next: drop what is pending, wait for an edit on the wire."""
        self._finished.add(job_id)
        feed = self._feeds.pop(job_id, None)
        if feed is None:
            return
        _cancel_pending(feed)
        showing = feed.showing
        if showing is not None and not showing.done() and showing is not asyncio.current_task():
            if not feed.editing:
                showing.cancel()  # still waiting for its turn: no need to send it any more
            await asyncio.wait([showing])

    def forget(self, job_id: str) -> None:
        """The final word was shown."""
        self._finished.discard(job_id)

    def stop(self) -> None:
        """Shutdown: drop what is pending and the edits waiting for their turn."""
        self._stopped = True
        for feed in self._feeds.values():
            _cancel_pending(feed)
            if feed.showing is not None:
                feed.showing.cancel()
        self._feeds.clear()

    def _flush(self, job: Job, feed: StatusFeed) -> None:
        feed.flush = None
        if job.id in self._finished or feed.pending is None:
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
        await self._pacing.yield_to_requests()
        async with self._pacing.edits, feed.lock:
            if job.id in self._finished:
                return
            feed.editing = True
            try:
                await self._show_now(job, progress)
            except Exception:
                log.exception("job %s: status update failed", job.id)
            finally:
                feed.editing = False


def _cancel_pending(feed: StatusFeed) -> None:
    feed.pending = None
    if feed.flush is not None:
        feed.flush.cancel()
        feed.flush = None
