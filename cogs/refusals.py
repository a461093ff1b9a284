"""What a refusal says: the typed refusals of the services, worded for Discord. Pure functions.

The policy and admin services raise data (the rule, the channels, roles, member or time); this
module writes the sentence, with the mentions and timestamps Discord renders for each reader.
``cogs.tree.message_for`` is their one caller for members; the answers ping nobody.
"""

from __future__ import annotations

from discord.utils import format_dt

from cogs.i18n import Speech
from cogs.render import clipped, listed, said_to
from cogs.translator import option_name
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
from services.wording import N_

MAX_TAGS = 5  # channels or roles a refusal names before it says "and N more"
REASON_CHARS = 200  # a ban reason, on one line

_ALREADY = {
    "channel": N_("{target} is already an allowed channel."),
    "role": N_("{target} is already an allowed role."),
    "blocklist": N_("That's already on the blocklist (entry #{target})."),
}
_NOT_FOUND = {
    "channel": N_("{target} is not in the allowed channels."),
    "role": N_("{target} is not in the allowed roles."),
    "tier": N_("{target} has no credit tier."),
    "override": N_("{target} has no personal daily credits set."),
    "blocklist entry": N_("There is no blocklist entry #{target}."),
    "ban": N_("{target} isn't banned from the studio."),
}
_TAGS = {
    "channel": "<#{}>",
    "role": "<@&{}>",
    "tier": "<@&{}>",
    "override": "<@{}>",
    "ban": "<@{}>",
}


def refusal_text(t: Speech, refusal: PolicyRefusal) -> str:
    """The member's short private answer to a request a rule refused."""
    match refusal:
        case DmsOff():
            return t("The studio doesn't work in DMs. Use it in a server instead.")
        case Banned(until=until, reason=reason):
            if until is None:
                text = t("You're banned from the studio in this server.")
            else:
                text = t(
                    "You're banned from the studio in this server until {when}.",
                    when=format_dt(until, "R"),
                )
            if reason:
                flat = clipped(" ".join(reason.split()), REASON_CHARS)
                text += " " + t("Reason: {reason}", reason=flat)
            return text
        case WrongChannel(channel_ids=ids):
            tags = [f"<#{c}>" for c in ids]
            return t(
                "Image generation is only enabled in {channels}.",
                channels=listed(t, tags, limit=MAX_TAGS),
            )
        case MissingRole(role_ids=ids):
            tags = [f"<@&{r}>" for r in ids]
            roles = listed(t, tags, limit=MAX_TAGS)
            if len(tags) == 1:
                return t("The studio here is for members with the role {roles}.", roles=roles)
            return t(
                "The studio here is for members with one of these roles: {roles}.", roles=roles
            )
        case SafetyTooHigh(asked=asked, ceiling=ceiling, age_restricted_ceiling=elsewhere):
            if elsewhere is not None:
                return t(
                    "Safety {asked} is above this server's ceiling of {ceiling} here"
                    " (age-restricted channels allow up to {elsewhere}). Pick {ceiling} or lower.",
                    asked=asked,
                    ceiling=ceiling,
                    elsewhere=elsewhere,
                )
            return t(
                "Safety {asked} is above this server's ceiling of {ceiling}."
                " Pick {ceiling} or lower.",
                asked=asked,
                ceiling=ceiling,
            )
        case PromptBlocked():
            # never echoes what matched: that goes to the moderators' log only
            return t(
                "That prompt contains something this server doesn't allow, so it wasn't sent."
                " Please reword it."
            )
        case TooManyInFlight(in_flight=in_flight, limit=limit):
            return t.n(
                "You already have {count} job in progress (limit: {limit} at a time)."
                " Try again when one finishes.",
                "You already have {count} jobs in progress (limit: {limit} at a time)."
                " Try again when one finishes.",
                in_flight,
                limit=limit,
            )
        case CoolingDown(frees_at=frees_at, cooldown_seconds=seconds) if frees_at is not None:
            return t(
                "You can use the studio again {when} (cooldown: {cooldown}).",
                when=format_dt(frees_at, "R"),
                cooldown=t.duration(seconds),
            )
    return t("The studio can't take this request here right now.")


SERVICE_DOWN = N_(
    "The image service isn't available right now. Please try again in a few minutes;"
    " nothing was charged."
)


def admin_error_text(t: Speech, error: AdminError) -> str:
    """The admin's short private answer to an ``/admin`` change that was refused."""
    match error:
        case AlreadyListed(what=what, target_id=target):
            tag = _TAGS.get(what, "{}").format(target)
            return t(_ALREADY[what], target=tag)
        case NotFound(what=what, target_id=target):
            tag = _TAGS.get(what, "{}").format(target)
            return t(_NOT_FOUND[what], target=tag)
        case InvalidSetting(field=field, problem=problem):
            return f"{option_name(t, field)}: {said_to(t, problem)}"
    return t.wording(error.wording)


__all__ = ["SERVICE_DOWN", "admin_error_text", "refusal_text"]
