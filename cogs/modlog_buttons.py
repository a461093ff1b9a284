"""The moderators' buttons on log entries, the ban form, and the views that carry them.

The buttons are ``DynamicItem``s whose ``custom_id`` carries the job id
(``modlog:<action>:<job>``) or, on a blocked prompt, the member's id
(``modlog:banuser:<user>``), so pending approvals work after a restart. Every click is
authorised here, on the server side, from the clicker's permissions in the log channel:
Approve, Reject, Remove, Refund need Manage Messages; Ban requester needs Ban Members or Manage
Server (checked again when its form is sent). A job button acts only on the job's own entry in
the clicker's guild (the service checks both). Each action updates the entry. Labels, notes and
answers speak the server's preferred language: the log is the moderators'.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord.utils import format_dt

from cogs.admin_options import MAX_DURATION_TEXT
from cogs.admin_render import until_text
from cogs.answers import guarded, within_budget
from cogs.buttons import unstored
from cogs.i18n import Speech, speech_for
from cogs.inputs import studio
from cogs.modlog_outcomes import action_detail, action_text
from cogs.modlog_render import note
from cogs.render import clipped, credits
from cogs.routing import JOB_ID, USER_ID, StudioButton, StudioModal
from cogs.tree import reply
from services.admin import MAX_REASON_LENGTH
from services.errors import NotAllowed
from services.moderation import ActionResult
from services.wording import N_
from storage.models import Job, JobState

if TYPE_CHECKING:
    from cogs.modlog_sink import DiscordModLog

log = logging.getLogger("cogs.modlog")

MODERATE_REFUSED = N_("Only moderators (**Manage Messages**) can use this button.")
BAN_REFUSED = N_("Only members with **Ban Members** or **Manage Server** can ban from the studio.")
# The ban form. Discord's limits: a title or a label at most 45 characters, a placeholder 100;
# translations are clipped to fit (keep the English short, so they need not be).
BAN_TITLE = N_("Ban from the studio")
BAN_REASON = N_("Reason (shown to the member)")
BAN_DURATION = N_("Duration (empty: until lifted)")
BAN_EXAMPLE = N_("e.g. 30m, 2h, 7d")
FORM_TEXT = 45
FORM_PLACEHOLDER = 100


def may_moderate(perms: discord.Permissions) -> bool:
    return perms.administrator or perms.manage_messages


def may_ban(perms: discord.Permissions) -> bool:
    return perms.administrator or perms.ban_members or perms.manage_guild


def now() -> datetime:
    return datetime.now(UTC)


def speech(interaction: discord.Interaction) -> Speech:
    """The log's buttons speak the server's preferred language: they are the moderators'."""
    return speech_for(interaction.guild_locale)


def by(interaction: discord.Interaction) -> dict[str, str]:
    """Who did it and when, for a note: ``t("Approved by {actor} {when}", **by(...))``."""
    return {"actor": f"<@{interaction.user.id}>", "when": format_dt(now(), "R")}


# -- views --------------------------------------------------------------------------------------


def entry_view(t: Speech, job: Job, disabled: Collection[str] = ()) -> discord.ui.View:
    """The buttons a job's entry offers in its current state."""
    view = discord.ui.View(timeout=None)
    items: list[_ModButton]
    if job.state == JobState.AWAITING_APPROVAL:
        items = [ApproveButton(job.id, t=t), RejectButton(job.id, t=t), BanButton(job.id, t=t)]
    elif job.state == JobState.DELIVERED:
        items = [
            RemoveButton(job.id, disabled=job.result_message_id is None, t=t),
            RefundButton(job.id, t=t),
            BanButton(job.id, t=t),
        ]
    else:  # failed, cancelled, rejected: already refunded, nothing posted
        items = [BanButton(job.id, t=t)]
    for item in items:
        if item.custom_id in disabled:
            item.item.disabled = True
        view.add_item(item)
    return unstored(view)


def blocked_view(t: Speech, user_id: int, disabled: Collection[str] = ()) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    button = BanUserButton(str(user_id), t=t)
    button.item.disabled = button.custom_id in disabled
    view.add_item(button)
    return unstored(view)


def button_target(message: discord.Message, action: str) -> str | None:
    prefix = f"modlog:{action}:"
    for row in message.components:
        for child in getattr(row, "children", []):
            custom_id = getattr(child, "custom_id", None) or ""
            if custom_id.startswith(prefix):
                return custom_id.removeprefix(prefix)
    return None


