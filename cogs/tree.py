"""The one place errors become messages: a ``CommandTree`` subclass.

Slash commands and context menus reach ``on_error`` through discord.py; buttons and modals call
``report`` themselves (discord.py would only log their errors). Our typed errors become short
ephemeral answers (``message_for``; the refusals' wording: cogs/refusals.py); anything else is
logged with the interaction id, which the member is shown so an operator can find it. ``reply``
is the cogs' one way of answering privately.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.utils import format_dt

from client.errors import InvalidRequestError, RunComfyError
from cogs.i18n import Speech, speech_for
from cogs.inputs import check_source
from cogs.payload import OUT_OF_DATE, check_payload
from cogs.refusals import SERVICE_DOWN, admin_error_text, refusal_text
from cogs.render import NO_MENTIONS, credits, limit_words, said_to
from cogs.translator import option_name
from services.admin import AdminError
from services.errors import InvalidInput, ServiceUnavailable, StudioClosing, StudioError
from services.policy import PolicyRefusal
from services.wording import N_
from storage.models import QuotaExceededError, TooManyJobsError

if TYPE_CHECKING:
    from bot import StudioBot

log = logging.getLogger(__name__)

_FIELD_NAMES = {
    "num_images": "count",
    "output_format": "format",
    "safety_tolerance": "safety",
    "enable_web_search": "web_search",
    "image_urls": "images",
}
_QUOTA_SPENT = {
    "guild daily cap": N_(
        "This server's daily credits are used up: this needs {cost}, {left} of {allowed} left"
        " ({limit}). Credits reset {when}."
    ),
    "global daily cap": N_(
        "The bot's daily credits are used up: this needs {cost}, {left} of {allowed} left"
        " ({limit}). Credits reset {when}."
    ),
}
_NOT_ENOUGH = N_(
    "Not enough credits left today: this needs {cost}, {left} of {allowed} left ({limit})."
    " Credits reset {when}."
)


def message_for(t: Speech, error: BaseException) -> str | None:
    """The member-facing text for an error we expect; None for a bug."""
    if isinstance(error, PolicyRefusal):
        return refusal_text(t, error)
    if isinstance(error, AdminError):
        return admin_error_text(t, error)
    if isinstance(error, ServiceUnavailable):
        return t(SERVICE_DOWN)
    if isinstance(error, InvalidInput):
        # the option is named as the member's client shows it
        option = error.wording.args.get("option")
        if isinstance(option, str):
            return said_to(t, error.wording, option=option_name(t, option))
        return said_to(t, error.wording)
    if isinstance(error, StudioError):
        return said_to(t, error.wording)
    if isinstance(error, QuotaExceededError):
        return t(
            _QUOTA_SPENT.get(error.limit, _NOT_ENOUGH),
            cost=credits(t, error.cost),
            left=max(error.allowed - error.used, 0),
            allowed=error.allowed,
            limit=limit_words(t, error.limit),
            when=format_dt(error.resets_at, "R"),
        )
    if isinstance(error, TooManyJobsError):
        return t.n(
            "You already have {count} job in progress (limit: {limit}). Try again when one"
            " finishes.",
            "You already have {count} jobs in progress (limit: {limit}). Try again when one"
            " finishes.",
            error.in_flight,
            limit=error.allowed,
        )
    if isinstance(error, InvalidRequestError):
        name = _FIELD_NAMES.get(error.field, error.field)
        return t("Invalid {name}: {allowed}.", name=name, allowed=error.allowed)
    if isinstance(error, RunComfyError):
        return t(
            "RunComfy didn't accept that: {message}. Nothing was charged.", message=error.message
        )
    if isinstance(error, app_commands.CheckFailure):
        # Our checks' texts are N_-marked constants (e.g. cogs/admin_options.py REFUSED).
        return t(str(error)) if str(error) else t("You can't use this here.")
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return t(OUT_OF_DATE)
    if isinstance(error, app_commands.TransformerError):
        return t("That value isn't one the command offers. Nothing was charged.")
    return None


class StudioTree(app_commands.CommandTree["StudioBot"]):
    async def interaction_check(self, interaction: discord.Interaction[StudioBot], /) -> bool:
        """Before any command runs: the studio is open, the server is ours, the options fit."""
        try:
            if not interaction.client.accepting:
                raise StudioClosing()
            check_source(interaction)
            check_payload(interaction)
        except StudioError as refusal:
            if interaction.type is discord.InteractionType.autocomplete:
                log.info("interaction %s: autocomplete refused (%s)", interaction.id, refusal)
                with contextlib.suppress(discord.HTTPException):
                    await interaction.response.autocomplete([])
            else:
                await self.report(interaction, refusal)
            return False
        return True

    async def on_error(
        self, interaction: discord.Interaction[StudioBot], error: app_commands.AppCommandError, /
    ) -> None:
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        command = interaction.command
        root = command.root_parent if isinstance(command, app_commands.Command) else None
        # /admin is the moderators' tool: its refusals speak the server's language.
        await self.report(
            interaction, original, moderator=root is not None and root.name == "admin"
        )

    async def report(
        self,
        interaction: discord.Interaction[StudioBot],
        error: BaseException,
        *,
        job_id: str | None = None,
        moderator: bool = False,
    ) -> None:
        """Tell the member what went wrong, ephemerally; log what we did not expect.

        ``job_id``: the job a button or modal acted on, named in the log line and the reference.
        ``moderator``: a moderators' tool (/admin, the log's buttons): the server's language.
        """
        t = speech_for(interaction.guild_locale if moderator else interaction.locale)
        text = message_for(t, error)
        if text is None:
            log.error(
                "interaction %s (user %s%s): unexpected error",
                interaction.id,
                interaction.user.id if interaction.user else "?",
                f", job {job_id}" if job_id else "",
                exc_info=error,
            )
            reference = f"`{interaction.id}`" + (f" · `{job_id}`" if job_id else "")
            text = t(
                "Something went wrong on our side. Reference: {reference}.", reference=reference
            )
        elif isinstance(error, PolicyRefusal):
            log.info(
                "interaction %s: refused by rule %s (user %s, guild %s)",
                interaction.id,
                error.rule,
                interaction.user.id,
                interaction.guild_id,
            )
        await say(interaction, text)


async def reply(
    interaction: discord.Interaction,
    content: str | None = None,
    *,
    embed: discord.Embed | None = None,
    file: discord.File | None = None,
) -> None:
    """Answer privately, pinging nobody, whether or not the interaction was answered already."""
    extra: dict[str, Any] = {"ephemeral": True, "allowed_mentions": NO_MENTIONS}
    if embed is not None:
        extra["embed"] = embed
    if file is not None:
        extra["file"] = file
    if interaction.response.is_done():
        await interaction.followup.send(content or discord.utils.MISSING, **extra)
    else:
        await interaction.response.send_message(content, **extra)


async def say(interaction: discord.Interaction, text: str) -> None:
    """``reply`` for the error path: a failure to answer is logged, never raised."""
    try:
        await reply(interaction, text)
    except discord.HTTPException as err:
        log.warning("interaction %s: could not answer (%s)", interaction.id, err)
