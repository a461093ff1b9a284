"""The moderators' side: the log (``log.py``, told of jobs by the engine), their buttons and
``/admin pending`` (``actions.py``), and what both work with (``types.py``). No discord."""

from services.moderation.actions import ModerationService
from services.moderation.log import ModLog
from services.moderation.types import (
    REJECTED_ERROR,
    REMOVED_MESSAGE,
    WRONG_ENTRY,
    ActionResult,
    BlockedAttempt,
    LogUnavailable,
    ModerationError,
    ModLogSink,
    Notice,
    Outcome,
    ensure_not_removed,
    is_removed,
)

__all__ = [
    "REJECTED_ERROR",
    "REMOVED_MESSAGE",
    "WRONG_ENTRY",
    "ActionResult",
    "BlockedAttempt",
    "LogUnavailable",
    "ModLog",
    "ModLogSink",
    "ModerationError",
    "ModerationService",
    "Notice",
    "Outcome",
    "ensure_not_removed",
    "is_removed",
]
