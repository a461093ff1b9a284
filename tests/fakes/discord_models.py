"""Data model of the fake Discord: guild setup objects, stored messages and snowflakes.

Everything here is plain data plus the helpers that turn it into the JSON Discord would send.
IDs are ``int`` in Python and strings in every JSON payload, as in the real API.
See :mod:`tests.fakes.discord` for the server that uses these.
"""

from __future__ import annotations

import io
import itertools
import mimetypes
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord

DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits used to build realistic defaults (discord.Permissions only as a bit table).
VIEW_CHANNEL = discord.Permissions(view_channel=True).value
SEND_MESSAGES = discord.Permissions(send_messages=True).value
EMBED_LINKS = discord.Permissions(embed_links=True).value
ATTACH_FILES = discord.Permissions(attach_files=True).value
MANAGE_MESSAGES = discord.Permissions(manage_messages=True).value
MANAGE_GUILD = discord.Permissions(manage_guild=True).value
ADMINISTRATOR = discord.Permissions(administrator=True).value
ALL_PERMISSIONS = discord.Permissions.all().value

#: What @everyone may do in a fresh community server.
EVERYONE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
    use_external_stickers=True,
    read_message_history=True,
    use_application_commands=True,
    connect=True,
    speak=True,
    change_nickname=True,
    create_instant_invite=True,
).value
#: The default "Admin" role: moderators who configure the bot (Manage Guild, Manage Messages).
ADMIN_ROLE_PERMISSIONS = discord.Permissions(
    manage_guild=True, manage_messages=True, manage_roles=True, kick_members=True, ban_members=True
).value
#: The managed role Discord creates for the bot from its invite permissions.
BOT_ROLE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
    use_external_emojis=True,
    add_reactions=True,
    manage_messages=True,
).value
#: Permissions an app has in a DM with a user.
DM_APP_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
    add_reactions=True,
    use_external_emojis=True,
).value

MESSAGE_FLAG_SUPPRESS_EMBEDS = 1 << 2
MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7
MESSAGE_FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
MESSAGE_FLAG_COMPONENTS_V2 = 1 << 15


class Snowflakes:
    """Issues unique snowflakes whose timestamp is "now" (or a given time).

    discord.py derives ``created_at`` (and an interaction's ``expires_at``) from the id, so the
    fake must issue time-based ids, not small counters.
    """

    def __init__(self) -> None:
        self._last = 0
        self._counter = itertools.count(1)

    def __call__(self, at: datetime | None = None) -> int:
        if at is not None:
            ms = int(at.timestamp() * 1000)
            return ((ms - DISCORD_EPOCH_MS) << 22) | (next(self._counter) & 0x3FFFFF)
        ms = int(datetime.now(UTC).timestamp() * 1000)
        value = max((ms - DISCORD_EPOCH_MS) << 22, self._last + 1)
        self._last = value
        return value


def snowflake_time(snowflake: int) -> datetime:
    """The creation time encoded in a snowflake."""
    return datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, UTC)


def iso(dt: datetime) -> str:
    """ISO 8601 timestamp as Discord writes it."""
    return dt.astimezone(UTC).isoformat()


