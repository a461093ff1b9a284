"""Ctrl-C and SIGTERM for ``python -m client``: a job on its way is cancelled, not abandoned."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

log = logging.getLogger(__name__)

# What the user is told, and the exit status, per signal (128 + its number, as a shell says).
_WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
_AGAIN = {signal.SIGINT: "Ctrl-C again", signal.SIGTERM: "send SIGTERM again"}


class Interrupts:
    """While active, Ctrl-C or SIGTERM cancels the wait (so the job can be cancelled) instead of
    the run: a service manager stopping a script must not leave a paid job queued.

    A second signal cancels the whole run: the submit or cancel in flight is abandoned.
    """

    def __init__(self, say: Callable[[str], None]) -> None:
        self.pressed = False
        self.gave_up = False
        self.signal = signal.SIGINT  # the first signal received
        self._say = say
        self._task: asyncio.Future[object] | None = None
        self._main: asyncio.Task[object] | None = None

    @property
    def word(self) -> str:
        return _WORDS[self.signal]

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signal)

    def cancels(self, task: asyncio.Future[object]) -> None:
        self._task = task
        if self.pressed:  # signalled during the submit
            task.cancel()

    def forget_cancel(self) -> None:
        """The run goes on (to report) after the cancel that gave up caught."""
        if self._main is not None:
            self._main.uncancel()

    def _on_signal(self, received: signal.Signals) -> None:
        if self.pressed:
            self.gave_up = True
            if self._main is not None:
                self._main.cancel()
            return
        self.pressed = True
        self.signal = received
        if self._task is None:
            doing = "the job will be cancelled once the submit answers"
        else:
            self._task.cancel()
            doing = "cancelling the job if it is still queued"
        self._say(f"{self.word}: {doing} ({_AGAIN[received]} to give up at once)")

    def __enter__(self) -> Interrupts:
        self._main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        try:
            for each in _WORDS:
                loop.add_signal_handler(each, self._on_signal, each)
        except NotImplementedError:  # no loop signal handlers (Windows): Ctrl-C just stops
            log.debug("Ctrl-C will not cancel the job on this platform")
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        try:
            for each in _WORDS:
                loop.remove_signal_handler(each)
        except NotImplementedError:
            log.debug("no signal handlers to remove")
