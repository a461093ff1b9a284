"""The polling schedule, on a simulated clock: no waiting, no timing assertions on real time."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from dataclasses import dataclass

import pytest

from client.models import JobState, JobStatus
from client.polling import (
    DurationEstimate,
    DurationEstimator,
    JobSample,
    JobTimeline,
    PollingPolicy,
)

POLICY = PollingPolicy()
KEYS = ("model@1K", "model", "*")


@dataclass
class SimJob:
    """A job as the fake runs it: queued (position counting down), running, then completed."""

    queue: float
    run: float
    first_position: int = 0

    def status(self, t: float) -> JobStatus:
        if t < self.queue:
            left = (self.queue - t) / self.queue
            position = min(self.first_position, math.floor(left * (self.first_position + 1)))
            return JobStatus(JobState.QUEUED, queue_position=position)
        if t < self.queue + self.run:
            return JobStatus(JobState.RUNNING)
        return JobStatus(JobState.COMPLETED)


def simulate(
    estimator: DurationEstimator, job: SimJob, latency: float = 0.002
) -> tuple[int, float]:
    """Follow one job submitted at t=0 as JobHandle.wait does: (API requests, detection delay)."""
    timeline = JobTimeline(estimator.policy, estimator.estimate(KEYS), submitted_at=0.0)
    now, requests = 0.0, 0
    while True:
        sent = timeline.next_poll_at(now)
        use_result = timeline.prefers_result(sent)
        status = job.status(sent + latency / 2)
        requests += 1
        if status.state is JobState.COMPLETED and not use_result:
            requests += 1  # /status said completed: the images need a /result call too
        now = sent + latency * requests
        timeline.observe(status, sent, now)
        if status.state is JobState.COMPLETED:
            sample = timeline.sample()
            assert sample is not None
            estimator.record(KEYS, sample)
            return requests, now - (job.queue + job.run)


@pytest.mark.parametrize(
    "job",
    [SimJob(1, 4, 1), SimJob(4, 16, 2), SimJob(0, 20), SimJob(12, 48, 5)],
    ids=["5s", "20s", "20s-no-queue", "60s"],
)
def test_steady_state_is_quick_and_light(job: SimJob) -> None:
    estimator = DurationEstimator(POLICY)
    for _ in range(5):  # warm-up: learn how long this model's jobs take
        simulate(estimator, job)
    for _ in range(5):
        requests, delay = simulate(estimator, job)
        assert 0 <= delay < 0.5
        if job.queue + job.run <= 20:
            assert requests <= 6


def test_first_job_without_history_polls_sparser_as_it_ages() -> None:
    timeline = JobTimeline(POLICY, None, submitted_at=0.0)
    times = [timeline.next_poll_at(0.0)]
    for _ in range(30):
        timeline.observe(JobStatus(JobState.RUNNING), times[-1], times[-1])
        times.append(timeline.next_poll_at(times[-1]))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] == POLICY.first_poll
    assert gaps[0] == POLICY.warmup_interval
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps))  # never denser later on
    assert max(gaps) == POLICY.max_interval
    # a 20 s first job is noticed within a quarter of its duration
    assert next(t for t in times if t >= 20) - 20 <= 5


def test_first_job_is_noticed_and_teaches_the_next() -> None:
    estimator = DurationEstimator(POLICY)
    first_requests, first_delay = simulate(estimator, SimJob(4, 16, 2))
    second_requests, _ = simulate(estimator, SimJob(4, 16, 2))
    assert first_delay <= 0.25 * 20
    assert second_requests < first_requests


def test_with_history_it_sleeps_most_of_the_expected_time() -> None:
    estimate = DurationEstimate(2, 18, uncertainty=0.2, variability=0.1, queue_step=None, jobs=5)
    timeline = JobTimeline(POLICY, estimate, submitted_at=100.0)
    assert timeline.next_poll_at(100.0) == 101.0  # the early look
    timeline.observe(JobStatus(JobState.RUNNING), 101.0, 101.0)
    # running by 101, so it left the queue by then: expected at 101 + 18
    assert timeline.expected_finish() == 119.0
    assert timeline.next_poll_at(101.0) == pytest.approx(101 + 0.75 * 18)
    timeline.observe(JobStatus(JobState.RUNNING), 118.8, 118.8)
    assert timeline.next_poll_at(118.8) == pytest.approx(118.8 + POLICY.min_interval)


def test_jobs_of_varying_length_are_still_noticed_quickly_and_lightly() -> None:
    """20 s jobs, each within +-10% (the bench's --jitter 0.1): the issue's target.

    Seeded, and long enough (390 jobs) that the median does not hinge on a few draws: across
    seeds it is 0.39-0.45 s, with 5.1 requests per job.
    """
    draw = random.Random(1).uniform
    estimator = DurationEstimator(POLICY)
    results = []
    for number in range(400):
        factor = 1 + draw(-0.1, 0.1)
        requests, delay = simulate(estimator, SimJob(4 * factor, 16 * factor, 2))
        if number >= 10:  # past the warm-up
            assert delay >= 0
            results.append((requests, delay))
    assert statistics.mean(r for r, _ in results) <= 6
    assert statistics.median(d for _, d in results) < 0.5


def test_a_job_overrunning_its_estimate_is_polled_with_growing_gaps() -> None:
    estimate = DurationEstimate(0, 20, uncertainty=0.1, variability=0.1, queue_step=None, jobs=5)
    timeline = JobTimeline(POLICY, estimate, submitted_at=0.0)
    now, times = 0.0, []
    while now < 200:
        now = timeline.next_poll_at(now)
        timeline.observe(JobStatus(JobState.RUNNING), now, now)
        times.append(now)
    late = [t for t in times if t > 21]
    gaps = [b - a for a, b in itertools.pairwise(late)]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps))
    assert max(gaps) == pytest.approx(POLICY.max_interval)  # (now + 15) - now, in floats


def test_queue_position_moves_the_expected_finish() -> None:
    estimate = DurationEstimate(1, 10, uncertainty=0.3, variability=0.2, queue_step=3.0, jobs=5)
    timeline = JobTimeline(POLICY, estimate, submitted_at=0.0)
    assert timeline.expected_finish() == 11
    timeline.observe(JobStatus(JobState.QUEUED, queue_position=4), 1.0, 1.0)
    assert timeline.expected_finish() == 1 + 4 * 3.0 + 10
    timeline.observe(JobStatus(JobState.QUEUED, queue_position=0), 14.0, 14.0)
    assert timeline.expected_finish() == 14 + 10
    timeline.observe(JobStatus(JobState.RUNNING), 16.0, 16.0)
    assert timeline.expected_finish() == 14 + 10  # left the queue between 14 and 16


def test_status_while_queued_result_once_running_or_due() -> None:
    estimate = DurationEstimate(1, 10, uncertainty=0.3, variability=0.2, queue_step=None, jobs=5)
    timeline = JobTimeline(POLICY, estimate, submitted_at=0.0)
    assert not timeline.prefers_result(1.0)  # nothing known yet: /status shows the position
    timeline.observe(JobStatus(JobState.QUEUED, queue_position=1), 1.0, 1.0)
    assert not timeline.prefers_result(2.0)
    assert timeline.prefers_result(10.8)  # may be finished: /result saves a request
    timeline.observe(JobStatus(JobState.RUNNING), 3.0, 3.0)
    assert timeline.prefers_result(3.5)


def test_a_too_early_answer_counts_as_not_finished() -> None:
    timeline = JobTimeline(POLICY, None, submitted_at=0.0)
    timeline.observe(JobStatus(JobState.RUNNING), 1.0, 1.0)
    timeline.observe(None, 5.0, 5.0)
    timeline.observe(JobStatus(JobState.COMPLETED), 6.0, 6.0)
    sample = timeline.sample()
    assert sample is not None
    assert sample.done == (5.0, 6.0)  # after the last "not finished", by "completed"


def test_sample_brackets_leaving_the_queue_and_finishing_and_learns_position_time() -> None:
    timeline = JobTimeline(POLICY, None, submitted_at=10.0)
    timeline.observe(JobStatus(JobState.QUEUED, queue_position=3), 11.0, 11.0)
    timeline.observe(JobStatus(JobState.QUEUED, queue_position=1), 15.0, 15.0)
    timeline.observe(JobStatus(JobState.RUNNING), 17.0, 17.1)
    timeline.observe(JobStatus(JobState.RUNNING), 29.8, 29.8)
    timeline.observe(JobStatus(JobState.COMPLETED), 30.0, 30.2)
    assert timeline.sample() == JobSample(
        left_queue=(5.0, pytest.approx(7.1)),
        done=(pytest.approx(19.8), pytest.approx(20.2)),
        queue_steps=(2.0,),
    )


def test_no_sample_before_completion() -> None:
    timeline = JobTimeline(POLICY, None, submitted_at=0.0)
    timeline.observe(JobStatus(JobState.RUNNING), 1.0, 1.0)
    assert timeline.sample() is None


def test_estimator_falls_back_to_general_keys() -> None:
    estimator = DurationEstimator(POLICY)
    assert estimator.estimate(KEYS) is None
    estimator.record(("edit@4K", "edit", "*"), JobSample((1, 3), (19, 21), queue_steps=(4.0,)))
    assert estimator.estimate(("edit@1K", "edit", "*")) == estimator.estimate(("edit@4K",))
    assert estimator.estimate(("t2i@1K", "t2i", "*")) is not None  # the global key
    assert estimator.estimate(("edit@4K",)) == DurationEstimate(
        queue=2,
        run=18,
        uncertainty=1,
        variability=POLICY.initial_spread * 20,
        queue_step=4.0,
        jobs=1,
    )


def test_a_precise_observation_corrects_an_uncertain_estimate_at_once() -> None:
    estimator = DurationEstimator(POLICY)
    estimator.record(KEYS, JobSample((0, 2), (18, 26)))  # first job, seen roughly: 22 +- 4
    estimator.record(KEYS, JobSample((0, 2), (19.9, 20.1)))  # then one seen precisely
    estimate = estimator.estimate(KEYS)
    assert estimate is not None
    assert estimate.queue + estimate.run == pytest.approx(20, abs=0.2)
    assert estimate.uncertainty < 0.5  # from 4


def test_a_rough_observation_is_read_near_the_prediction() -> None:
    estimator = DurationEstimator(POLICY)
    for _ in range(6):
        estimator.record(KEYS, JobSample((0, 1), (19.9, 20.1)))
    before = estimator.estimate(KEYS)
    estimator.record(KEYS, JobSample((0, 1), (12, 20.2)))  # finished somewhere in 12..20.2
    after = estimator.estimate(KEYS)
    assert before is not None and after is not None
    # the middle (16.1) would drag the estimate down by ~1 s; the prediction says "near 20"
    assert after.queue + after.run == pytest.approx(before.queue + before.run, abs=0.2)


def test_jobs_that_vary_are_averaged() -> None:
    estimator = DurationEstimator(POLICY)
    for total in [20, 24, 16, 22, 18] * 4:
        estimator.record(KEYS, JobSample((0, 1), (total - 0.1, total + 0.1)))
    estimate = estimator.estimate(KEYS)
    assert estimate is not None
    assert 17 < estimate.queue + estimate.run < 23
    assert estimate.spread > 1  # polls densely over a wider window


def test_a_new_install_polls_like_a_fixed_two_second_poller_until_the_prior_bound() -> None:
    estimator = DurationEstimator(POLICY)
    assert estimator.prior("8K") is None
    prior = estimator.prior("1K")
    assert prior is not None
    bound = dict(POLICY.cold_until)["1K"]
    timeline = JobTimeline(POLICY, prior, submitted_at=0.0)
    times = [timeline.next_poll_at(0.0)]
    assert times[0] == POLICY.cold_interval  # at 2, 4, 6 ... s, as a fixed 2 s poller
    while times[-1] < 3 * bound:
        timeline.observe(JobStatus(JobState.RUNNING), times[-1], times[-1])
        times.append(timeline.next_poll_at(times[-1]))
    gaps = [(a, b - a) for a, b in itertools.pairwise(times)]
    assert all(gap == pytest.approx(POLICY.cold_interval) for at, gap in gaps if at < bound)
    assert max(gap for _, gap in gaps) == pytest.approx(POLICY.max_interval)  # then backs off


def test_jobs_varying_by_a_fifth_are_noticed_sooner_than_by_a_fixed_two_second_poller() -> None:
    """20 s jobs within +-20% (bench --jitter 0.2): the issue's target, on the simulated clock.

    A fixed 2 s poller makes ~11 requests a job (10 /status and a /result) with a median delay
    of ~1 s; the goal is at most half the requests and no longer a wait.
    """
    draw = random.Random(3).uniform
    estimator = DurationEstimator(POLICY)
    results = []
    for number in range(300):
        factor = 1 + draw(-0.2, 0.2)
        requests, delay = simulate(estimator, SimJob(4 * factor, 16 * factor, 2))
        if number >= 10:
            results.append((requests, delay))
    delays = sorted(d for _, d in results)
    assert statistics.mean(r for r, _ in results) <= 5.5
    assert statistics.median(delays) < 1.0
    assert delays[int(0.9 * len(delays))] < 2.0
