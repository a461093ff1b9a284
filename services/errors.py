"""The job service's own errors: each carries the ``Wording`` the cogs show the member.

``str(err)`` is that sentence in English, for logs; the cogs translate ``err.wording``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.wording import N_, Wording


class StudioError(Exception):
    """Root of the errors the studio shows to a member (ephemerally)."""

    def __init__(self, text: str, /, **args: Any) -> None:
        self.wording = Wording(text, args)
        self.message = str(self.wording)
        super().__init__(self.message)


class InvalidInput(StudioError):
    """Something the member gave us is unusable (``field`` names it); nothing was charged."""

    def __init__(self, field: str, text: str, /, **args: Any) -> None:
        super().__init__(text, **args)
        self.field = field


class JobNotFound(StudioError):
    def __init__(self, job_id: str) -> None:
        super().__init__(N_("There is no job `{job_id}`."), job_id=job_id)
        self.job_id = job_id


class NotAllowed(StudioError):
    """The member may not do this to this job (``action`` names what was refused)."""

    def __init__(self, action: str, text: str, /, **args: Any) -> None:
        super().__init__(text, **args)
        self.action = action


class StudioClosing(StudioError):
    def __init__(self) -> None:
        super().__init__(N_("The studio is restarting. Please try again in a minute."))


class RepeatedRequest(StudioError):
    """The same ask on the same result again within seconds (a double click): refused once."""

    def __init__(
        self, text: str = N_("That's already on its way (the button was clicked twice).")
    ) -> None:
        super().__init__(text)


FORM_ALREADY_SENT = N_("That form was already sent, so nothing more was started or charged.")


class StudioBusy(StudioError):
    def __init__(self) -> None:
        super().__init__(N_("The studio is very busy right now. Please try again in a moment."))


class ServiceUnavailable(StudioError):
    """RunComfy keeps failing, so the bot pauses sending jobs (the circuit breaker is open).

    Raised before anything is charged; ``retry_at`` is when the bot tries again by itself.
    The cogs word it for members.
    """

    def __init__(self, retry_at: datetime) -> None:
        super().__init__(N_("The image service isn't available right now; nothing was charged."))
        self.retry_at = retry_at
