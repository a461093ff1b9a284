"""How a job is stored: the row codec, the checks on a new job and the settable fields.

Everything between a ``jobs`` (or ``job_events``) row and the Job the rest of the bot sees.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from storage.clock import from_db, from_db_opt, to_db_opt
from storage.models import InvalidSettingError, Job, JobEvent, JobKind, JobState, NewJob
from storage.validate import opt_aware_time, opt_snowflake, opt_text, whole

MAX_ERROR_LENGTH = 2000

_json_list = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_KINDS = {k.value: k for k in JobKind}
_STATES = {s.value: s for s in JobState}


def _opt_error(name: str, value: Any) -> str | None:
    text = opt_text(name, value)
    return None if text is None else text[:MAX_ERROR_LENGTH]


def _urls(name: str, value: Any) -> str:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidSettingError(name, "must be a list of URLs")
    if not all(isinstance(u, str) and u for u in value):
        raise InvalidSettingError(name, "each URL must be non-empty text")
    return _json_list(list(value))


def _opt_time(name: str, value: Any) -> str | None:
    return to_db_opt(opt_aware_time(name, value))


# The columns transition() and set_fields() may change, each with its encoder.
_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "request_id": opt_text,
    "error": _opt_error,
    "result_urls": _urls,
    "status_message_id": opt_snowflake,
    "result_message_id": opt_snowflake,
    "log_message_id": opt_snowflake,
    "interaction_token": opt_text,
    "token_expires_at": _opt_time,
    "acknowledged": lambda name, value: int(bool(value)),
}


def encode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The stored values of ``fields``; only the names in _FIELDS can become column names."""
    encoded = {}
    for name, value in fields.items():
        encoder = _FIELDS.get(name)
        if encoder is None:
            known = ", ".join(_FIELDS)
            raise InvalidSettingError(name, f"not a job field that can be set ({known})")
        encoded[name] = encoder(name, value)
    return encoded


def validate_new(new: NewJob) -> tuple[JobKind, str, str | None]:
    """Check what SQL would reject less clearly; returns (kind, params JSON, token expiry)."""
    try:
        kind = JobKind(new.kind)
    except ValueError:
        raise InvalidSettingError("kind", f"must be one of {', '.join(JobKind)}") from None
    for name in ("user_id", "channel_id"):
        if opt_snowflake(name, getattr(new, name)) is None:
            raise InvalidSettingError(name, "is required")
    opt_snowflake("guild_id", new.guild_id)
    whole("cost", new.cost, 0)
    if not isinstance(new.prompt, str):
        raise InvalidSettingError("prompt", "must be text")
    try:
        params = json.dumps(new.params, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidSettingError("params", f"must be JSON-serialisable: {exc}") from exc
    opt_text("interaction_token", new.interaction_token)
    return kind, params, _opt_time("token_expires_at", new.token_expires_at)


def job_from_row(row: sqlite3.Row) -> Job:
    urls = row["result_urls"]
    return Job(
        id=row["id"],
        kind=_KINDS[row["kind"]],
        state=_STATES[row["state"]],
        user_id=row["user_id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        prompt=row["prompt"],
        params=json.loads(row["params"]),
        cost=row["cost"],
        created_at=from_db(row["created_at"]),
        updated_at=from_db(row["updated_at"]),
        request_id=row["request_id"],
        parent_job_id=row["parent_job_id"],
        interaction_token=row["interaction_token"],
        token_expires_at=from_db_opt(row["token_expires_at"]),
        status_message_id=row["status_message_id"],
        result_message_id=row["result_message_id"],
        log_message_id=row["log_message_id"],
        error=row["error"],
        result_urls=tuple(json.loads(urls)) if urls != "[]" else (),
        committed=row["committed"],
        age_restricted_channel=bool(row["age_restricted_channel"]),
        acknowledged=bool(row["acknowledged"]),
        locale=row["locale"],
    )


def event_from_row(job_id: str, row: sqlite3.Row) -> JobEvent:
    """A row with the state entered and when (``state``, ``at``)."""
    return JobEvent(job_id, _STATES[row["state"]], from_db(row["at"]))