def modlog(interaction: discord.Interaction) -> DiscordModLog:
    return studio(interaction).modlog_sink


def entry_id(interaction: discord.Interaction) -> int:
    """The message the button was clicked on (0, which matches no entry, if Discord sent none)."""
    return interaction.message.id if interaction.message is not None else 0


# -- buttons ------------------------------------------------------------------------------------


class _ModButton(StudioButton, template=r"modlog:_:" + JOB_ID):
    """A moderator's button: checks the clicker's permissions before anything else."""

    prefix = "modlog"
    subject = "modlog"
    refusal = MODERATE_REFUSED

    def allowed(self, perms: discord.Permissions) -> bool:
        return may_moderate(perms)

    async def run(self, interaction: discord.Interaction) -> None:
        try:
            if interaction.guild_id is None or not self.allowed(interaction.permissions):
                log.info(
                    "modlog %s: %s refused to user %s",
                    self.target,
                    self.action,
                    interaction.user.id,
                )
                raise NotAllowed(self.action, self.refusal)
            await self.moderate(interaction, interaction.guild_id)
        except Exception as err:
            # reported here, not by ``guarded``: a moderators' tool answers in the server's language
            tree = studio(interaction).tree
            await tree.report(interaction, err, job_id=self.target, moderator=True)

    async def moderate(self, interaction: discord.Interaction, guild_id: int) -> None:
        raise NotImplementedError

    async def finish(
        self, interaction: discord.Interaction, result: ActionResult, done_note: str
    ) -> None:
        """Update the entry (a note if something happened) and tell the moderator if not."""
        await modlog(interaction).update_entry(
            interaction, result.job, done_note if result.done else None
        )
        if not result.done or result.job.state == JobState.FAILED:
            await reply(interaction, action_text(speech(interaction), result))


