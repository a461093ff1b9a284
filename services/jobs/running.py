"""What of an unfinished job lives only in memory: its task and its RunComfy handle.

Everything else (its state, who asked, what it costs, whether it is held) is in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from client import JobHandle


@dataclass(slots=True, eq=False)
class RunningJob:
    job_id: str
    task: asyncio.Task[None] | None = None
    submitted: asyncio.Event = field(default_factory=asyncio.Event)  # the POST has answered
    handle: JobHandle | None = None  # from the submit; rebuilt from request_id after a restart
    delivery_attempts: int = 0  # failed attempts to post the finished result (this run)
    retry: asyncio.TimerHandle | None = None  # the next delivery attempt
    following: bool = False  # waiting on RunComfy: safe to stop if another process ended it
    elsewhere: bool = False  # stopped because another process ended or took the job

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """While RunComfy is being waited on (LeaseKeeper may stop the task then)."""
        self.following = True
        try:
            yield
        finally:
            self.following = False


class RunningJobs:
    def __init__(self) -> None:
        self._jobs: dict[str, RunningJob] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[RunningJob]:
        return iter(list(self._jobs.values()))

    def get(self, job_id: str) -> RunningJob | None:
        return self._jobs.get(job_id)

    def add(self, job_id: str) -> RunningJob:
        running = self._jobs.get(job_id)
        if running is None:
            running = self._jobs[job_id] = RunningJob(job_id)
        return running

    def forget(self, job_id: str) -> None:
        running = self._jobs.pop(job_id, None)
        if running is not None and running.retry is not None:
            running.retry.cancel()
