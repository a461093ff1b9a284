"""The bot's Prometheus metrics, in a registry of its own (one per bot, so tests never collide).

Recorded by the job engine (states, credits, request to delivery), the RunComfy client's
``on_request`` hook (requests by endpoint and outcome) and the Discord side (acknowledgement
time). Served by ``bot_metrics`` when ``METRICS_PORT`` is set. No discord.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from storage.models import Job, JobState

_REFUNDED = frozenset({JobState.FAILED, JobState.CANCELLED, JobState.REJECTED})
# A job takes seconds to many minutes; an acknowledgement a few milliseconds to 3 s.
_JOB_BUCKETS = (5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800)
_ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.job_states = Counter(
            "studio_job_transitions", "Jobs entering each state", ["state"], registry=r
        )
        self.request_to_delivery = Histogram(
            "studio_request_to_delivery_seconds",
            "From the member's request to the delivered result",
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.acknowledgement = Histogram(
            "studio_acknowledgement_seconds",
            "From the interaction's creation to the bot's answer",
            buckets=_ACK_BUCKETS,
            registry=r,
        )
        self.api_requests = Counter(
            "studio_runcomfy_requests",
            "RunComfy API requests (each attempt) by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.credits_reserved = Counter(
            "studio_credits_reserved", "Credits held when jobs started", registry=r
        )
        self.credits_committed = Counter(
            "studio_credits_committed", "Credits charged for delivered results", registry=r
        )
        self.credits_refunded = Counter(
            "studio_credits_refunded",
            "Credits given back for failed, cancelled or partly delivered jobs",
            registry=r,
        )
        self.jobs_in_flight = Gauge(
            "studio_jobs_in_flight", "Jobs running in this process", registry=r
        )

    def count_in_flight(self, read: Callable[[], float]) -> None:
        """The in-flight gauge reads ``read()`` at each scrape."""
        self.jobs_in_flight.set_function(read)

    def api_request(self, endpoint: str, outcome: str) -> None:
        """The RunComfy client's ``on_request`` hook."""
        self.api_requests.labels(endpoint, outcome).inc()

    def acknowledged(self, seconds: float) -> None:
        self.acknowledgement.observe(max(0.0, seconds))

    def reserved(self, job: Job) -> None:
        self.job_states.labels(JobState.RESERVED.value).inc()
        self.credits_reserved.inc(job.cost)

    def moved(self, job: Job, now: datetime) -> None:
        """``job`` just entered ``job.state``."""
        self.job_states.labels(job.state.value).inc()
        if job.state == JobState.DELIVERED:
            committed = job.committed or 0
            self.credits_committed.inc(committed)
            self.credits_refunded.inc(max(0, job.cost - committed))
            self.request_to_delivery.observe(max(0.0, (now - job.created_at).total_seconds()))
        elif job.state in _REFUNDED:
            self.credits_refunded.inc(job.cost)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
