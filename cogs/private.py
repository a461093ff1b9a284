"""Private results: answered ephemerally, and never posted in the channel.

A private job's status and result live on the ephemeral answer to its interaction. When that
token is unusable (15 minutes passed, or Discord rejects it), the result goes to the member by
DM, where the server lets the bot DM its members (``/admin dms``); otherwise, or when the DM
fails, the job is still delivered (kept, and shown again privately by ``/show``), and the
channel gets one line naming the member and the job: no prompt, no image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord

from client.models import DownloadedImage
from cogs.answers import LateDefer
from cogs.i18n import speech_for
from cogs.render import NO_MENTIONS, ready_mentions, result_embed
from services.errors import NotAllowed
from services.jobs import Delivery, JobRequest, JobSpec
from storage.models import Job

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from bot import StudioBot

    SpecSource = JobSpec | Callable[[], Awaitable[JobSpec]]

log = logging.getLogger(__name__)

DM_FILE_LIMIT = 10 * 2**20  # what any DM takes


def is_private(job: Job) -> bool:
    return JobRequest.of(job).private


def hidden(interaction: discord.Interaction, spec: SpecSource, private: bool | None) -> bool:
    """Whether the answer will be ephemeral, as far as is known before the spec is resolved:
    the caller says, or the spec, or the clicked message is itself ephemeral."""
    if private is not None:
        return private
    if isinstance(spec, JobSpec):
        return spec.private
    message = interaction.message
    return message is not None and message.flags.ephemeral


async def check_private(bot: StudioBot, late: LateDefer, guild_id: int | None) -> None:
    """A private job: allowed here (NotAllowed before any charge), and its answer not already a
    public placeholder; from now on the answer is ephemeral."""
    await bot.presets.check_private(guild_id)
    if late.fired and not late.ephemeral:
        raise NotAllowed("private", "That took too long to keep private; nothing was charged.")
    late.ephemeral = True


async def _dm(bot: StudioBot, job: Job, **fields: object) -> discord.Message | None:
    """Send the member a DM, where allowed; None when it can't be sent."""
    if job.guild_id is not None and not await bot.policy.may_dm_members(job.guild_id):
        return None
    try:
        channel = await bot.create_dm(discord.Object(job.user_id))
        return await channel.send(allowed_mentions=NO_MENTIONS, **fields)  # type: ignore[arg-type]
    except discord.HTTPException as err:
        log.info("job %s: the private DM failed (%s %s)", job.id, err.status, err.code)
        return None


async def _note(bot: StudioBot, job: Job, text: str) -> discord.Message:
    """The one public line a private job may leave: the member and the job id, nothing else."""
    channel = bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
    return await channel.send(text, allowed_mentions=ready_mentions(job), nonce=f"job-{job.id}")


async def deliver_privately(
    bot: StudioBot, job: Job, images: Sequence[DownloadedImage], missing: Sequence[str]
) -> Delivery:
    """The token is gone: by DM, else kept with a note in the channel (never the result)."""
    from cogs.presenter import files_of, fit  # the presenter imports this module

    t = speech_for(job.locale)
    fitted = await fit(images, missing, stem=job.id, per_file_limit=DM_FILE_LIMIT)
    sent = await _dm(
        bot,
        job,
        nonce=f"job-{job.id}",  # enforced: a delivery repeated after a crash is dropped
        content=t("Your private result (job `{job_id}`):", job_id=job.id),
        embed=result_embed(t, job, fitted),
        files=files_of(fitted),
    )
    if sent is not None:
        return Delivery(sent.id, fallback=True)
    note = await _note(
        bot,
        job,
        t(
            "{user} your private result (job `{job_id}`) is ready, but it couldn't be shown to"
            " you privately. Nothing was lost: `/show {job_id}` shows it to you alone.",
            user=f"<@{job.user_id}>",
            job_id=job.id,
        ),
    )
    return Delivery(note.id, fallback=True)


async def tell_privately(bot: StudioBot, job: Job, text: str) -> None:
    """A private job ended without a result and its own message is out of reach."""
    if await _dm(bot, job, content=text, nonce=f"end-{job.id}") is not None:
        return
    t = speech_for(job.locale)
    await _note(
        bot,
        job,
        t(
            "{user} your private job `{job_id}` ended without a result; it couldn't be shown to"
            " you privately.",
            user=f"<@{job.user_id}>",
            job_id=job.id,
        ),
    )
