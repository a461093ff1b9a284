"""How jobs show themselves in Discord (the job service's ``JobPresenter``).

A job has one status message: the public answer to the interaction that started it. Progress
edits it; delivery turns it into the result (files, embed, Re-roll/Edit/Delete), so delivering
twice rewrites the same message instead of posting a second one. The interaction token that
allows this lives 15 minutes: once it has expired, or when Discord rejects it, the result is
posted as a normal channel message that mentions the requester (sent with the job id as an
enforced nonce, so a repeat within Discord's window is dropped), and the status message is
edited through the bot's own REST access to point to it. A private job is never posted in the
channel: see cogs/private.py.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord

from client.models import DownloadedImage
from cogs.buttons import result_view, status_view
from cogs.i18n import speech_for
from cogs.pacing import Pacing
from cogs.private import deliver_privately, is_private, tell_privately
from cogs.render import (
    NO_MENTIONS,
    moved_text,
    outcome_text,
    ready_mentions,
    ready_text,
    result_embed,
    status_text,
)
from cogs.status_feed import StatusFeeds
from services.imagefit import MIB, FittedImage, fit_images, needs_work
from services.jobs import DEFAULT_UPLOAD_LIMIT, Delivery, JobRequest, Progress, Step
from services.settings import JobTiming
from storage.models import Job, JobState

if TYPE_CHECKING:
    from bot import StudioBot

log = logging.getLogger(__name__)

MAX_FILES = 10
MAX_REQUEST_BYTES = 25 * MIB
# Discord's answers meaning "this interaction token is no longer usable".
TOKEN_REJECTED_CODES = frozenset({10015, 10062, 50027})
# Progress states in which the status message shows the Cancel button.
CANCELLABLE = frozenset(
    {JobState.RESERVED, JobState.SUBMITTING, JobState.SUBMITTED, JobState.QUEUED}
)


def too_large(err: discord.HTTPException) -> bool:
    """Discord refused the upload for its size (413, or 40005 "Request entity too large")."""
    return err.status == 413 or err.code == 40005


def links_only(fitted: Sequence[FittedImage]) -> list[FittedImage]:
    """The same result with every image as a link: what to post when uploads are refused."""
    return [FittedImage(f.filename, f.source_url, None, f.reencoded) for f in fitted]


def token_rejected(err: discord.HTTPException) -> bool:
    return (
        isinstance(err, discord.NotFound) or err.status == 401 or err.code in TOKEN_REJECTED_CODES
    )


async def fit(
    images: Sequence[DownloadedImage], missing: Sequence[str], *, stem: str, per_file_limit: int
) -> list[FittedImage]:
    """Images as files within the limits (Pillow in a thread, only when needed); missing: links."""
    limits: dict[str, Any] = {
        "per_file_limit": per_file_limit,
        "total_limit": MAX_REQUEST_BYTES,
        "max_files": MAX_FILES,
    }
    if needs_work(images, **limits):
        fitted = await asyncio.to_thread(fit_images, images, stem=stem, **limits)
    else:
        fitted = [
            FittedImage(f"{stem}_{i + 1}.{image.extension}", image.url, image.data)
            for i, image in enumerate(images)
        ]
    start = len(fitted)
    fitted += [FittedImage(f"{stem}_{start + i + 1}", url, None) for i, url in enumerate(missing)]
    return fitted


def files_of(fitted: Sequence[FittedImage]) -> list[discord.File]:
    return [discord.File(io.BytesIO(f.data), filename=f.filename) for f in fitted if f.data]


class DiscordPresenter:
    """The job engine's presenter: status edits (throttled and paced), results, outcomes."""

    def __init__(self, bot: StudioBot, pacing: Pacing, timing: JobTiming) -> None:
        self._bot = bot
        self._pacing = pacing
        self._feeds = StatusFeeds(timing, pacing, self._edit_progress)
        # Jobs whose token Discord rejected; a job leaves it once its end was shown.
        self._dead_tokens: set[str] = set()

    def pace(self, step: Step) -> AbstractAsyncContextManager[None]:
        return self._pacing.step(step)

    def close(self) -> None:
        """Shut down: no more status edits (after the job engine stopped)."""
        self._feeds.stop()

    def forget(self, job_id: str) -> None:
        """The job's last word was said outside the engine (a moderator rejected it)."""
        self._feeds.forget(job_id)
        self._dead_tokens.discard(job_id)

    # -- the status message ---------------------------------------------------------------

    def _webhook(self, job: Job) -> discord.Webhook | None:
        """The interaction webhook, while the job's token is usable."""
        if not job.interaction_token or job.id in self._dead_tokens:
            return None
        if job.token_expires_at is None or job.token_expires_at <= datetime.now(UTC):
            return None
        app_id = self._bot.application_id
        if app_id is None:
            return None
        return discord.Webhook.partial(app_id, job.interaction_token, client=self._bot)

    def _reject(self, job: Job, err: discord.HTTPException) -> None:
        self._dead_tokens.add(job.id)
        log.info("job %s: interaction token unusable (%s %s)", job.id, err.status, err.code)

    async def edit_status(self, job: Job, **fields: Any) -> discord.Message | None:
        """Edit the job's status message: through the token, else the bot's own access.

        None when the job has no known status message (and the token is unusable).
        """
        hook = self._webhook(job)
        if hook is not None:
            try:
                return await hook.edit_message(
                    "@original",  # type: ignore[arg-type]  # the route takes it in place of an id
                    allowed_mentions=NO_MENTIONS,
                    **fields,
                )
            except discord.HTTPException as err:
                if not token_rejected(err):
                    raise
                self._reject(job, err)
        if job.status_message_id is None or is_private(job):
            return None  # an ephemeral status is out of reach without its token
        channel = self._bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        message = channel.get_partial_message(job.status_message_id)
        return await message.edit(allowed_mentions=NO_MENTIONS, **fields)

    def show_progress(self, job: Job, progress: Progress) -> None:
        self._feeds.push(job, progress)

    async def _edit_progress(self, job: Job, progress: Progress) -> None:
        t = speech_for(job.locale)
        notes = JobRequest.of(job).notes
        # Cancel is offered only while it can work: not once the job is being generated.
        view = status_view(t, job.id) if progress.state in CANCELLABLE else None
        await self.edit_status(job, content=status_text(t, job, progress, notes), view=view)

    async def show_held(self, job: Job) -> None:
        """The result waits for a moderator: say so, without the Cancel button."""
        await self._feeds.finish(job.id)
        notes = JobRequest.of(job).notes
        await self.edit_status(
            job,
            content=status_text(
                speech_for(job.locale), job, Progress(JobState.AWAITING_APPROVAL), notes
            ),
            view=None,
        )

    async def show_outcome(self, job: Job) -> None:
        await self._feeds.finish(job.id)
        try:
            await self._show_outcome(job)
        finally:
            self._dead_tokens.discard(job.id)  # the job's last message
            self._feeds.forget(job.id)

    async def withdraw(self, job: Job) -> None:
        hook = self._webhook(job)
        if hook is None:
            return
        try:
            await hook.edit_message(
                "@original",  # type: ignore[arg-type]
                content=outcome_text(speech_for(job.locale), job),
                embed=None,
                view=None,
                allowed_mentions=NO_MENTIONS,
            )
        except discord.HTTPException as err:  # 404: Discord never had it, as expected
            log.info("job %s: no status message to withdraw (%s %s)", job.id, err.status, err.code)

    async def _show_outcome(self, job: Job) -> None:
        text = outcome_text(speech_for(job.locale), job)
        try:
            message = await self.edit_status(job, content=text, embed=None, view=None)
        except discord.HTTPException as err:
            log.warning("job %s: could not edit the status message (%s)", job.id, err)
            message = None
        if message is None and is_private(job):
            await tell_privately(self._bot, job, text)
        elif message is None:
            # No way to reach the job's own message: tell the requester in the channel.
            channel = self._bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            await channel.send(f"<@{job.user_id}> {text}", allowed_mentions=ready_mentions(job))

    # -- delivery -------------------------------------------------------------------------

    async def deliver(
        self, job: Job, images: Sequence[DownloadedImage], missing: Sequence[str]
    ) -> Delivery:
        await self._feeds.finish(job.id)  # no progress edit may overwrite the result
        delivery = await self._deliver(job, images, missing)
        self._dead_tokens.discard(job.id)  # delivered: nothing more goes through its token
        self._feeds.forget(job.id)
        return delivery

    async def _deliver(
        self, job: Job, images: Sequence[DownloadedImage], missing: Sequence[str]
    ) -> Delivery:
        """Post the result: through the interaction, else as a channel message.

        Whatever Discord says to the interaction's webhook, the channel is tried next; a refused
        upload (too large) is retried with links. Raises only when the channel also refuses
        (the job service then keeps the result and tries again later).
        """
        hook = self._webhook(job)
        if hook is not None:
            limit = JobRequest.of(job).upload_limit
            fitted = await fit(images, missing, stem=job.id, per_file_limit=limit)
            try:
                try:
                    return await self._edit_original(hook, job, fitted)
                except discord.HTTPException as err:
                    if not too_large(err):
                        raise
                    log.info("job %s: Discord refused the files (%s); linking", job.id, err.code)
                    return await self._edit_original(hook, job, links_only(fitted))
            except discord.HTTPException as err:
                if token_rejected(err):
                    self._reject(job, err)
                else:
                    log.warning(
                        "job %s: the interaction refused the result (%s %s); posting it in"
                        " the channel",
                        job.id,
                        err.status,
                        err.code,
                    )
        if is_private(job):  # never in the channel: by DM, or kept for /show
            return await deliver_privately(self._bot, job, images, missing)
        return await self._deliver_to_channel(job, images, missing)

    async def _edit_original(
        self, hook: discord.Webhook, job: Job, fitted: Sequence[FittedImage]
    ) -> Delivery:
        t = speech_for(job.locale)
        message = await hook.edit_message(
            "@original",  # type: ignore[arg-type]
            content=None,
            embed=result_embed(t, job, fitted),
            attachments=files_of(fitted),
            view=result_view(t, job, self._bot.jobs.cost_of),
            allowed_mentions=NO_MENTIONS,
        )
        return Delivery(message.id)

    async def _deliver_to_channel(
        self, job: Job, images: Sequence[DownloadedImage], missing: Sequence[str]
    ) -> Delivery:
        guild = self._bot.get_guild(job.guild_id) if job.guild_id else None
        limit = guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
        fitted = await fit(images, missing, stem=job.id, per_file_limit=limit)
        channel = self._bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        t = speech_for(job.locale)

        async def send(shown: Sequence[FittedImage]) -> discord.Message:
            return await channel.send(
                ready_text(t, job),
                embed=result_embed(t, job, shown),
                files=files_of(shown),
                view=result_view(t, job, self._bot.jobs.cost_of),
                allowed_mentions=ready_mentions(job),
                nonce=f"job-{job.id}",
            )

        try:
            message = await send(fitted)
        except discord.HTTPException as err:
            if not too_large(err):
                raise
            log.info("job %s: Discord refused the files (%s); linking", job.id, err.code)
            message = await send(links_only(fitted))
        if job.status_message_id is not None:
            try:
                await channel.get_partial_message(job.status_message_id).edit(
                    content=moved_text(t, job), view=None, allowed_mentions=NO_MENTIONS
                )
            except discord.HTTPException as err:
                log.info("job %s: could not update the old status message (%s)", job.id, err)
        return Delivery(message.id, fallback=True)
