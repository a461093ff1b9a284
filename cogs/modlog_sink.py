"""The moderators' log in Discord: the moderation service's ``ModLogSink``.

Posts and updates entries. Age-restricted results logged to a channel that is not
age-restricted are never shown there: no thumbnail or embedded image; the entry's links are
marked and spoilered, and an approval entry's images are attached as spoilers (``SPOILER_``
files) so moderators choose to open them.

A rejection is private: the public status message only says the request was not posted; the
verdict (with the prompt) goes to the requester as an ephemeral followup on their interaction
while its token lives, else by DM if the guild allows DMs; only if neither works is a short
notice without the prompt posted in the channel, mentioning them.

Entries speak the server's preferred language (English when the bot does not know the server);
what the requester is told speaks theirs, kept with the job.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import discord

from client.models import DownloadedImage
from cogs.i18n import Speech, speech_for
from cogs.inputs import IMAGE_TYPES, media_type
from cogs.modlog_buttons import BanUserButton, blocked_view, button_target, entry_view, now
from cogs.modlog_outcomes import rejected_in_channel, rejected_notice, rejected_status
from cogs.modlog_render import (
    blocked_entry,
    disabled_ids,
    job_entry,
    outage_entry,
    read_notes,
    with_more,
    with_notes,
)
from cogs.presenter import DiscordPresenter, files_of, fit
from cogs.render import NO_MENTIONS, ready_mentions
from services.jobs import DEFAULT_UPLOAD_LIMIT
from services.jobs.outage import Outage
from services.locks import KeyedLocks
from services.moderation import BlockedAttempt, LogUnavailable, Notice
from storage.models import Job, JobState

if TYPE_CHECKING:
    from bot import StudioBot

log = logging.getLogger("cogs.modlog")


class DiscordModLog:
    """Posts and updates log entries and tells requesters about approval decisions."""

    def __init__(self, bot: StudioBot, presenter: DiscordPresenter) -> None:
        self._bot = bot
        self._presenter = presenter
        self._entries = KeyedLocks()

    def _speech(self, guild_id: int | None) -> Speech:
        """The server's preferred language, as the bot's cache knows it (else English)."""
        guild = self._bot.get_guild(guild_id) if guild_id is not None else None
        return speech_for(guild.preferred_locale if guild is not None else None)

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
        t = self._speech(job.guild_id)
        return await self._send(
            channel_id,
            job.guild_id,
            embed=job_entry(t, job, thumbnail=thumbnail, age_hidden=hidden),
            view=entry_view(t, job),
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
        t = self._speech(job.guild_id)
        if self._hides(channel_id, job):
            # spoilered files, no embedded image: moderators choose to look
            files = [
                discord.File(io.BytesIO(f.data), filename=f.filename, spoiler=True)
                for f in fitted
                if f.data
            ]
            embed = job_entry(t, job, age_hidden=True)
        else:
            first = next((f for f in fitted if f.data), None)
            image = f"attachment://{first.filename}" if first is not None else None
            files = files_of(fitted)
            embed = job_entry(t, job, image=image)
        return await self._send(
            channel_id, job.guild_id, embed=embed, files=files, view=entry_view(t, job)
        )

    async def post_blocked(self, channel_id: int, attempt: BlockedAttempt) -> int:
        t = self._speech(attempt.guild_id)
        return await self._send(
            channel_id,
            attempt.guild_id,
            embed=blocked_entry(t, attempt),
            view=blocked_view(t, attempt.user_id),
        )

    async def post_outage(self, channel_id: int, guild_id: int, outage: Outage) -> int:
        embed = outage_entry(self._speech(guild_id), outage)
        return await self._send(channel_id, guild_id, embed=embed)

    async def count_blocked(
        self, channel_id: int, message_id: int, attempt: BlockedAttempt, more: int
    ) -> bool:
        channel = self._bot.get_partial_messageable(channel_id, guild_id=attempt.guild_id)
        async with self._entries.hold(message_id):  # not while a moderator updates it
            try:
                message = await channel.fetch_message(message_id)
                old = message.embeds[0] if message.embeds else discord.Embed()
                t = self._speech(attempt.guild_id)
                await message.edit(
                    embed=with_more(t, old, more, attempt.at), allowed_mentions=NO_MENTIONS
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

    async def show_rejected(self, job: Job, *, dm: bool) -> Notice:
        """The public status message becomes a neutral notice (no prompt, no images); the
        verdict goes privately: an ephemeral followup while the token lives, else a DM if
        allowed. Only if neither works is a short notice (no prompt) posted in the channel,
        mentioning them: they must learn their credits are back. Returns how they were told.
        """
        t = speech_for(job.locale)  # the requester's: the status and the verdict are theirs
        try:
            await self._presenter.edit_status(
                job, content=rejected_status(t, job), embed=None, view=None
            )
        except discord.HTTPException as err:
            log.info("job %s: could not edit the status message (%s)", job.id, err)
        finally:
            self._presenter.forget(job.id)  # its last word
        verdict = rejected_notice(t, job)
        if await self._followup(job, verdict):
            return Notice.PRIVATE
        if dm and await self._dm(job, verdict):
            return Notice.DM
        channel = self._bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        await channel.send(rejected_in_channel(t, job), allowed_mentions=ready_mentions(job))
        return Notice.CHANNEL

    async def _followup(self, job: Job, text: str) -> bool:
        """An ephemeral followup on the requester's own interaction, while its token lives."""
        app_id = self._bot.application_id
        expires = job.token_expires_at
        if not job.interaction_token or app_id is None or expires is None or expires <= now():
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
        which misses what another moderator did a moment ago). In the server's language: the
        clicker is one of its moderators.
        """
        clicked = interaction.message
        if clicked is None:
            return
        if job is not None and job.log_message_id != clicked.id:
            # not (or no longer) the job's entry: never rewrite another message
            log.info("job %s: message %s is not its entry; left as is", job.id, clicked.id)
            return
        t = speech_for(interaction.guild_locale)
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
                embed = job_entry(t, job, notes=notes, thumbnail=thumbnail, image=image)
                view = entry_view(t, job, disabled)
            else:
                embed = with_notes(t, old or discord.Embed(), notes)
                user = button_target(message, BanUserButton.action)
                view = blocked_view(t, int(user), disabled) if user else None
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
