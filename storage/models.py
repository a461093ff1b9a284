"""Records the storage layer hands out. Plain frozen dataclasses: no discord, no SQL."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


class JobKind(enum.StrEnum):
    IMAGINE = "imagine"
    EDIT = "edit"


class JobState(enum.StrEnum):
    """A job's life (ARCHITECTURE.md section 3) plus the approval step of moderated guilds."""

    RESERVED = "reserved"  # row written and credits held, nothing sent yet
    SUBMITTING = "submitting"  # the submit POST may be on the wire; no request_id yet
    SUBMITTED = "submitted"  # request_id stored
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"  # output known (result_urls), not yet shown to the channel
    AWAITING_APPROVAL = "awaiting_approval"  # completed, held for a moderator
    DELIVERED = "delivered"  # posted; credits committed
    CANCELLED = "cancelled"  # credits refunded
    FAILED = "failed"  # credits refunded, error says why
    REJECTED = "rejected"  # a moderator rejected the result; credits refunded

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {JobState.DELIVERED, JobState.CANCELLED, JobState.FAILED, JobState.REJECTED}
)


@dataclass(frozen=True, slots=True)
class NewJob:
    """What the bot knows when a member asks for a job."""

    kind: JobKind
    user_id: int
    guild_id: int | None
    channel_id: int
    prompt: str
    params: dict[str, Any]  # GenerationOptions fields, plus "image_urls" for edits
    cost: int
    parent_job_id: str | None = None
    interaction_token: str | None = field(default=None, repr=False)  # a secret: never logged
    token_expires_at: datetime | None = None
    age_restricted_channel: bool = False
    form_id: str | None = None  # the form it was sent from: one job per form
    locale: str | None = None  # the requester's Discord locale: what is posted later speaks it


@dataclass(frozen=True, slots=True)
class Job:
    id: str  # short, url-safe; goes into button custom_ids
    kind: JobKind
    state: JobState
    user_id: int
    guild_id: int | None
    channel_id: int
    prompt: str
    params: dict[str, Any]
    cost: int
    created_at: datetime
    updated_at: datetime
    request_id: str | None = None
    parent_job_id: str | None = None
    interaction_token: str | None = field(default=None, repr=False)
    token_expires_at: datetime | None = None
    status_message_id: int | None = None  # the message showing progress (and later the result)
    result_message_id: int | None = None
    log_message_id: int | None = None  # the moderators' log entry
    error: str | None = None
    result_urls: tuple[str, ...] = ()
    committed: int | None = None  # credits committed on delivery
    age_restricted_channel: bool = False
    # Discord was answered (the member saw the job); a job never answered is not resumed.
    acknowledged: bool = True
    locale: str | None = None  # the requester's Discord locale (None: English)


@dataclass(frozen=True, slots=True)
class JobEvent:
    job_id: str
    state: JobState
    at: datetime


@dataclass(frozen=True, slots=True)
class Balance:
    """A member's day at a glance."""

    limit: int  # the effective daily allowance
    used: int  # reserved or committed today, less refunds and resets
    granted: int  # extra credits given by admins today
    remaining: int
    resets_at: datetime  # next UTC midnight
    limit_source: str  # "user override" | "role tier" | "guild default" | "global default"
    # What the guild and the whole bot may still spend today (None: no such cap). A member can
    # be stopped by these even with allowance left.
    guild_cap_remaining: int | None = None
    global_cap_remaining: int | None = None


class LedgerKind(enum.StrEnum):
    RESERVE = "reserve"
    COMMIT = "commit"
    REFUND = "refund"
    GRANT = "grant"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    kind: LedgerKind
    user_id: int
    guild_id: int | None
    amount: int
    job_id: str | None
    actor_id: int | None  # the admin, for grant/reset
    reason: str | None
    at: datetime


class StorageError(Exception):
    """Root of the storage layer's errors."""


