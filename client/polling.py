"""When to ask about a job next, and what the client learns from finished jobs.

The aim is to notice completion quickly while asking rarely. The client learns, per model (and
resolution), how long jobs spend queued and running, how far its predictions miss (``spread``),
and how many seconds one queue position is worth. For a job it then predicts the finish from the
submit time, moved later while the API still reports the job queued (``queue_position`` x
seconds per position), and polls:

- once early (``first_poll``): shows the user the queue position and catches early failures;
- then sleeps ``approach`` (3/4) of the expected remaining time, so polls get denser as the finish
  nears, down to ``min_interval`` within about ``spread`` of it;
- past the expected finish the gaps grow again with the overrun, up to ``max_interval``.

With no history yet (the first job of a model) it polls every ``warmup_growth`` x elapsed time,
between ``warmup_interval`` and ``max_interval``.

Learning: polls only bracket when a job left the queue and when it finished. Each bracket is
read as the prediction cut to the bracket (its middle when narrow, near the predicted edge when
wide), then averaged in with a gain that is high while the estimate is uncertain and the
``smoothing`` floor once it is not: a scalar Kalman filter, in short. Everything here is pure
arithmetic on loop-clock times, so it is tested without waiting.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from client.models import JobState, JobStatus


@dataclass(frozen=True, slots=True)
class PollingPolicy:
    first_poll: float = 1.0  # seconds after submit
    min_interval: float = 0.4  # densest polling, near the expected finish
    max_interval: float = 15.0  # longest gap, so long jobs still report progress
    approach: float = 0.75  # fraction of the expected remaining time to sleep
    warmup_interval: float = 1.0  # no history: the first gaps...
    warmup_growth: float = 0.25  # ...then this fraction of the elapsed time
    smoothing: float = 0.3  # weight of the newest job in the duration averages
    spread_smoothing: float = 0.5  # weight of the newest miss in the spread average
    initial_spread: float = 0.05  # after one job, assume jobs vary by this fraction of it
    # A poll's request timeout is cut to the time left before wait()'s deadline, but never
    # below this, so the last poll (at the deadline) can be answered: the most wait() overruns.
    last_poll_timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class DurationEstimate:
    queue: float  # seconds from submit until the job leaves the queue
    run: float  # seconds from leaving the queue to completion
    uncertainty: float  # how far off queue + run may be, from how precisely jobs were seen
    variability: float  # how much jobs differ from one another, beyond that
    queue_step: float | None  # seconds per queue position, once seen
    jobs: int  # finished jobs behind this estimate

    @property
    def spread(self) -> float:
        """Typical miss of a prediction: poll densely within about this of the finish."""
        return self.uncertainty + self.variability


@dataclass(frozen=True, slots=True)
class JobSample:
    """When one finished job left the queue and when it completed, in seconds after submit.

    Polls only bracket these moments: each is (latest time it had not happened, time it had).
    """

    left_queue: tuple[float, float]
    done: tuple[float, float]
    queue_steps: tuple[float, ...] = ()


def _middle(bracket: tuple[float, float]) -> float:
    return (bracket[0] + bracket[1]) / 2


def _likely_in(bracket: tuple[float, float], predicted: float, sigma: float) -> float:
    """Where in ``bracket`` the moment most likely was, given a prediction +- sigma.

    The mean of the normal prior cut to the bracket: the middle of a narrow bracket, but near
    the predicted edge of a wide one (sparse polls see a finish only roughly).
    """
    lo, hi = bracket
    if sigma > 0:
        a, b = (lo - predicted) / sigma, (hi - predicted) / sigma
        mass = _cdf(b) - _cdf(a)
        if mass > 1e-9:
            return min(hi, max(lo, predicted + sigma * (_pdf(a) - _pdf(b)) / mass))
    return min(hi, max(lo, predicted))


def _pdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _cdf(x: float) -> float:
    return (1 + math.erf(x / math.sqrt(2))) / 2


class DurationEstimator:
    """Per-key moving averages of job durations; keys go from specific to general."""

    def __init__(self, policy: PollingPolicy) -> None:
        self.policy = policy
        self._estimates: dict[str, DurationEstimate] = {}

    def estimate(self, keys: Sequence[str]) -> DurationEstimate | None:
        """The most specific key with history, or None."""
        return next((self._estimates[k] for k in keys if k in self._estimates), None)

    def record(self, keys: Sequence[str], sample: JobSample) -> None:
        for key in keys:
            self._estimates[key] = self._updated(self._estimates.get(key), sample)

    def _updated(self, old: DurationEstimate | None, sample: JobSample) -> DurationEstimate:
        p = self.policy
        step = old.queue_step if old else None
        for seen in sample.queue_steps:
            step = seen if step is None else step + p.smoothing * (seen - step)
        width = (sample.done[1] - sample.done[0]) / 2
        if old is None:
            total = _middle(sample.done)
            start = min(_middle(sample.left_queue), total)
            return DurationEstimate(start, total - start, width, p.initial_spread * total, step, 1)
        predicted = old.queue + old.run
        total = _likely_in(sample.done, predicted, old.spread)
        start = min(_likely_in(sample.left_queue, old.queue, old.spread), total)
        # Jobs all alike: this one is the best guess for the next (gain near 1, while the
        # estimate is uncertain); jobs that vary: average them (the smoothing floor).
        u2, v2 = old.uncertainty**2, old.variability**2
        gain = max(p.smoothing, u2 / (u2 + v2) if u2 else 0.0)
        # A miss beyond what the estimate's own uncertainty explains is jobs varying.
        miss = max(0.0, sample.done[0] - predicted, predicted - sample.done[1])
        excess = max(0.0, miss - old.uncertainty)
        return DurationEstimate(
            queue=old.queue + gain * (start - old.queue),
            run=old.run + gain * (total - start - old.run),
            uncertainty=math.hypot((1 - gain) * old.uncertainty, gain * width / math.sqrt(3)),
            variability=old.variability + p.spread_smoothing * (excess - old.variability),
            queue_step=step,
            jobs=old.jobs + 1,
        )


class JobTimeline:
    """One job's observations and the schedule that follows from them (loop-clock seconds)."""

    def __init__(
        self, policy: PollingPolicy, estimate: DurationEstimate | None, submitted_at: float
    ) -> None:
        self._policy = policy
        self._estimate = estimate
        self._submitted = submitted_at
        self._polls = 0
        self._state: JobState | None = None
        self._position: int | None = None
        self._queued_at: float | None = None  # when the latest "queued" answer was asked for
        self._positions: list[tuple[float, int]] = []
        self._left_queue_by: float | None = None  # first answer past "queued" had arrived
        self._pending_at = submitted_at  # when the latest "not finished" answer was asked for
        self._done_by: float | None = None

    def observe(self, status: JobStatus | None, sent_at: float, received_at: float) -> None:
        """Record an answer; None means "not finished" without a state (a 400005 result)."""
        self._polls += 1
        if status is None:
            self._pending_at = sent_at
            return
        self._state = status.state
        if status.state is JobState.QUEUED:
            self._queued_at = sent_at
            self._position = status.queue_position
            if status.queue_position is not None:
                self._positions.append((sent_at, status.queue_position))
        elif self._left_queue_by is None:
            self._left_queue_by = received_at
        if status.state is JobState.COMPLETED:
            self._done_by = received_at
        elif not status.state.is_terminal:
            self._pending_at = sent_at

    def expected_finish(self) -> float | None:
        e = self._estimate
        if e is None:
            return None
        start = self._submitted + e.queue
        if self._state is JobState.QUEUED and self._queued_at is not None:
            # Still queued when last asked: it cannot start before the jobs ahead of it have.
            ahead = (self._position or 0) * (e.queue_step or 0.0)
            start = max(start, self._queued_at + ahead)
        elif self._left_queue_by is not None:
            # It left the queue between the last "queued" answer and the first later one.
            since = self._queued_at if self._queued_at is not None else self._submitted
            start = min(max(start, since), self._left_queue_by)
        return start + e.run

    def next_poll_at(self, now: float) -> float:
        p = self._policy
        finish = self.expected_finish()
        if self._polls == 0:
            first = self._submitted + p.first_poll
            if finish is not None:  # a job expected to be quicker than the early look
                first = min(first, self._submitted + p.approach * (finish - self._submitted))
            return max(now, first)
        if finish is None or self._estimate is None:
            interval, floor = p.warmup_growth * (now - self._submitted), p.warmup_interval
        else:
            interval = p.approach * max(abs(finish - now), self._estimate.spread)
            floor = p.min_interval
        return now + min(p.max_interval, max(floor, interval))

    def prefers_result(self, now: float) -> bool:
        """Poll /result (which answers with the images once done) rather than /status?

        /status while the job is queued or its state unknown, for the queue position; /result
        once it runs or may be finished, saving the extra request at the end.
        """
        if self._state in (JobState.RUNNING, JobState.COMPLETED):
            return True
        finish = self.expected_finish()
        if finish is None or self._estimate is None or self._polls == 0:
            return False
        return now >= finish - max(self._estimate.spread, self._policy.min_interval)

    def sample(self) -> JobSample | None:
        """What this job teaches about durations, once it has completed."""
        if self._done_by is None or self._left_queue_by is None:
            return None
        since = self._queued_at if self._queued_at is not None else self._submitted
        steps = tuple(
            (t2 - t1) / (p1 - p2)
            for (t1, p1), (t2, p2) in itertools.pairwise(self._positions)
            if p2 < p1
        )
        s = self._submitted
        return JobSample(
            left_queue=(since - s, self._left_queue_by - s),
            done=(self._pending_at - s, self._done_by - s),
            queue_steps=steps,
        )
