"""The same ask twice within seconds (a double click on Re-roll, a form sent twice): one job.

In memory, as a first line only: a form's job is also unique in the database (``form_id``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from services.errors import FORM_ALREADY_SENT, RepeatedRequest
from services.jobs.types import JobSpec, Requester

log = logging.getLogger("services.jobs")


class RepeatGuard:
    def __init__(self, window: float) -> None:
        self._window = window
        self._asking: set[tuple[Any, ...]] = set()  # being reserved now
        self._recent: OrderedDict[tuple[Any, ...], float] = OrderedDict()  # key -> monotonic

    @contextlib.contextmanager
    def once(self, spec: JobSpec, who: Requester) -> Iterator[None]:
        """Around a reservation: RepeatedRequest if the same ask is under way or just made."""
        ask = _key(spec, who)
        if ask is None:
            yield
            return
        cutoff = time.monotonic() - self._window
        while self._recent and next(iter(self._recent.values())) < cutoff:
            self._recent.popitem(last=False)
        if ask in self._asking or ask in self._recent:
            log.info("user %s: repeated request %s refused", who.user_id, ask[:2])
            raise RepeatedRequest(FORM_ALREADY_SENT) if spec.form_id else RepeatedRequest()
        self._asking.add(ask)
        try:
            yield
        finally:
            self._asking.discard(ask)
        self._recent[ask] = time.monotonic()


def _key(spec: JobSpec, who: Requester) -> tuple[Any, ...] | None:
    """What makes two asks "the same"; a form's own id decides for it."""
    if spec.form_id is not None:
        return ("form", spec.form_id)
    if spec.parent_job_id is None:
        return None  # a typed command: Discord sends each one once
    # The images and the shape too: two images' actions (or Re-render 2K then 4K) differ.
    return (
        who.user_id,
        spec.parent_job_id,
        spec.kind,
        spec.prompt,
        spec.image_urls,
        spec.resolution,
        spec.aspect_ratio,
        spec.num_images,
    )