class ApproveButton(_ModButton, template=r"modlog:approve:" + JOB_ID):
    action = "approve"
    label = N_("Approve")
    style = discord.ButtonStyle.success
    emoji = "✅"

    async def moderate(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.defer()  # posting the result takes a moment
        message = interaction.message
        copies = [a.url for a in message.attachments] if message is not None else []
        result = await studio(interaction).moderation.approve(
            guild_id,
            self.target,
            actor_id=interaction.user.id,
            fallback_urls=copies,
            entry_id=entry_id(interaction),
        )
        t = speech(interaction)
        extra = "" if result.job.state == JobState.DELIVERED else t("posting failed")
        done = note("✅ " + t("Approved by {actor} {when}", **by(interaction)), extra)
        await self.finish(interaction, result, done)


class RejectButton(_ModButton, template=r"modlog:reject:" + JOB_ID):
    action = "reject"
    label = N_("Reject")
    style = discord.ButtonStyle.danger
    emoji = "⛔"

    async def moderate(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.defer()
        result = await studio(interaction).moderation.reject(
            guild_id, self.target, actor_id=interaction.user.id, entry_id=entry_id(interaction)
        )
        t = speech(interaction)
        done = note(
            "⛔ " + t("Rejected by {actor} {when}", **by(interaction)), t("credits refunded")
        )
        await self.finish(interaction, result, done)


class RemoveButton(_ModButton, template=r"modlog:remove:" + JOB_ID):
    action = "remove"
    label = N_("Remove")
    style = discord.ButtonStyle.danger
    emoji = "🗑️"

    async def moderate(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.defer()
        result = await studio(interaction).moderation.remove(
            guild_id, self.target, actor_id=interaction.user.id, entry_id=entry_id(interaction)
        )
        t = speech(interaction)
        done = note("🗑️ " + t("Removed by {actor} {when}", **by(interaction)))
        await self.finish(interaction, result, done)


class RefundButton(_ModButton, template=r"modlog:refund:" + JOB_ID):
    action = "refund"
    label = N_("Refund")
    emoji = "💸"

    async def moderate(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.defer()
        result = await studio(interaction).moderation.refund(
            guild_id, self.target, actor_id=interaction.user.id, entry_id=entry_id(interaction)
        )
        t = speech(interaction)
        amount = credits(t, result.job.committed or 0)
        detail = action_detail(t, result)
        done = note("💸 " + t("Refunded by {actor} {when}", **by(interaction)), amount, detail)
        await modlog(interaction).update_entry(
            interaction,
            result.job,
            done if result.done else None,
            disable=[self.custom_id],  # refunded (now or before): the button has done its job
        )
        if not result.done or detail:
            await reply(interaction, action_text(t, result))


class BanButton(_ModButton, template=r"modlog:ban:" + JOB_ID):
    action = "ban"
    label = N_("Ban requester")
    style = discord.ButtonStyle.secondary
    emoji = "🔨"
    refusal = BAN_REFUSED

    def allowed(self, perms: discord.Permissions) -> bool:
        return may_ban(perms)

    async def moderate(self, interaction: discord.Interaction, guild_id: int) -> None:
        # a modal must be the first answer: the lookup is bounded, not deferred
        job = await within_budget(
            interaction,
            studio(interaction).moderation.entry_job(
                guild_id, self.target, entry_id=entry_id(interaction)
            ),
        )
        await interaction.response.send_modal(
            BanModal(
                speech(interaction),
                job.user_id,
                job=job,
                button_id=self.custom_id,
                open_forms=studio(interaction).open_forms,
            )
        )


class BanUserButton(BanButton, template=r"modlog:banuser:" + USER_ID):
    """On a blocked-prompt entry: there is no job, the custom_id carries the member's id."""

    action = "banuser"
    label = N_("Ban member")

    async def moderate(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.send_modal(
            BanModal(
                speech(interaction),
                int(self.target),
                job=None,
                button_id=self.custom_id,
                open_forms=studio(interaction).open_forms,
            )
        )


class BanModal(StudioModal):
    """Reason and duration for a studio ban from the log (both optional)."""

    def __init__(
        self, t: Speech, user_id: int, *, job: Job | None, button_id: str, open_forms: set[str]
    ) -> None:
        super().__init__(
            title=clipped(t(BAN_TITLE), FORM_TEXT), prefix="modlog:banform:", open_forms=open_forms
        )
        # built per form, in the form's language (a class attribute's label would be English)
        self.reason: discord.ui.TextInput[BanModal] = discord.ui.TextInput(
            label=clipped(t(BAN_REASON), FORM_TEXT),
            style=discord.TextStyle.paragraph,
            required=False,
            max_length=MAX_REASON_LENGTH,
        )
        self.duration: discord.ui.TextInput[BanModal] = discord.ui.TextInput(
            label=clipped(t(BAN_DURATION), FORM_TEXT),
            placeholder=clipped(t(BAN_EXAMPLE), FORM_PLACEHOLDER),
            required=False,
            max_length=MAX_DURATION_TEXT,
        )
        self.add_item(self.reason)
        self.add_item(self.duration)
        self.user_id = user_id
        self.job = job
        self.button_id = button_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await guarded(interaction, self._guarded_ban, job_id=self.job.id if self.job else None)

    async def _guarded_ban(self, interaction: discord.Interaction) -> None:
        try:
            await self._ban(interaction)
        except Exception as err:
            # reported here, not by ``guarded``: a moderators' tool answers in the server's language
            await self.on_error(interaction, err)

    async def _ban(self, interaction: discord.Interaction) -> None:
        if interaction.guild_id is None or not may_ban(interaction.permissions):
            raise NotAllowed("ban", BAN_REFUSED)
        await interaction.response.defer()
        t = speech(interaction)
        # the member reads it when refused, like a reason a moderator types: the server's words
        if self.job is not None:
            default = t("moderators' log, job {job_id}", job_id=self.job.id)
        else:
            default = t("blocked prompt")
        reason = self.reason.value.strip() or default
        ban = await studio(interaction).moderation.ban(
            interaction.guild_id,
            self.user_id,
            actor_id=interaction.user.id,
            reason=reason,
            duration=self.duration.value.strip() or None,
        )
        said = t("{user} banned by {actor} {when}", user=f"<@{self.user_id}>", **by(interaction))
        text = note("🔨 " + said, until_text(t, ban.until))
        job = self.job
        if job is not None:
            job = await studio(interaction).moderation.job_in(interaction.guild_id, job.id)
        await modlog(interaction).update_entry(interaction, job, text, disable=[self.button_id])

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        job_id = self.job.id if self.job else None
        await studio(interaction).tree.report(interaction, error, job_id=job_id, moderator=True)


MODLOG_ITEMS = (
    ApproveButton,
    RejectButton,
    RemoveButton,
    RefundButton,
    BanButton,
    BanUserButton,
)