def png_bytes(width: int = 4, height: int = 4, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid, tiny, solid-colour PNG (no Pillow needed). Handy as attachment content."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_content_type(data: bytes | None, filename: str) -> str | None:
    """Content type as Discord reports it: from the bytes when recognisable, else the name."""
    if data:
        for magic, content_type in _MAGIC:
            if data.startswith(magic):
                return content_type
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return "image/webp"
    guessed, _ = mimetypes.guess_type(filename)
    return guessed


def image_size(data: bytes | None) -> tuple[int, int] | None:
    """(width, height) of an image Pillow can read, else None (Discord omits them too)."""
    if not data:
        return None
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    try:
        from PIL import Image  # lazy: only non-PNG images need it

        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # not an image: Discord simply leaves width/height out
        return None


# --------------------------------------------------------------------------------------------
# Guild setup objects
# --------------------------------------------------------------------------------------------


@dataclass
class FakeUser:
    """A Discord user. ``payload()`` is the user object Discord sends."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    avatar: str | None = None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": self.avatar,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "primary_guild": None,
            "collectibles": None,
        }
        if self.bot:
            data["bot"] = True
        return data

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass
class FakeRole:
    """A guild role. ``permissions`` is the raw bit field (int)."""

    id: int
    name: str
    permissions: int = 0
    position: int = 0
    color: int = 0
    hoist: bool = False
    managed: bool = False
    mentionable: bool = False
    bot_id: int | None = None  # set on the bot's managed role

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "color": self.color,
            "colors": {
                "primary_color": self.color,
                "secondary_color": None,
                "tertiary_color": None,
            },
            "hoist": self.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": self.mentionable,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"


@dataclass
class Overwrite:
    """A channel permission overwrite (``type`` 0 = role, 1 = member)."""

    id: int
    type: int = 0
    allow: int = 0
    deny: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "allow": str(self.allow),
            "deny": str(self.deny),
        }


@dataclass
class FakeChannel:
    """A channel. ``type`` 0 = guild text, 1 = DM; ``guild_id`` is None for DMs."""

    id: int
    name: str
    type: int = 0
    guild_id: int | None = None
    nsfw: bool = False
    position: int = 0
    topic: str | None = None
    parent_id: int | None = None
    overwrites: list[Overwrite] = field(default_factory=list)
    recipients: list[FakeUser] = field(default_factory=list)  # DMs only

    def payload(self) -> dict[str, Any]:
        if self.type == 1:
            return {
                "id": str(self.id),
                "type": 1,
                "last_message_id": None,
                "flags": 0,
                "recipients": [u.payload() for u in self.recipients],
            }
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id) if self.guild_id is not None else None,
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [o.payload() for o in self.overwrites],
            "nsfw": self.nsfw,
            "topic": self.topic,
            "parent_id": str(self.parent_id) if self.parent_id is not None else None,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "flags": 0,
        }

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass
class FakeMember:
    """A guild member: a user plus role ids (the @everyone role is implicit)."""

    user: FakeUser
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: datetime = field(default_factory=lambda: datetime(2024, 1, 1, tzinfo=UTC))

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return self.user.mention

    def payload(self, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r) for r in self.role_ids],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        return data


@dataclass
class FakeGuild:
    """A guild with its roles, channels and members (build it with ``FakeDiscord.add_guild``).

    The default setup has these shortcuts: ``everyone_role``, ``admin_role`` (Manage Guild +
    Manage Messages), ``member_role``, ``bot_role``, ``text_channel``, ``nsfw_channel``,
    ``owner``, ``admin``, ``member`` (plain member with the member role) and ``bot_member``.
    Custom setups may leave some of them None.
    """

    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    locale: str = "en-US"
    admin_role: FakeRole | None = None
    member_role: FakeRole | None = None
    bot_role: FakeRole | None = None
    text_channel: FakeChannel | None = None
    nsfw_channel: FakeChannel | None = None
    owner: FakeMember | None = None
    admin: FakeMember | None = None
    member: FakeMember | None = None
    bot_member: FakeMember | None = None

    @property
    def everyone_role(self) -> FakeRole:
        return self.roles[self.id]

    def member_for(self, user_id: int) -> FakeMember:
        try:
            return self.members[user_id]
        except KeyError:
            raise KeyError(f"user {user_id} is not a member of guild {self.id}") from None

    def base_permissions(self, member: FakeMember) -> int:
        """Guild-level permissions of a member (roles only, no channel overwrites)."""
        if member.id == self.owner_id:
            return ALL_PERMISSIONS
        perms = self.everyone_role.permissions
        for role_id in member.role_ids:
            role = self.roles.get(role_id)
            if role is not None:
                perms |= role.permissions
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        return perms

    def permissions_in(self, member: FakeMember, channel: FakeChannel | None) -> int:
        """Discord's permission algorithm: base permissions, then channel overwrites."""
        perms = self.base_permissions(member)
        if perms == ALL_PERMISSIONS or channel is None:
            return perms
        by_id = {o.id: o for o in channel.overwrites}
        everyone = by_id.get(self.id)
        if everyone is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.role_ids:
            ow = by_id.get(role_id)
            if ow is not None and ow.type == 0:
                allow |= ow.allow
                deny |= ow.deny
        perms = (perms & ~deny) | allow
        own = by_id.get(member.id)
        if own is not None and own.type == 1:
            perms = (perms & ~own.deny) | own.allow
        if not perms & VIEW_CHANNEL:
            return 0
        return perms

    def create_payload(self) -> dict[str, Any]:
        """The GUILD_CREATE dispatch data (an available guild with everything cached)."""
        text = self.text_channel
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 2,
            "features": ["COMMUNITY"],
            "mfa_level": 0,
            "system_channel_id": str(text.id) if text else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": self.locale,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "joined_at": iso(datetime(2024, 1, 1, tzinfo=UTC)),
            "large": False,
            "unavailable": False,
            "member_count": len(self.members),
            "voice_states": [],
            "members": [m.payload() for m in self.members.values()],
            "channels": [c.payload() for c in self.channels.values()],
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "application_command_counts": {},
            "lazy": True,
        }


# --------------------------------------------------------------------------------------------
# Attachments and messages
# --------------------------------------------------------------------------------------------


@dataclass
class FakeAttachment:
    """A file as Discord describes it. ``data`` is None when the URL points elsewhere.

    Created by ``FakeDiscord.make_attachment`` (files the test "uploads" with a slash command) and
    by the fake for every file the bot sends. ``url`` is served by the fake when it holds the data.
    """

    id: int
    filename: str
    data: bytes | None
    content_type: str | None
    size: int
    url: str
    proxy_url: str
    width: int | None = None
    height: int | None = None
    description: str | None = None
    ephemeral: bool = False
    #: Content type of the multipart part as the client sent it (discord.py always says
    #: ``application/octet-stream``); ``content_type`` is what Discord detected.
    sent_content_type: str | None = None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.proxy_url,
        }
        if self.content_type is not None:
            data["content_type"] = self.content_type
        if self.width is not None and self.height is not None:
            data["width"] = self.width
            data["height"] = self.height
        if self.description is not None:
            data["description"] = self.description
        if self.ephemeral:
            data["ephemeral"] = True
        return data


