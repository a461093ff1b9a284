"""The moderators' buttons on log entries, the ban form, and the views that carry them.

The buttons are ``DynamicItem``s whose ``custom_id`` carries the job id
(``modlog:<action>:<job>``) or, on a blocked prompt, the member's id
(``modlog:banuser:<user>``), so pending approvals work after a restart. Every click is
authorised here, on the server side, from the clicker's permissions in the log channel:
Approve, Reject, Remove, Refund need Manage Messages; Ban requester needs Ban Members or Manage
Server (checked again when its form is sent). A job button acts only on the job's own entry in
the clicker's guild (the service checks both). Each action updates the entry.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord

from cogs.admin_render import until_text
from cogs.answers import guarded, within_budget
from cogs.buttons import unstored
from cogs.inputs import studio
from cogs.modlog_render import action_detail, action_text, note
from cogs.render import plural
from cogs.routing import JOB_ID, USER_ID, StudioButton, StudioModal
from cogs.tree import reply
from services.admin import MAX_REASON_LENGTH
from services.errors import NotAllowed
from services.moderation import ActionResult
from storage.models import Job, JobState

if TYPE_CHECKING:
    from cogs.modlog_sink import DiscordModLog

log = logging.getLogger("cogs.modlog")

MODERATE_REFUSED = "Only moderators (**Manage Messages**) can use this button."
BAN_REFUSED = "Only members with **Ban Members** or **Manage Server** can ban from the studio."


def may_moderate(perms: discord.Permissions) -> bool:
    return perms.administrator or perms.manage_messages


def may_ban(perms: discord.Permissions) -> bool:
    return perms.administrator or perms.ban_members or perms.manage_guild


def now() -> datetime:
    return datetime.now(UTC)


# -- views --------------------------------------------------------------------------------------


def entry_view(job: Job, disabled: Collection[str] = ()) -> discord.ui.View:
    """The buttons a job's entry offers in its current state."""
    view = discord.ui.View(timeout=None)
    items: list[_ModButton]
    if job.state == JobState.AWAITING_APPROVAL:
        items = [ApproveButton(job.id), RejectButton(job.id), BanButton(job.id)]
    elif job.state == JobState.DELIVERED:
        items = [
            RemoveButton(job.id, disabled=job.result_message_id is None),
            RefundButton(job.id),
            BanButton(job.id),
        ]
    else:  # failed, cancelled, rejected: already refunded, nothing posted
        items = [BanButton(job.id)]
    for item in items:
        if item.custom_id in disabled:
            item.item.disabled = True
        view.add_item(item)
    return unstored(view)


def blocked_view(user_id: int, disabled: Collection[str] = ()) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    button = BanUserButton(str(user_id))
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
        if interaction.guild_id is None or not self.allowed(interaction.permissions):
            log.info(
                "modlog %s: %s refused to user %s", self.target, self.action, interaction.user.id
            )
            raise NotAllowed(self.action, self.refusal)
        await self.moderate(interaction, interaction.guild_id)

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
            await reply(interaction, action_text(result))


class ApproveButton(_ModButton, template=r"modlog:approve:" + JOB_ID):
    action = "approve"
    label = "Approve"
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
        extra = "" if result.job.state == JobState.DELIVERED else "posting failed"
        await self.finish(
            interaction, result, note("✅ Approved", interaction.user.id, now(), extra)
        )


