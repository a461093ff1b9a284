"""Reading an interaction: who asks (for policy and quota), what they may do, which images."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, cast

import discord

from client.models import MAX_EDIT_IMAGES
from services.errors import InvalidInput
from services.jobs import Requester

if TYPE_CHECKING:
    from bot import StudioBot

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
MAX_INPUT_BYTES = 50 * 2**20  # RunComfy's recommended ceiling for hosted inputs
TOKEN_LIFETIME = timedelta(minutes=15)
TOKEN_MARGIN = timedelta(seconds=60)  # stop using the token a little early: uploads take time


def studio(interaction: discord.Interaction) -> StudioBot:
    return cast("StudioBot", interaction.client)


def may_manage(interaction: discord.Interaction) -> bool:
    """Manage Messages in this channel (Discord resolves overwrites and Administrator)."""
    return interaction.guild_id is not None and interaction.permissions.manage_messages


def requester(interaction: discord.Interaction) -> Requester:
    user = interaction.user
    perms = interaction.permissions
    # Member._roles holds the ids from the interaction payload; Member.roles would need the
    # guild's roles cached, which interactions do not guarantee.
    roles = frozenset(getattr(user, "_roles", ()) or ())
    channel = interaction.channel
    nsfw = bool(channel is not None and getattr(channel, "is_nsfw", lambda: False)())
    return Requester(
        user_id=user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        role_ids=roles,
        is_moderator=interaction.guild_id is not None
        and (perms.manage_guild or perms.manage_messages),
        age_restricted_channel=nsfw,
        interaction_token=interaction.token,
        token_expires_at=interaction.created_at + TOKEN_LIFETIME - TOKEN_MARGIN,
        upload_limit=interaction.filesize_limit,
    )


def check_attachment(attachment: discord.Attachment, option: str) -> str:
    """The attachment's URL if it is an image RunComfy can take; InvalidInput otherwise."""
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    name = discord.utils.escape_markdown(attachment.filename)
    if kind not in IMAGE_TYPES:
        raise InvalidInput(
            option, f"`{option}` ({name}) is not a PNG, JPEG or WebP image. Nothing was charged."
        )
    if attachment.size > MAX_INPUT_BYTES:
        raise InvalidInput(
            option,
            f"`{option}` ({name}) is {attachment.size / 2**20:.1f} MiB; images up to"
            f" {MAX_INPUT_BYTES // 2**20} MiB can be edited. Nothing was charged.",
        )
    return attachment.url


def message_images(message: discord.Message) -> list[str]:
    """The images on a message, in order: image attachments, then embed images (at most 20)."""
    urls: list[str] = []
    for attachment in message.attachments:
        kind = (attachment.content_type or "").split(";")[0].strip().lower()
        if kind in IMAGE_TYPES and attachment.size <= MAX_INPUT_BYTES:
            urls.append(attachment.url)
    for embed in message.embeds:
        for part in (embed.image, embed.thumbnail):
            if part.url and part.url.startswith(("https://", "http://")):
                urls.append(part.url)
    return list(_unique(urls))[:MAX_EDIT_IMAGES]


def _unique(items: Iterable[str]) -> Iterable[str]:
    seen: set[str] = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            yield item
