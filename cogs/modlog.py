"""The moderators' log in Discord: posting entries, and the moderators' buttons on them.

``DiscordModLog`` is the moderation service's ``ModLogSink``. The buttons are ``DynamicItem``s
whose ``custom_id`` carries the job id (``modlog:<action>:<job>``) or, on a blocked prompt, the
member's id (``modlog:banuser:<user>``), so pending approvals work after a restart. Every click
is authorised here, on the server side, from the clicker's permissions in the log channel:
- Approve, Reject, Remove, Refund: Manage Messages (what Discord calls a moderator);
- Ban requester: Ban Members or Manage Server (a studio ban is milder than a server ban, so a
  member trusted with server bans may use it); it opens a modal for a reason and a duration
  (both optional: no reason given records one naming the log entry; no duration: until lifted).
The permission is checked again when the ban modal is submitted. A member without it gets an
ephemeral refusal and nothing changes. A job button acts only on the job's own entry in the
clicker's guild (the service checks both). Each action updates the entry: a line under
"Moderation" (who did what, when) and the buttons that no longer apply disabled.

Age-restricted results logged to a channel that is not age-restricted are never shown there: no
thumbnail or embedded image; the entry's links are marked and spoilered, and an approval entry's
images are attached as spoilers (``SPOILER_`` files) so moderators choose to open them.

A rejection is private: the public status message only says the request was not posted; the
verdict (with the prompt) goes to the requester as an ephemeral followup on their interaction
while its token lives, else by DM if the guild allows DMs; only if neither works is a short
notice without the prompt posted in the channel, mentioning them.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from client.models import DownloadedImage
from cogs.answers import guarded, within_budget
from cogs.buttons import unstored
from cogs.inputs import IMAGE_TYPES, media_type, studio
from cogs.modlog_render import (
    blocked_entry,
    disabled_ids,
    job_entry,
    note,
    read_notes,
    with_more,
    with_notes,
)
from cogs.presenter import DiscordPresenter, files_of, fit
from cogs.render import NO_MENTIONS, credits, quoted_prompt, ready_mentions
from cogs.routing import Routed, StudioModal
from services.admin import MAX_REASON_LENGTH
from services.errors import NotAllowed
from services.job_types import DEFAULT_UPLOAD_LIMIT
from services.moderation import ActionResult, BlockedAttempt, KeyedLocks, LogUnavailable
from services.policy import discord_time
from storage.models import Job, JobKind, JobState

if TYPE_CHECKING:
    from bot import StudioBot

log = logging.getLogger(__name__)

JOB_ID = r"(?P<target>[A-Za-z0-9_-]{1,64})"
USER_ID = r"(?P<target>[0-9]{1,20})"
MODERATE_REFUSED = "Only moderators (**Manage Messages**) can use this button."
BAN_REFUSED = "Only members with **Ban Members** or **Manage Server** can ban from the studio."


def may_moderate(perms: discord.Permissions) -> bool:
    return perms.administrator or perms.manage_messages


def may_ban(perms: discord.Permissions) -> bool:
    return perms.administrator or perms.ban_members or perms.manage_guild


def _now() -> datetime:
    return datetime.now(UTC)


# -- posting ------------------------------------------------------------------------------------


class DiscordModLog:
    """Posts and updates log entries and tells requesters about approval decisions."""

    def __init__(self, bot: StudioBot) -> None:
        self._bot = bot
        self._entries = KeyedLocks()

    @property
    def _presenter(self) -> DiscordPresenter:
        presenter = self._bot.jobs.presenter
        if not isinstance(presenter, DiscordPresenter):
            raise RuntimeError("the studio cog is not loaded")
        return presenter

    async def _send(self, channel_id: int, guild_id: int | None, **fields: Any) -> int:
        channel = self._bot.get_partial_messageable(channel_id, guild_id=guild_id)
        try:
            message = await channel.send(allowed_mentions=NO_MENTIONS, **fields)
        except discord.HTTPException as err:
            raise LogUnavailable(channel_id, f"{err.status} {err.text or err}") from err
        return message.id

    def _hides(self, channel_id: int, job: Job) -> bool:
        """An age-restricted job's images must not show in a log channel that is not.

        A channel the cache does not know counts as not age-restricted.
        """
        if not job.age_restricted_channel:
            return False
        channel = self._bot.get_channel(channel_id)
        is_nsfw = getattr(channel, "is_nsfw", None)
        return not (callable(is_nsfw) and is_nsfw())

    async def post_job(self, channel_id: int, job: Job) -> int:
        hidden = self._hides(channel_id, job)
        thumbnail = None
        if job.state == JobState.DELIVERED and not hidden:
            thumbnail = await self._result_thumbnail(job)
            if thumbnail is None and job.result_urls:
                thumbnail = job.result_urls[0]
        return await self._send(
            channel_id,
            job.guild_id,
            embed=job_entry(job, thumbnail=thumbnail, age_hidden=hidden),
            view=entry_view(job),
        )

    async def _result_thumbnail(self, job: Job) -> str | None:
        """The first image of the posted result, as Discord serves it."""
        if job.result_message_id is None:
            return None
        channel = self._bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            message = await channel.fetch_message(job.result_message_id)
        except discord.HTTPException as err:
            log.info("job %s: result message unavailable for the log (%s)", job.id, err)
            return None
        for attachment in message.attachments:
            if media_type(attachment.content_type) in IMAGE_TYPES:
                return attachment.url
        return None

    async def post_approval(
        self,
        channel_id: int,
        job: Job,
        images: Sequence[DownloadedImage],
        missing: Sequence[str],
    ) -> int:
        guild = self._bot.get_guild(job.guild_id) if job.guild_id else None
        limit = guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
        fitted = await fit(images, missing, stem=job.id, per_file_limit=limit)
        if self._hides(channel_id, job):
            # spoilered files, no embedded image: moderators choose to look
            files = [
                discord.File(io.BytesIO(f.data), filename=f.filename, spoiler=True)
                for f in fitted
                if f.data
            ]
            embed = job_entry(job, age_hidden=True)
        else:
            first = next((f for f in fitted if f.data), None)
            image = f"attachment://{first.filename}" if first is not None else None
            files = files_of(fitted)
            embed = job_entry(job, image=image)
        return await self._send(
            channel_id, job.guild_id, embed=embed, files=files, view=entry_view(job)
        )

    async def post_blocked(self, channel_id: int, attempt: BlockedAttempt) -> int:
        return await self._send(
            channel_id,
            attempt.guild_id,
            embed=blocked_entry(attempt),
            view=blocked_view(attempt.user_id),
        )

    async def count_blocked(
        self, channel_id: int, message_id: int, attempt: BlockedAttempt, more: int
    ) -> bool:
        channel = self._bot.get_partial_messageable(channel_id, guild_id=attempt.guild_id)
        async with self._entries.hold(message_id):  # not while a moderator updates it
            try:
                message = await channel.fetch_message(message_id)
                old = message.embeds[0] if message.embeds else discord.Embed()
                await message.edit(
                    embed=with_more(old, more, attempt.at), allowed_mentions=NO_MENTIONS
                )
            except discord.NotFound:
                return False
            except discord.HTTPException as err:
                raise LogUnavailable(channel_id, f"{err.status} {err.text or err}") from err
        return True

    async def entry_exists(self, channel_id: int, message_id: int) -> bool:
        channel = self._bot.get_partial_messageable(channel_id)
        try:
            await channel.fetch_message(message_id)
        except discord.NotFound:
            return False
        except discord.HTTPException as err:
            raise LogUnavailable(channel_id, f"{err.status} {err.text or err}") from err
        return True

    async def show_held(self, job: Job) -> None:
        await self._presenter.show_held(job)

    async def show_rejected(self, job: Job, *, dm: bool) -> str:
        """The public status message becomes a neutral notice (no prompt, no images); the
        verdict goes privately: an ephemeral followup while the token lives, else a DM if
        allowed. Only if neither works is a short notice (no prompt) posted in the channel,
        mentioning them: they must learn their credits are back. Returns how they were told.
        """
        try:
            await self._presenter.edit_status(
                job, content=rejected_status(job), embed=None, view=None
            )
        except discord.HTTPException as err:
            log.info("job %s: could not edit the status message (%s)", job.id, err)
        verdict = rejected_notice(job)
        if await self._followup(job, verdict):
            return "told privately (a message only they can see)"
        if dm and await self._dm(job, verdict):
            return "told by DM"
        channel = self._bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        await channel.send(
            f"<@{job.user_id}> your request (job `{job.id}`) was not posted."
            f" Your {credits(job.cost)} {'is' if job.cost == 1 else 'are'} back.",
            allowed_mentions=ready_mentions(job),
        )
        return "told in the channel (without the prompt)"

    async def _followup(self, job: Job, text: str) -> bool:
        """An ephemeral followup on the requester's own interaction, while its token lives."""
        app_id = self._bot.application_id
        expires = job.token_expires_at
        if not job.interaction_token or app_id is None or expires is None or expires <= _now():
            return False
        hook = discord.Webhook.partial(app_id, job.interaction_token, client=self._bot)
        # an interaction's webhook, as Interaction.followup builds it: only those send ephemerals
        hook.type = discord.WebhookType.application
        try:
            await hook.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as err:
            log.info("job %s: could not tell the requester privately (%s)", job.id, err)
            return False
        return True

    async def _dm(self, job: Job, text: str) -> bool:
        try:
            channel = await self._bot.create_dm(discord.Object(job.user_id))
            await channel.send(text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as err:
            log.info("job %s: could not DM the requester (%s)", job.id, err)
            return False
        return True

    async def update_entry(
        self,
        interaction: discord.Interaction,
        job: Job | None,
        new_note: str | None,
        *,
        disable: Collection[str] = (),
    ) -> None:
        """Rewrite the clicked log entry (the interaction was deferred): the job's state now,
        the notes so far plus ``new_note``, the buttons that no longer apply disabled.

        One update per entry at a time, from the message as it is now (not the click's copy,
        which misses what another moderator did a moment ago).
        """
        clicked = interaction.message
        if clicked is None:
            return
        if job is not None and job.log_message_id != clicked.id:
            # not (or no longer) the job's entry: never rewrite another message
            log.info("job %s: message %s is not its entry; left as is", job.id, clicked.id)
            return
        async with self._entries.hold(clicked.id):
            message = await self._fresh(clicked)
            old = message.embeds[0] if message.embeds else None
            notes = read_notes(old) + ([new_note] if new_note else [])
            disabled = disabled_ids(message.components) | set(disable)
            view: discord.ui.View | None
            if job is not None:
                image = thumbnail = None
                if old is not None and old.image.url:
                    attached = message.attachments[0].filename if message.attachments else None
                    image = f"attachment://{attached}" if attached else old.image.url
                elif old is not None:
                    thumbnail = old.thumbnail.url
                embed = job_entry(job, notes=notes, thumbnail=thumbnail, image=image)
                view = entry_view(job, disabled)
            else:
                embed = with_notes(old or discord.Embed(), notes)
                user = _button_target(message, BanUserButton.action)
                view = blocked_view(int(user), disabled) if user else None
            await interaction.edit_original_response(
                embed=embed, view=view, allowed_mentions=NO_MENTIONS
            )

    async def _fresh(self, message: discord.Message) -> discord.Message:
        channel = self._bot.get_partial_messageable(
            message.channel.id, guild_id=message.guild.id if message.guild else None
        )
        try:
            return await channel.fetch_message(message.id)
        except discord.HTTPException as err:
            log.info("log entry %s: could not be fetched (%s)", message.id, err)
            return message

    async def remove_result(self, job: Job) -> bool:
        assert job.result_message_id is not None
        channel = self._bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            await channel.get_partial_message(job.result_message_id).delete()
        except discord.NotFound:
            return False  # deleted already (by the requester, or by hand)
        except discord.HTTPException as err:
            raise LogUnavailable(job.channel_id, f"{err.status} {err.text or err}") from err
        return True


def rejected_status(job: Job) -> str:
    """What everyone sees on a rejected job's status message: neutral, no prompt."""
    return f"🚫 This request was not posted.\n-# job `{job.id}`"


def rejected_notice(job: Job) -> str:
    """The private verdict (ephemeral or DM): with the prompt, only the requester sees it."""
    what = "edit" if job.kind == JobKind.EDIT else "image"
    verb = "is" if job.cost == 1 else "are"
    return "\n".join(
        [
            f"Your {what} request in <#{job.channel_id}> (job `{job.id}`) was not approved by"
            f" the server's moderators, so it wasn't posted. Your {credits(job.cost)} {verb}"
            " back.",
            quoted_prompt(job.prompt),
        ]
    )


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


def _button_target(message: discord.Message, action: str) -> str | None:
    prefix = f"modlog:{action}:"
    for row in message.components:
        for child in getattr(row, "children", []):
            custom_id = getattr(child, "custom_id", None) or ""
            if custom_id.startswith(prefix):
                return custom_id.removeprefix(prefix)
    return None


def modlog(interaction: discord.Interaction) -> DiscordModLog:
    sink = studio(interaction).moderation.sink
    if not isinstance(sink, DiscordModLog):
        raise RuntimeError("the moderators' log cog is not loaded")
    return sink


def entry_id(interaction: discord.Interaction) -> int:
    """The message the button was clicked on (0, which matches no entry, if Discord sent none)."""
    return interaction.message.id if interaction.message is not None else 0


async def tell(interaction: discord.Interaction, text: str) -> None:
    await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


# -- buttons ------------------------------------------------------------------------------------


class _ModButton(Routed, discord.ui.DynamicItem[discord.ui.Button], template=r"modlog:_:" + JOB_ID):
    """A moderator's button: checks the clicker's permissions before anything else."""

    action = "_"
    label = ""
    style = discord.ButtonStyle.secondary
    emoji: str | None = None
    refusal = MODERATE_REFUSED

    def __init__(self, target: str, *, disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=self.label,
                style=self.style,
                emoji=self.emoji,
                disabled=disabled,
                custom_id=f"modlog:{self.action}:{target}",
            )
        )
        self.target = target

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> _ModButton:
        return cls(match["target"])

    def allowed(self, perms: discord.Permissions) -> bool:
        return may_moderate(perms)

    async def callback(self, interaction: discord.Interaction) -> None:
        log.info("modlog %s: %s clicked by user %s", self.target, self.action, interaction.user.id)
        await guarded(interaction, self._checked, job_id=self.target)

    async def _checked(self, interaction: discord.Interaction) -> None:
        if interaction.guild_id is None or not self.allowed(interaction.permissions):
            log.info(
                "modlog %s: %s refused to user %s", self.target, self.action, interaction.user.id
            )
            raise NotAllowed(self.action, self.refusal)
        await self.run(interaction, interaction.guild_id)

    async def run(self, interaction: discord.Interaction, guild_id: int) -> None:
        raise NotImplementedError

    async def finish(
        self, interaction: discord.Interaction, result: ActionResult, done_note: str
    ) -> None:
        """Update the entry (a note if something happened) and tell the moderator if not."""
        await modlog(interaction).update_entry(
            interaction, result.job, done_note if result.done else None
        )
        if not result.done or result.job.state == JobState.FAILED:
            await tell(interaction, result.message)


