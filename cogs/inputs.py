"""Reading an interaction: who asks (for policy and quota), what they may do, which images."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, cast

import discord

from client.models import MAX_EDIT_IMAGES
from services.errors import InvalidInput, NotAllowed
from services.jobs import Requester
from services.jobs import may_act_on as job_rule
from services.wording import N_
from storage.models import Job

if TYPE_CHECKING:
    from bot import StudioBot

AGE_RESTRICTED_REFUSAL = N_(
    "Job `{job_id}` was made in an age-restricted channel, so its images can't be used or"
    " shown in a channel that isn't."
)
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
MAX_INPUT_BYTES = 50 * 2**20  # RunComfy's recommended ceiling for hosted inputs
TOKEN_LIFETIME = timedelta(minutes=15)
TOKEN_MARGIN = timedelta(seconds=60)  # stop using the token a little early: uploads take time


def studio(interaction: discord.Interaction) -> StudioBot:
    return cast("StudioBot", interaction.client)


FOREIGN_SERVER = N_(
    "The studio isn't set up in this server (the bot isn't a member here), so it can't be used"
    " here. Nothing was charged."
)


def check_source(interaction: discord.Interaction) -> None:
    """Refuse interactions from a server the bot is not in: no rules of its own apply there.

    (The app is installed to servers only; a user-installed app would decide differently.)
    """
    guild_id = interaction.guild_id
    if guild_id is not None and interaction.client.get_guild(guild_id) is None:
        raise NotAllowed("server", FOREIGN_SERVER)


def may_manage(interaction: discord.Interaction) -> bool:
    """Manage Messages in this channel (Discord resolves overwrites and Administrator)."""
    return interaction.guild_id is not None and interaction.permissions.manage_messages


def may_act_on(job: Job, interaction: discord.Interaction) -> bool:
    """The clicker is the requester, or a moderator of the job's own server (the one rule:
    ``services.jobs.may_act_on``)."""
    return job_rule(
        job,
        actor_id=interaction.user.id,
        guild_id=interaction.guild_id,
        manages_messages=may_manage(interaction),
    )


def media_type(content_type: str | None) -> str:
    """``image/png; charset=x`` -> ``image/png`` (Discord's attachment content types)."""
    return (content_type or "").split(";")[0].strip().lower()


def is_image(attachment: discord.Attachment) -> bool:
    """An attachment RunComfy can take as an input image (type and size)."""
    return media_type(attachment.content_type) in IMAGE_TYPES and (
        attachment.size <= MAX_INPUT_BYTES
    )


def age_restricted(interaction: discord.Interaction) -> bool:
    """Whether the interaction's channel is age-restricted (a thread: its parent)."""
    channel = interaction.channel
    return bool(channel is not None and getattr(channel, "is_nsfw", lambda: False)())


def check_age_restriction(job: Job, interaction: discord.Interaction) -> None:
    """Refuse to bring an age-restricted job's inputs or results into a normal channel."""
    if job.age_restricted_channel and not age_restricted(interaction):
        raise NotAllowed("age_restricted", AGE_RESTRICTED_REFUSAL, job_id=job.id)


def requester(interaction: discord.Interaction) -> Requester:
    user = interaction.user
    perms = interaction.permissions
    # The guild's roles are cached (the guilds intent), and interactions from a server the bot
    # is not in are refused before this (check_source).
    roles = frozenset(r.id for r in user.roles) if isinstance(user, discord.Member) else frozenset()
    channel = interaction.channel
    # A thread follows its parent's channel rules (and age restriction, see age_restricted);
    # the job's own messages still go to the thread.
    rules_channel = channel.parent_id if isinstance(channel, discord.Thread) else None
    return Requester(
        user_id=user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        role_ids=roles,
        is_moderator=interaction.guild_id is not None
        and (perms.manage_guild or perms.manage_messages),
        age_restricted_channel=age_restricted(interaction),
        interaction_token=interaction.token,
        token_expires_at=interaction.created_at + TOKEN_LIFETIME - TOKEN_MARGIN,
        upload_limit=interaction.filesize_limit,
        rules_channel_id=rules_channel,
        locale=interaction.locale.value,
    )


def check_attachment(attachment: discord.Attachment, option: str) -> str:
    """The attachment's URL if it is an image RunComfy can take; InvalidInput otherwise."""
    kind = media_type(attachment.content_type)
    name = discord.utils.escape_markdown(attachment.filename)
    if attachment.size <= 0:
        raise InvalidInput(
            option,
            "`{option}` ({name}) is an empty file. Nothing was charged.",
            option=option,
            name=name,
        )
    if kind not in IMAGE_TYPES:
        raise InvalidInput(
            option,
            "`{option}` ({name}) is not a PNG, JPEG or WebP image. Nothing was charged.",
            option=option,
            name=name,
        )
    if attachment.size > MAX_INPUT_BYTES:
        raise InvalidInput(
            option,
            "`{option}` ({name}) is {size} MiB; images up to {limit} MiB can be edited."
            " Nothing was charged.",
            option=option,
            name=name,
            size=round(attachment.size / 2**20, 1),
            limit=MAX_INPUT_BYTES // 2**20,
        )
    return attachment.url


def message_images(message: discord.Message) -> list[str]:
    """The images on a message, in order: image attachments, then embed images (at most 20)."""
    urls: list[str] = []
    urls += [a.url for a in message.attachments if is_image(a) and a.size > 0]
    for embed in message.embeds:
        for part in (embed.image, embed.thumbnail):
            # Embeds say nothing of type or size: only links that name an image file, taken
            # from Discord's own copy (the original may be on any host).
            if part.url and part.proxy_url and _IMAGE_LINK.match(part.url):
                urls.append(part.proxy_url)
    return list(_unique(urls))[:MAX_EDIT_IMAGES]


_IMAGE_LINK = re.compile(r"^https?://[^?#]+\.(?:png|jpe?g|webp)(?:[?#].*)?$", re.IGNORECASE)
STUDIO_CUSTOM_ID = re.compile(r"^studio:[a-z]+:(?P<job_id>[A-Za-z0-9_-]{1,64})$")
# A result footer starts with "job <id>" in the reader's language: the id is its last word.
FOOTER_JOB_ID = re.compile(r"(?:^|\s)(?P<job_id>[A-Za-z0-9_-]{1,64})$")


def studio_job_id(message: discord.Message, bot_id: int | None) -> str | None:
    """The job a message of ours shows (its buttons or embed footer say), if any."""
    if bot_id is None or message.author.id != bot_id:
        return None
    for row in message.components:
        for child in getattr(row, "children", [row]):
            found = STUDIO_CUSTOM_ID.match(getattr(child, "custom_id", None) or "")
            if found:
                return found["job_id"]
    for embed in message.embeds:
        found = FOOTER_JOB_ID.search((embed.footer.text or "").split(" · ")[0].strip())
        if found:
            return found["job_id"]
    return None


def _unique(items: Iterable[str]) -> Iterable[str]:
    seen: set[str] = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            yield item
