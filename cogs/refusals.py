"""What a refusal says: the typed refusals of the services, worded for Discord. Pure functions.

The policy and admin services raise data (the rule, the channels, roles, member or time); this
module writes the sentence, with the mentions and timestamps Discord renders for each reader.
``cogs.tree.message_for`` is their one caller for members; the answers ping nobody.
"""

from __future__ import annotations

from discord.utils import format_dt

from cogs.render import clipped, format_duration, listed, plural
from services.admin import AdminError, AlreadyListed, InvalidSetting, NotFound
from services.policy import (
    Banned,
    CoolingDown,
    DmsOff,
    MissingRole,
    PolicyRefusal,
    PromptBlocked,
    SafetyTooHigh,
    TooManyInFlight,
    WrongChannel,
)

MAX_TAGS = 5  # channels or roles a refusal names before it says "and N more"
REASON_CHARS = 200  # a ban reason, on one line

_ALREADY = {
    "channel": "<#{}> is already an allowed channel.",
    "role": "<@&{}> is already an allowed role.",
    "blocklist": "That's already on the blocklist (entry #{}).",
}
_NOT_FOUND = {
    "channel": "<#{}> is not in the allowed channels.",
    "role": "<@&{}> is not in the allowed roles.",
    "tier": "<@&{}> has no credit tier.",
    "override": "<@{}> has no personal daily credits set.",
    "blocklist entry": "There is no blocklist entry #{}.",
    "ban": "<@{}> isn't banned from the studio.",
}


def refusal_text(refusal: PolicyRefusal) -> str:
    """The member's short private answer to a request a rule refused."""
    match refusal:
        case DmsOff():
            return "The studio doesn't work in DMs. Use it in a server instead."
        case Banned(until=until, reason=reason):
            text = "You're banned from the studio in this server"
            text += "." if until is None else f" until {format_dt(until, 'R')}."
            if reason:
                text += f" Reason: {clipped(' '.join(reason.split()), REASON_CHARS)}"
            return text
        case WrongChannel(channel_ids=ids):
            tags = [f"<#{c}>" for c in ids]
            return f"Image generation is only enabled in {listed(tags, limit=MAX_TAGS)}."
        case MissingRole(role_ids=ids):
            tags = [f"<@&{r}>" for r in ids]
            which = "the role" if len(tags) == 1 else "one of these roles:"
            return f"The studio here is for members with {which} {listed(tags, limit=MAX_TAGS)}."
        case SafetyTooHigh(asked=asked, ceiling=ceiling, age_restricted_ceiling=elsewhere):
            text = f"Safety {asked} is above this server's ceiling of {ceiling}"
            if elsewhere is not None:
                text += f" here (age-restricted channels allow up to {elsewhere})"
            return text + f". Pick {ceiling} or lower."
        case PromptBlocked():
            # never echoes what matched: that goes to the moderators' log only
            return (
                "That prompt contains something this server doesn't allow, so it wasn't sent."
                " Please reword it."
            )
        case TooManyInFlight(in_flight=in_flight, limit=limit):
            return (
                f"You already have {plural(in_flight, 'job')} in progress"
                f" (limit: {limit} at a time)."
                " Try again when one finishes."
            )
        case CoolingDown(frees_at=frees_at, cooldown_seconds=seconds) if frees_at is not None:
            return (
                f"You can use the studio again {format_dt(frees_at, 'R')}"
                f" (cooldown: {format_duration(seconds)})."
            )
    return "The studio can't take this request here right now."


SERVICE_DOWN = (
    "The image service isn't available right now. Please try again in a few minutes;"
    " nothing was charged."
)


def admin_error_text(error: AdminError) -> str:
    """The admin's short private answer to an ``/admin`` change that was refused."""
    match error:
        case AlreadyListed(what=what, target_id=target):
            return _ALREADY[what].format(target)
        case NotFound(what=what, target_id=target):
            return _NOT_FOUND[what].format(target)
        case InvalidSetting(field=field, problem=problem):
            return f"{field}: {problem}"
    return str(error)


__all__ = ["SERVICE_DOWN", "admin_error_text", "refusal_text"]