_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


@dataclass
class StoredMessage:
    """A message as the fake Discord holds it (created by a callback, webhook or channel POST).

    ``origin`` is one of ``"channel"`` (POST /channels/{id}/messages), ``"interaction"``
    (the original response of an interaction), ``"followup"`` (a followup webhook message).
    ``interaction_token`` is set for interaction-made messages. ``payloads`` keeps every JSON
    body that created or edited it, oldest first.
    """

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    origin: str
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    tts: bool = False
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_token: str | None = None
    interaction_metadata: dict[str, Any] | None = None
    message_type: int = 0
    message_reference: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    edited_at: datetime | None = None
    payloads: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MESSAGE_FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while this is a deferred "thinking..." message not yet edited."""
        return bool(self.flags & MESSAGE_FLAG_LOADING)

    @property
    def files(self) -> list[FakeAttachment]:
        """Alias of ``attachments``."""
        return self.attachments

    def custom_ids(self) -> list[str]:
        """Every ``custom_id`` in the message's components, depth first."""
        return [c["custom_id"] for c in iter_components(self.components) if "custom_id" in c]

    def buttons(self) -> list[dict[str, Any]]:
        """Every button component (type 2) in the message."""
        return [c for c in iter_components(self.components) if c.get("type") == 2]

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        return next(
            (c for c in iter_components(self.components) if c.get("custom_id") == custom_id),
            None,
        )

    def pinged(self) -> dict[str, Any]:
        """Who this message would notify, applying ``allowed_mentions`` like Discord does.

        Returns ``{"users": set[int], "roles": set[int], "everyone": bool}`` computed from the
        ``<@id>``, ``<@&id>``, ``@everyone``/``@here`` in ``content``. Use it to assert that echoed
        user text pings nobody.
        """
        return compute_pings(self.content, self.allowed_mentions, self.message_reference)

    def payload(self, users: Mapping[int, FakeUser] | None = None) -> dict[str, Any]:
        """The message object Discord would return (and send in INTERACTION_CREATE)."""
        pings = compute_pings(self.content, self.allowed_mentions, self.message_reference)
        known = users or {}
        data: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "type": self.message_type,
            "author": self.author.payload(),
            "content": self.content,
            "timestamp": iso(self.created_at),
            "edited_timestamp": iso(self.edited_at) if self.edited_at else None,
            "tts": self.tts,
            "mention_everyone": pings["everyone"],
            "mentions": [known[u].payload() for u in sorted(pings["users"]) if u in known],
            "mention_roles": [str(r) for r in sorted(pings["roles"])],
            "attachments": [a.payload() for a in self.attachments],
            "embeds": self.embeds,
            "components": self.components,
            "pinned": False,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = self.interaction_metadata
        if self.message_reference is not None:
            data["message_reference"] = self.message_reference
        return data


def iter_components(components: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Walk components depth first (action rows, containers, sections, labels, accessories)."""
    for comp in components:
        yield comp  # type: ignore[misc]
        yield from iter_components(comp.get("components", ()))
        for key in ("component", "accessory"):
            child = comp.get(key)
            if isinstance(child, Mapping):
                yield from iter_components([child])


def number_components(components: Sequence[dict[str, Any]]) -> None:
    """Give every component without one a numeric ``id``, as Discord does on save."""
    used = {c["id"] for c in iter_components(components) if isinstance(c.get("id"), int)}
    counter = itertools.count(1)
    for comp in iter_components(components):
        if "id" not in comp or comp["id"] is None:
            n = next(counter)
            while n in used:
                n = next(counter)
            comp["id"] = n
            used.add(n)


def compute_pings(
    content: str,
    allowed_mentions: Mapping[str, Any] | None,
    message_reference: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply Discord's ``allowed_mentions`` rules to the mentions found in ``content``."""
    users = {int(u) for u in _USER_MENTION.findall(content)}
    roles = {int(r) for r in _ROLE_MENTION.findall(content)}
    everyone = "@everyone" in content or "@here" in content
    if allowed_mentions is None:  # Discord's default: every mention in the content pings
        return {"users": users, "roles": roles, "everyone": everyone}
    parse = set(allowed_mentions.get("parse") or ())
    allowed_users = {int(u) for u in allowed_mentions.get("users") or ()}
    allowed_roles = {int(r) for r in allowed_mentions.get("roles") or ()}
    return {
        "users": users if "users" in parse else users & allowed_users,
        "roles": roles if "roles" in parse else roles & allowed_roles,
        "everyone": everyone and "everyone" in parse,
    }
