"""What the admin service raises and returns: typed data, never text for Discord.

Errors name what went wrong (the field, the kind of thing and its id); reports are the records a
command shows. The cogs word both (cogs/refusals.py, cogs/admin_render.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from services.errors import StudioError
from services.wording import Wording
from storage.models import Balance, Ban, BlocklistEntry, GuildPolicy, GuildStats, LedgerEntry


class AdminError(StudioError):
    """Root of the admin service's errors; ``str()`` is a plain line for the bot's log.

    A StudioError, so the bot's error handler answers it wherever it escapes (buttons too).
    """


class InvalidSetting(AdminError):
    """A value out of range or malformed: ``field`` names the option, ``problem`` says why."""

    def __init__(self, field: str, text: str, /, **args: Any) -> None:
        self.problem = Wording(text, args)
        super().__init__(f"{field}: {self.problem}")
        self.field = field


Listing = Literal["channel", "role", "blocklist"]
Missing = Literal["channel", "role", "tier", "override", "blocklist entry", "ban"]


class AlreadyListed(AdminError):
    """Adding what is there already: an allowed channel or role (``target_id``), or a blocklist
    pattern (``target_id``: the entry that has it)."""

    def __init__(self, what: Listing, target_id: int) -> None:
        super().__init__(f"{what} {target_id} is already listed")
        self.what = what
        self.target_id = target_id


class NotFound(AdminError):
    """The thing to remove or change does not exist: ``what`` names the kind, ``target_id`` the
    channel, role, member or blocklist entry."""

    def __init__(self, what: Missing, target_id: int) -> None:
        super().__init__(f"no {what} for {target_id}")
        self.what = what
        self.target_id = target_id


@dataclass(frozen=True, slots=True)
class SettingsSummary:
    """``/admin settings``: a guild's whole configuration at a glance."""

    policy: GuildPolicy
    blocklist_entries: int
    active_bans: tuple[Ban, ...]
    global_default_credits: int  # what members get when neither the guild nor a tier says


@dataclass(frozen=True, slots=True)
class StatsReport:
    """``/admin stats``: today (since UTC midnight) and the last 7 days."""

    today: GuildStats
    week: GuildStats


@dataclass(frozen=True, slots=True)
class LedgerReport:
    """``/admin quota ledger``: a member's credits today and their recent ledger, newest first."""

    user_id: int
    balance: Balance
    entries: tuple[LedgerEntry, ...]


@dataclass(frozen=True, slots=True)
class BlocklistReport:
    """``/admin blocklist list``: the entries, and why any of them is not enforced."""

    entries: tuple[BlocklistEntry, ...]
    problems: dict[int, Wording]  # entry id -> why it matches nothing


__all__ = [
    "AdminError",
    "AlreadyListed",
    "BlocklistReport",
    "InvalidSetting",
    "LedgerReport",
    "Listing",
    "Missing",
    "NotFound",
    "SettingsSummary",
    "StatsReport",
]
