"""When to ask about a job next, and what the client learns from finished jobs.

The aim is to notice completion quickly while asking rarely. The client learns, per model,
resolution and image count, how long jobs spend queued and running, how much they vary
(``spread``) and how many seconds one queue position is worth. For a job it then predicts the
finish from the submit time, moved later while the API still reports the job queued
(``queue_position`` x seconds per position), and polls:

- once early (``first_poll``), unless the job is expected to finish soon anyway: shows the user
  the queue position and catches early failures;
- then sleeps until the window where the job most likely finishes (the prediction
  +- ``WINDOW_SPREADS`` x spread, wider on the early side, and wider still on the late side,
  where polls cost only jobs that run late), in steps of ``approach`` of the expected remaining
  time, at most ``max_interval``, while the window is further away than that;
- across that window every ``window / window_polls`` seconds (between ``min_interval`` and
  ``dense_interval``), as /result calls, so the poll that sees the end also brings the images;
- past it, with gaps growing by ``warmup_growth`` of the overrun, up to ``max_interval``.

With no history for a resolution the prior (``cold_until``) stands in: poll like a fixed
``cold_interval`` poller up to that bound, then back off. Handles rebuilt without their request
have no prior: they poll every ``warmup_growth`` x elapsed time, from ``warmup_interval``.

Learning: polls only bracket when a job left the queue and when it finished. Each bracket is
read as the prediction cut to the bracket (its middle when narrow, near the predicted edge when
wide), then averaged in with a gain that is high while the estimate is uncertain and the
``smoothing`` floor once it is not: a scalar Kalman filter, in short. The spread is the RMS of
the misses beyond what the estimate's own uncertainty explains; a bracket is never read closer
to the prediction than ``initial_spread`` of it, so finishes seen only as "done by the first
poll" still widen a too narrow window. What was learned can be exported as plain data and
loaded again after a restart. Everything here is pure arithmetic on loop-clock times, so it is
tested without waiting.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields

from client.models import JobState, JobStatus


@dataclass(frozen=True, slots=True)
class PollingPolicy:
    first_poll: float = 1.0  # seconds after submit
    min_interval: float = 0.4  # densest polling, near the expected finish
    max_interval: float = 15.0  # longest gap, so long jobs still report progress
    approach: float = 0.75  # fraction of the expected remaining time to sleep
    warmup_interval: float = 1.0  # no history: the first gaps...
    warmup_growth: float = 0.25  # ...then this fraction of the elapsed time
    dense_interval: float = 1.55  # widest gap in the likely window: a fixed 2 s poller's median
    # delay is 1 s, this gives about 0.8 s; ...
    window_polls: float = 5.0  # ...and about this many polls across the window (fewer if wide)
    early_look_min: float = 8.0  # no early look when the window opens sooner than this
    smoothing: float = 0.15  # weight of the newest job in the duration averages
    spread_smoothing: float = 0.15  # weight floor of the newest miss in the spread average
    initial_spread: float = 0.05  # after one job, assume jobs vary by this fraction of it
    # A poll's request timeout is cut to the time left before wait()'s deadline, but never
    # below this, so the last poll (at the deadline) can be answered: the most wait() overruns.
    last_poll_timeout: float = 2.0
    # No history for a resolution: poll every cold_interval (a fixed 2 s poller, so a new
    # install's first job does no worse than one) up to cold_until seconds, then back off.
    # RunComfy publishes no durations, so these bounds are generous guesses, not measurements:
    # 3x the ~20 s assumed for a 1K job (bench/polling's 20 s case), more for the larger
    # resolutions (2K is 4x and 4K 16x the pixels of 1K). They only decide when gaps grow.
    cold_interval: float = 2.0
    cold_until: tuple[tuple[str, float], ...] = (
        ("0.5K", 60.0),
        ("1K", 60.0),
        ("2K", 90.0),
        ("4K", 150.0),
    )


# Half-width of the likely window, in spreads: the edge of a uniform spread (sqrt 3 sigma). Its
# early side is a little wider, as a mean learned from few jobs is often off (chosen on the
# simulated clock, jobs varying by +-20%: it removed most waits over 2 s for ~0.5 requests).
WINDOW_SPREADS = math.sqrt(3)
EARLY_SIDE = 1.15  # on the early side, this many half-widths
LATE_SIDE = 1.5  # ...and on the late side, this many


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
    return _cut_normal(bracket, predicted, sigma)[0]


def _cut_normal(
    bracket: tuple[float, float], predicted: float, sigma: float
) -> tuple[float, float]:
    """Mean and variance of a normal (predicted, sigma) cut to ``bracket``."""
    lo, hi = bracket
    if sigma > 0:
        a, b = (lo - predicted) / sigma, (hi - predicted) / sigma
        mass = _cdf(b) - _cdf(a)
        if mass > 1e-9:
            pa, pb = _pdf(a), _pdf(b)
            shift = (pa - pb) / mass
            # a or b may be infinite-like; x * pdf(x) -> 0 there
            spread = (a * pa - b * pb) / mass
            var = max(0.0, sigma**2 * (1 + spread - shift**2))
            return min(hi, max(lo, predicted + sigma * shift)), min(var, (hi - lo) ** 2 / 12)
    return min(hi, max(lo, predicted)), (hi - lo) ** 2 / 12


def _pdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _cdf(x: float) -> float:
    return (1 + math.erf(x / math.sqrt(2))) / 2


class DurationEstimator:
    """Per-key moving averages of job durations; keys go from specific to general."""

    def __init__(self, policy: PollingPolicy) -> None:
        self.policy = policy
        self._estimates: dict[str, DurationEstimate] = {}
        self._listeners: list[Callable[[], None]] = []

    def estimate(self, keys: Sequence[str]) -> DurationEstimate | None:
        """The most specific key with history, or None."""
        return next((self._estimates[k] for k in keys if k in self._estimates), None)

    def prior(self, resolution: str) -> DurationEstimate | None:
        """What to assume for a resolution never seen: anywhere up to its ``cold_until``."""
        bound = dict(self.policy.cold_until).get(resolution)
        if bound is None:
            return None
        return DurationEstimate(0.0, bound / 2, bound / 2, 0.0, None, jobs=0)

    def record(self, keys: Sequence[str], sample: JobSample) -> None:
        for key in keys:
            self._estimates[key] = self._updated(self._estimates.get(key), sample)
        for listener in self._listeners:
            listener()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (synchronously: keep it cheap) after each recorded job."""
        self._listeners.append(listener)

    def export(self) -> dict[str, dict[str, float | int | None]]:
        """What was learned, as plain data (JSON-ready) for ``load`` after a restart."""
        return {key: asdict(estimate) for key, estimate in self._estimates.items()}

    def load(self, state: Mapping[str, Mapping[str, object]]) -> int:
        """Take estimates ``export`` gave; keys learned since start-up keep theirs. Entries
        that do not make sense are skipped (a stored value must never break polling).
        Returns how many were taken."""
        taken = 0
        for key, values in state.items():
            estimate = _estimate_from(values)
            if isinstance(key, str) and estimate is not None and key not in self._estimates:
                self._estimates[key] = estimate
                taken += 1
        return taken

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
        # Never trust a prediction closer than min_interval or initial_spread of it: a finish
        # seen only as "done by the first poll" would be read as the prediction, confirming a
        # too narrow window forever.
        sigma = max(old.spread, p.min_interval, p.initial_spread * predicted)
        total, seen2 = _cut_normal(sample.done, predicted, sigma)  # seen2: how unsure it is
        start = min(_likely_in(sample.left_queue, old.queue, sigma), total)
        # Jobs all alike and seen precisely: this one is the best guess for the next (gain
        # near 1, while the estimate is uncertain); jobs that vary, or a finish seen only
        # roughly (a wide bracket): average them in (the smoothing floor).
        u2, v2 = old.uncertainty**2, old.variability**2
        gain = max(p.smoothing, u2 / (u2 + v2 + seen2) if u2 else 0.0)
        # Jobs varying: the expected squared miss of this job (its reading's own doubt
        # included) beyond the estimate's uncertainty; averaged as a variance (RMS), equally
        # over the jobs so far, then with the spread_smoothing floor.
        miss2 = (total - predicted) ** 2 - u2
        weight = max(p.spread_smoothing, 1 / old.jobs)
        return DurationEstimate(
            queue=old.queue + gain * (start - old.queue),
            run=old.run + gain * (total - start - old.run),
            uncertainty=math.hypot((1 - gain) * old.uncertainty, gain * math.sqrt(seen2)),
            variability=math.sqrt(max(0.0, v2 + weight * (max(0.0, miss2) - v2))),
            queue_step=step,
            jobs=old.jobs + 1,
        )