class DatabaseOpenError(StorageError, OSError):
    """The database file cannot be opened or created: ``path`` names it, ``problem`` says why.

    Also an OSError, so callers that catch OSError for "cannot open the file" keep working.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"cannot open the database {path}: {problem}")
        self.path = path if isinstance(path, str) and "://" in path else Path(path)
        self.problem = problem

    def __str__(self) -> str:
        # OSError would format its own args; we want exactly the message above.
        return f"cannot open the database {self.path}: {self.problem}"


class SchemaTooNewError(StorageError):
    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"the database is at schema version {found}, newer than this bot supports"
            f" ({supported}); upgrade the bot or use another DATABASE_PATH"
        )
        self.found = found
        self.supported = supported


class JobNotFoundError(StorageError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class FormAlreadySentError(StorageError):
    """A job was already made from this form (it was submitted again)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"a job ({job_id}) was already made from this form")
        self.job_id = job_id


class CoolingDownError(StorageError):
    """The member's last job here is more recent than the cooldown allows."""

    def __init__(self, last_at: datetime) -> None:
        super().__init__(f"last job at {last_at.isoformat()}")
        self.last_at = last_at


class TooManyJobsError(StorageError):
    """The member already has ``allowed`` jobs in flight in this guild (or in DMs)."""

    def __init__(self, *, in_flight: int, allowed: int) -> None:
        super().__init__(f"{in_flight} jobs in flight, at most {allowed} allowed")
        self.in_flight = in_flight
        self.allowed = allowed


class QuotaExceededError(StorageError):
    """A reservation would pass a limit: ``limit`` names it, ``resets_at`` says when it frees."""

    def __init__(
        self, *, limit: str, allowed: int, used: int, cost: int, resets_at: datetime
    ) -> None:
        super().__init__(f"{limit}: {used} of {allowed} credits used today; this needs {cost}")
        self.limit = limit  # "daily allowance" | "guild daily cap" | "global daily cap"
        self.allowed = allowed
        self.used = used
        self.cost = cost
        self.resets_at = resets_at


@dataclass(frozen=True, slots=True)
class GuildPolicy:
    """A community's rules. A guild that never configured anything gets these defaults."""

    guild_id: int
    allowed_channel_ids: frozenset[int] = frozenset()  # empty: every channel
    allowed_role_ids: frozenset[int] = frozenset()  # empty: everyone
    role_tiers: dict[int, int] = field(default_factory=dict)  # role id -> daily credits
    default_daily_credits: int | None = None  # None: the global default
    daily_cap: int | None = None  # the whole guild's credits a day; None: no cap
    max_safety: int = 4  # highest safety_tolerance members may ask for
    max_safety_age_restricted: int = 6  # the ceiling in age-restricted channels
    log_channel_id: int | None = None
    approval_mode: bool = False
    cooldown_seconds: int = 0
    max_jobs_in_flight: int = 3
    dms_enabled: bool = False
    private_results: bool = False  # members may ask for results only they see


class InvalidSettingError(StorageError, ValueError):
    """A policy field (or argument) with a bad name or value; ``field`` names it."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


@dataclass(frozen=True, slots=True)
class BlocklistEntry:
    id: int
    guild_id: int
    pattern: str
    is_regex: bool
    added_by: int | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Ban:
    guild_id: int
    user_id: int
    reason: str | None
    banned_by: int | None
    until: datetime | None  # None: until lifted
    at: datetime


@dataclass(frozen=True, slots=True)
class GuildStats:
    """What a guild generated since a moment (jobs created at or after ``since``)."""

    guild_id: int | None  # None: DMs
    since: datetime
    jobs: int
    delivered: int
    images_delivered: int
    failures: int  # FAILED
    cancelled: int
    rejected: int
    in_flight: int
    credits_spent: int  # committed on delivery, less refunds after delivery
    top_users: tuple[tuple[int, int], ...]  # (user_id, credits spent), most first