class RejectButton(_ModButton, template=r"modlog:reject:" + JOB_ID):
    action = "reject"
    label = "Reject"
    style = discord.ButtonStyle.danger
    emoji = "⛔"

    async def moderate(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.defer()
        result = await studio(interaction).moderation.reject(
            guild_id, self.target, actor_id=interaction.user.id, entry_id=entry_id(interaction)
        )
        await self.finish(
            interaction,
            result,
            note("⛔ Rejected", interaction.user.id, now(), "credits refunded"),
        )


class RemoveButton(_ModButton, template=r"modlog:remove:" + JOB_ID):
    action = "remove"
    label = "Remove"
    style = discord.ButtonStyle.danger
    emoji = "🗑️"

    async def moderate(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.defer()
        result = await studio(interaction).moderation.remove(
            guild_id, self.target, actor_id=interaction.user.id, entry_id=entry_id(interaction)
        )
        await self.finish(interaction, result, note("🗑️ Removed", interaction.user.id, now()))


class RefundButton(_ModButton, template=r"modlog:refund:" + JOB_ID):
    action = "refund"
    label = "Refund"
    emoji = "💸"

    async def moderate(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.defer()
        result = await studio(interaction).moderation.refund(
            guild_id, self.target, actor_id=interaction.user.id, entry_id=entry_id(interaction)
        )
        amount = plural(result.job.committed or 0, "credit")
        await modlog(interaction).update_entry(
            interaction,
            result.job,
            note("💸 Refunded", interaction.user.id, now(), amount, action_detail(result))
            if result.done
            else None,
            disable=[self.custom_id],  # refunded (now or before): the button has done its job
        )
        if not result.done or action_detail(result):
            await reply(interaction, action_text(result))


class BanButton(_ModButton, template=r"modlog:ban:" + JOB_ID):
    action = "ban"
    label = "Ban requester"
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
                job.user_id,
                job=job,
                button_id=self.custom_id,
                open_forms=studio(interaction).open_forms,
            )
        )


class BanUserButton(BanButton, template=r"modlog:banuser:" + USER_ID):
    """On a blocked-prompt entry: there is no job, the custom_id carries the member's id."""

    action = "banuser"
    label = "Ban member"

    async def moderate(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.send_modal(
            BanModal(
                int(self.target),
                job=None,
                button_id=self.custom_id,
                open_forms=studio(interaction).open_forms,
            )
        )


class BanModal(StudioModal):
    """Reason and duration for a studio ban from the log (both optional)."""

    reason: discord.ui.TextInput[BanModal] = discord.ui.TextInput(
        label="Reason (shown to the member)",
        style=discord.TextStyle.paragraph,
        required=False,
        max_length=MAX_REASON_LENGTH,
    )
    duration: discord.ui.TextInput[BanModal] = discord.ui.TextInput(
        label="Duration (empty: until lifted)",
        placeholder="e.g. 30m, 2h, 7d",
        required=False,
        max_length=20,
    )

    def __init__(
        self, user_id: int, *, job: Job | None, button_id: str, open_forms: set[str]
    ) -> None:
        super().__init__(
            title="Ban from the studio", prefix="modlog:banform:", open_forms=open_forms
        )
        self.user_id = user_id
        self.job = job
        self.button_id = button_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await guarded(interaction, self._ban, job_id=self.job.id if self.job else None)

    async def _ban(self, interaction: discord.Interaction) -> None:
        if interaction.guild_id is None or not may_ban(interaction.permissions):
            raise NotAllowed("ban", BAN_REFUSED)
        await interaction.response.defer()
        default = f"moderators' log, job {self.job.id}" if self.job else "blocked prompt"
        reason = self.reason.value.strip() or default
        ban = await studio(interaction).moderation.ban(
            interaction.guild_id,
            self.user_id,
            actor_id=interaction.user.id,
            reason=reason,
            duration=self.duration.value.strip() or None,
        )
        until = until_text(ban.until)
        text = note(f"🔨 <@{self.user_id}> banned", interaction.user.id, now(), until)
        job = self.job
        if job is not None:
            job = await studio(interaction).moderation.job_in(interaction.guild_id, job.id)
        await modlog(interaction).update_entry(interaction, job, text, disable=[self.button_id])

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        job_id = self.job.id if self.job else None
        await studio(interaction).tree.report(interaction, error, job_id=job_id)


MODLOG_ITEMS = (
    ApproveButton,
    RejectButton,
    RemoveButton,
    RefundButton,
    BanButton,
    BanUserButton,
)