class ApproveButton(_ModButton, template=r"modlog:approve:" + JOB_ID):
    action = "approve"
    label = "Approve"
    style = discord.ButtonStyle.success
    emoji = "✅"

    async def run(self, interaction: discord.Interaction, guild_id: int) -> None:
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
            interaction, result, note("✅ Approved", interaction.user.id, _now(), extra)
        )


class RejectButton(_ModButton, template=r"modlog:reject:" + JOB_ID):
    action = "reject"
    label = "Reject"
    style = discord.ButtonStyle.danger
    emoji = "⛔"

    async def run(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.defer()
        result = await studio(interaction).moderation.reject(
            guild_id, self.target, actor_id=interaction.user.id, entry_id=entry_id(interaction)
        )
        await self.finish(
            interaction,
            result,
            note("⛔ Rejected", interaction.user.id, _now(), "credits refunded"),
        )


class RemoveButton(_ModButton, template=r"modlog:remove:" + JOB_ID):
    action = "remove"
    label = "Remove"
    style = discord.ButtonStyle.danger
    emoji = "🗑️"

    async def run(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.defer()
        result = await studio(interaction).moderation.remove(
            guild_id, self.target, actor_id=interaction.user.id, entry_id=entry_id(interaction)
        )
        await self.finish(interaction, result, note("🗑️ Removed", interaction.user.id, _now()))


class RefundButton(_ModButton, template=r"modlog:refund:" + JOB_ID):
    action = "refund"
    label = "Refund"
    emoji = "💸"

    async def run(self, interaction: discord.Interaction, guild_id: int) -> None:
        await interaction.response.defer()
        result = await studio(interaction).moderation.refund(
            guild_id, self.target, actor_id=interaction.user.id, entry_id=entry_id(interaction)
        )
        amount = credits(result.job.committed or 0)
        await modlog(interaction).update_entry(
            interaction,
            result.job,
            note("💸 Refunded", interaction.user.id, _now(), amount, result.detail)
            if result.done
            else None,
            disable=[self.custom_id],  # refunded (now or before): the button has done its job
        )
        if not result.done or result.detail:
            await tell(interaction, result.message)


class BanButton(_ModButton, template=r"modlog:ban:" + JOB_ID):
    action = "ban"
    label = "Ban requester"
    style = discord.ButtonStyle.secondary
    emoji = "🔨"
    refusal = BAN_REFUSED

    def allowed(self, perms: discord.Permissions) -> bool:
        return may_ban(perms)

    async def run(self, interaction: discord.Interaction, guild_id: int) -> None:
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

    async def run(self, interaction: discord.Interaction, guild_id: int) -> None:
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
        until = "until lifted" if ban.until is None else f"until {discord_time(ban.until, 'f')}"
        text = note(f"🔨 <@{self.user_id}> banned", interaction.user.id, _now(), until)
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


class ModLogCog(commands.Cog):
    def __init__(self, bot: StudioBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        # Registered here, not in bot.py: discord.py runs an extension's module afresh on each
        # load, and the buttons must be this module's classes, like the sink they talk to.
        self.bot.add_dynamic_items(*MODLOG_ITEMS)
        self.bot.moderation.bind(DiscordModLog(self.bot))

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*MODLOG_ITEMS)


async def setup(bot: StudioBot) -> None:
    await bot.add_cog(ModLogCog(bot))