def _estimate_from(values: object) -> DurationEstimate | None:
    """A stored estimate, checked: finite non-negative seconds, at least one job behind it."""
    if not isinstance(values, Mapping):
        return None
    try:
        estimate = DurationEstimate(**{f.name: values[f.name] for f in fields(DurationEstimate)})
    except (KeyError, TypeError):
        return None
    seconds = [estimate.queue, estimate.run, estimate.uncertainty, estimate.variability]
    if estimate.queue_step is not None:
        seconds.append(estimate.queue_step)
    if not all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
        for x in seconds
    ):
        return None
    if not isinstance(estimate.jobs, int) or isinstance(estimate.jobs, bool) or estimate.jobs < 1:
        return None
    return estimate


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

    def window(self) -> tuple[float, float, float] | None:
        """(opens, closes, gap): where the job most likely finishes and how densely to poll
        there; None without an estimate. A prior's window is everything up to its bound."""
        finish, e, p = self.expected_finish(), self._estimate, self._policy
        if finish is None or e is None:
            return None
        if e.jobs == 0:  # the same polls as a fixed poller, the last one bringing the images
            gap = min(p.cold_interval, p.max_interval)
            return self._submitted + gap, finish + e.spread, gap
        half = WINDOW_SPREADS * max(e.spread, p.min_interval)  # polls on both sides of it
        dense = min(p.dense_interval, p.max_interval)
        gap = min(dense, max(p.min_interval, 2 * half / p.window_polls))
        # The first poll EARLY_SIDE x half before the prediction plus a gap (a finish at that
        # edge is still seen within a gap). The far side is wider: polls there cost only jobs
        # that run late, while every job pays for polls on the early side.
        return finish - EARLY_SIDE * half + min(gap, half), finish + LATE_SIDE * half, gap

    def next_poll_at(self, now: float) -> float:
        p = self._policy
        finish, window = self.expected_finish(), self.window()
        if finish is None or window is None:
            if self._polls == 0:
                return max(now, self._submitted + p.first_poll)
            interval = p.warmup_growth * (now - self._submitted)
            return now + min(p.max_interval, max(p.warmup_interval, interval))
        opens, closes, gap = window
        if self._polls == 0 and opens - self._submitted >= p.early_look_min:
            return max(now, self._submitted + p.first_poll)  # the early look
        if now < opens:
            target = opens
            # Far from the window: sleep most of the expected time, not past max_interval (a gap
            # may exceed it by half the window when that saves a poll just before the window).
            if self._polls and opens - now > p.max_interval + (closes - opens) / 2:
                step = now + p.approach * (finish - now)
                target = min(step, now + p.max_interval, opens)
            return max(target, now + gap) if self._polls else max(target, now)
        if now <= closes:
            return now + gap
        # Late: gaps grow with the overrun, as with no history (a slow job is still seen soon).
        return now + min(p.max_interval, gap + p.warmup_growth * (now - closes))

    def prefers_result(self, now: float) -> bool:
        """Poll /result (which answers with the state until done, then the images)?

        /status while queued or unknown and the end is not near (the queue position for the
        user); /result once it runs or the likely window has opened, so the poll that sees the
        end needs no second request.
        """
        if self._state in (JobState.RUNNING, JobState.COMPLETED):
            return True
        window, e = self.window(), self._estimate
        if window is None or e is None or (self._polls == 0 and e.jobs == 0):
            return False
        return now >= window[0]

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
