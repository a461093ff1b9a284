"""The job engine: ``JobService`` (engine.py) runs each job as one coroutine (pipeline.py) on
the state in the database; ``types.py`` is what it exchanges with the Discord side and
``request.py`` the typed request stored with every job."""

from services.jobs.engine import (
    NEVER_ACKNOWLEDGED,
    NOT_ACKNOWLEDGED,
    RESTART_LOST_SUBMIT,
    JobService,
)
from services.jobs.pipeline import SUBMIT_UNKNOWN
from services.jobs.request import JobRequest, spec_of
from services.jobs.types import (
    DEFAULT_UPLOAD_LIMIT,
    CancelResult,
    Delivery,
    JobEvents,
    JobPresenter,
    JobSpec,
    NoEvents,
    Progress,
    Requester,
    Reservation,
    Step,
    ensure_reusable,
    may_act_on,
)

__all__ = [
    "DEFAULT_UPLOAD_LIMIT",
    "NEVER_ACKNOWLEDGED",
    "NOT_ACKNOWLEDGED",
    "RESTART_LOST_SUBMIT",
    "SUBMIT_UNKNOWN",
    "CancelResult",
    "Delivery",
    "JobEvents",
    "JobPresenter",
    "JobRequest",
    "JobService",
    "JobSpec",
    "NoEvents",
    "Progress",
    "Requester",
    "Reservation",
    "Step",
    "ensure_reusable",
    "may_act_on",
    "spec_of",
]
