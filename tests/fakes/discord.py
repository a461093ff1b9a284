"""A fake Discord (gateway + REST) on 127.0.0.1 for end-to-end tests with the real discord.py.

``FakeDiscord`` is an aiohttp server on an ephemeral port. Entering it redirects discord.py
(``discord.http.Route.BASE``, which also covers interaction callbacks and webhooks, and
``DiscordWebSocket.DEFAULT_GATEWAY``); leaving restores both. It records every request, keeps the
messages the bot creates (with files served back at their attachment URLs), dispatches
interactions over the gateway and can inject rate limits and failures.

Usage::

    from tests.fakes.discord import FakeDiscord, png_bytes

    async def test_imagine_posts_images():
        async with FakeDiscord() as fake:                    # default guild, channels, members
            bot = MyBot(intents=discord.Intents.default(), guild_ready_timeout=0.05)
            async with fake.run_bot(bot):                    # login + connect + wait ready
                await bot.tree.sync(guild=discord.Object(fake.guild.id))  # optional
                sent = await fake.slash_command("imagine", {"prompt": "a cat"},
                                                user=fake.guild.member)
                cb = await sent.wait_for_callback()          # the bot acknowledged in time
                assert cb.json["type"] == 5                  # deferred
                msg = await sent.wait_for_original(lambda m: m.attachments)
                assert msg.attachments[0].content_type == "image/png"
                assert msg.allowed_mentions == {"parse": []}
                click = await fake.click_button(msg, msg.custom_ids()[0],
                                                user=fake.guild.member)
                await click.wait_for_callback()
                upload = fake.make_attachment(png_bytes(), "in.png")
                await fake.slash_command("edit", {"prompt": "hat", "image": upload})
                fake.rate_limit("POST /webhooks/*", count=1)  # next followup gets a 429
                fake.expire_interaction(sent)                 # its webhook routes now 404

Conventions: ids are ``int`` in Python, strings in JSON. Paths in recordings and matchers are
relative to ``/api/v10``. One ``FakeDiscord`` may be active at a time (it patches class
attributes). Close the bot before leaving the ``async with`` (``run_bot`` does), or it will try
to reconnect to a server that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote

import discord
import discord.gateway
import discord.http
import yarl
from aiohttp import BodyPartReader, web
from multidict import CIMultiDictProxy

from .discord_gateway import Gateway, NoBotConnected
from .discord_interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    InteractionState,
    PayloadBuilder,
    Resolved,
    SentInteraction,
    UserLike,
)
from .discord_models import (
    ADMIN_ROLE_PERMISSIONS,
    BOT_ROLE_PERMISSIONS,
    EVERYONE_PERMISSIONS,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    Overwrite,
    Snowflakes,
    StoredMessage,
    image_size,
    png_bytes,
    sniff_content_type,
)
from .discord_recording import ChangeWaiters, Matcher, Recorded, RecordedFile, match
from .discord_rest import Reply, RestApi, error

__all__ = [
    "DEFAULT_GUILD",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeUser",
    "Fault",
    "Matcher",
    "NoBotConnected",
    "Overwrite",
    "Recorded",
    "RecordedFile",
    "SentInteraction",
    "StoredMessage",
    "png_bytes",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

API_PREFIX: Final = "/api/v10"


class _DefaultGuild:
    def __repr__(self) -> str:
        return "DEFAULT_GUILD"


#: Sentinel for "the default guild" in interaction helpers (``guild_id=None`` means a DM).
DEFAULT_GUILD: Final = _DefaultGuild()

GuildRef = int | FakeGuild | None | _DefaultGuild
ChannelRef = int | FakeChannel | None
MessageRef = int | StoredMessage


@dataclass
class Fault:
    """An injected answer for the next ``remaining`` requests selected by ``matcher``.

    ``hits`` collects the requests that received it.
    """

    matcher: Matcher
    remaining: int
    reply: Callable[[], Reply]
    kind: str
    hits: list[Recorded] = field(default_factory=list)


class FakeDiscord:
    """Fake Discord gateway + REST server; see the module docstring for a tour.

    Args:
        token: the bot token the fake accepts (``Authorization: Bot <token>``, IDENTIFY).
        application_id: the application (and bot user) id; random snowflake by default.
        bot_name: the bot user's username.
        default_guild: create the default guild (see :meth:`add_guild`) right away.
        heartbeat_interval_ms: sent in HELLO; the long default keeps heartbeats out of tests.
        interaction_ack_timeout: seconds a bot has to call back after dispatch; a later callback
            gets 404 ``10062 Unknown interaction`` like on Discord. None disables the check.
        attachment_size_limit: per-file upload limit for channel messages and the default
            ``attachment_size_limit`` of dispatched interactions (10 MiB).
        message_events: dispatch MESSAGE_CREATE/UPDATE/DELETE for visible messages the bot
            creates, edits or deletes (Discord does).
        strict_commands: once the bot registered commands, refuse (ValueError) to dispatch a
            command that is not registered where the user invokes it (see :meth:`find_command`).
    """

    _active: FakeDiscord | None = None

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        application_id: int | None = None,
        bot_name: str = "ImageStudio",
        default_guild: bool = True,
        heartbeat_interval_ms: int = 41_250,
        interaction_ack_timeout: float | None = 3.0,
        attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
        message_events: bool = True,
        strict_commands: bool = True,
    ) -> None:
        self.snowflake = Snowflakes()
        self.token = token
        self.application_id = application_id or self.snowflake()
        self.interaction_ack_timeout = interaction_ack_timeout
        self.attachment_size_limit = attachment_size_limit
        self.message_events = message_events
        self.strict_commands = strict_commands
        self.bot_user = FakeUser(self.application_id, bot_name, bot=True)
        self.owner_user = FakeUser(self.snowflake(), "app_owner", global_name="App Owner")
        #: Every known user by id (bot, owner, all members, ad-hoc users).
        self.users: dict[int, FakeUser] = {u.id: u for u in (self.bot_user, self.owner_user)}
        self.guilds: dict[int, FakeGuild] = {}
        #: Live messages by id (created by the bot, or posted by fake users).
        self.messages: dict[int, StoredMessage] = {}
        #: Messages deleted through the API, by id (``deleted`` is True).
        self.deleted_messages: dict[int, StoredMessage] = {}
        #: Every attachment the fake serves, by id.
        self.attachments: dict[int, FakeAttachment] = {}
        #: Every request received, in the order they were answered.
        self.requests: list[Recorded] = []
        #: Interactions dispatched, by token.
        self.interactions: dict[str, InteractionState] = {}
        #: The interaction that opened each modal, by modal custom_id (latest wins).
        self.modals: dict[str, InteractionState] = {}
        #: Registered application commands: {guild_id or None: {command_id: definition}}.
        self.registered_commands: dict[int | None, dict[int, dict[str, Any]]] = {}
        #: Users whose DMs are closed to the bot (sending answers 403 50007).
        self.dm_blocked: set[int] = set()
        self.faults: list[Fault] = []
        self._dm_channels: dict[int, FakeChannel] = {}
        self._expired_attachments: set[int] = set()
        self._forge: Callable[[dict[str, Any]], None] | None = None
        self._waiters = ChangeWaiters()
        self._builder = PayloadBuilder(self)
        self._rest = RestApi(self)
        self.gateway = Gateway(self, heartbeat_interval_ms=heartbeat_interval_ms)
        self.gateway.on_change = self.notify
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._saved: tuple[str, yarl.URL] | None = None
        if default_guild:
            self.add_guild()

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        if FakeDiscord._active is not None:
            raise RuntimeError(
                "another FakeDiscord is active: discord.py can only be redirected once"
            )
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self._port = self._runner.addresses[0][1]
        self._saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        FakeDiscord._active = self
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.gateway.close()
            if self._runner is not None:
                await self._runner.cleanup()
        finally:
            if self._saved is not None:
                discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = (
                    self._saved
                )
            FakeDiscord._active = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (attachment URLs live under it)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT/api/v10``: what ``Route.BASE`` is set to."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """``ws://127.0.0.1:PORT/gateway``: the gateway and the ``resume_gateway_url``."""
        return f"ws://127.0.0.1:{self._port}/gateway"

    @contextlib.asynccontextmanager
    async def run_bot(
        self, bot: discord.Client, *, token: str | None = None, ready_timeout: float = 15.0
    ) -> AsyncIterator[discord.Client]:
        """Log ``bot`` in, connect it, wait for ``on_ready``; close it cleanly on exit.

        Construct bots with ``guild_ready_timeout=0.05`` or READY waits 2 s for guilds.
        A login or connection failure is raised here instead of hanging.
        """
        try:
            await bot.login(token or self.token)
        except BaseException:
            await bot.close()
            raise
        connect = asyncio.create_task(bot.connect(), name="fake-discord-bot-connect")
        ready = asyncio.create_task(bot.wait_until_ready(), name="fake-discord-bot-ready")
        try:
            done, _ = await asyncio.wait(
                {connect, ready}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if ready not in done:
                if connect in done:
                    connect.result()  # raises the connection error
                raise TimeoutError(f"bot was not ready after {ready_timeout}s")
            yield bot
        finally:
            ready.cancel()
            await bot.close()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(ready, return_exceptions=True)
            with contextlib.suppress(discord.ConnectionClosed, asyncio.CancelledError):
                await asyncio.wait_for(connect, timeout=15.0)

    # -- guild setup ----------------------------------------------------------------------------

    @property
    def guild(self) -> FakeGuild:
        """The first guild (the default one unless ``default_guild=False``)."""
        if not self.guilds:
            raise LookupError("no guild configured: call add_guild()")
        return next(iter(self.guilds.values()))

    def add_user(
        self,
        username: str,
        *,
        user_id: int | None = None,
        bot: bool = False,
        global_name: str | None = None,
    ) -> FakeUser:
        """Register a user (not a member of any guild)."""
        user = FakeUser(user_id or self.snowflake(), username, global_name=global_name, bot=bot)
        self.users[user.id] = user
        return user

    def user(self, user_id: int) -> FakeUser:
        """A known user by id (KeyError if unknown)."""
        try:
            return self.users[user_id]
        except KeyError:
            raise KeyError(f"unknown user {user_id}: add_user() it first") from None

    def add_guild(
        self,
        guild_id: int | None = None,
        *,
        name: str = "Fake Guild",
        channels: Sequence[FakeChannel] | None = None,
        roles: Sequence[FakeRole] | None = None,
        members: Sequence[FakeMember] | None = None,
        owner: FakeUser | None = None,
        locale: str = "en-US",
    ) -> FakeGuild:
        """Add a guild the bot is in; call it before the bot connects.

        With no arguments you get: roles ``@everyone`` (id = guild id, everyday permissions),
        ``Admin`` (Manage Guild + Manage Messages + ...), ``Member`` (no extra permissions) and the
        bot's managed role; channels ``#general`` (text) and ``#nsfw-art`` (text, nsfw); members
        ``owner``, ``admin`` (Admin role), ``member`` (Member role) and the bot. Pass ``channels``
        / ``roles`` / ``members`` to replace a part (objects built with this fake's ids, e.g. via
        :meth:`add_text_channel`, :meth:`add_role`, :meth:`add_member` afterwards). The
        ``@everyone`` role and the bot member are always present.
        """
        gid = guild_id or self.snowflake()
        owner_user = owner or self.add_user(f"owner_{len(self.guilds)}", global_name="Owner")
        self.users[owner_user.id] = owner_user
        guild = FakeGuild(id=gid, name=name, owner_id=owner_user.id, locale=locale)
        self.guilds[gid] = guild
        if roles is None:
            guild.roles[gid] = FakeRole(gid, "@everyone", EVERYONE_PERMISSIONS)
            guild.admin_role = self.add_role(guild, "Admin", ADMIN_ROLE_PERMISSIONS, hoist=True)
            guild.member_role = self.add_role(guild, "Member", 0)
        else:
            for role in roles:
                guild.roles[role.id] = role
            guild.roles.setdefault(gid, FakeRole(gid, "@everyone", EVERYONE_PERMISSIONS))
        guild.bot_role = self.add_role(guild, self.bot_user.username, BOT_ROLE_PERMISSIONS)
        guild.bot_role.managed = True
        guild.bot_role.bot_id = self.bot_user.id
        if channels is None:
            guild.text_channel = self.add_text_channel(guild, "general", topic="Chat")
            guild.nsfw_channel = self.add_text_channel(guild, "nsfw-art", nsfw=True)
        else:
            for channel in channels:
                channel.guild_id = gid
                guild.channels[channel.id] = channel
            guild.text_channel = next((c for c in channels if c.type == 0), None)
            guild.nsfw_channel = next((c for c in channels if c.type == 0 and c.nsfw), None)
        guild.owner = self.add_member(guild, owner_user)
        if members is None:
            guild.admin = self.add_member(
                guild, "admin", roles=[guild.admin_role] if guild.admin_role else []
            )
            guild.member = self.add_member(
                guild, "member", roles=[guild.member_role] if guild.member_role else []
            )
        else:
            for member in members:
                self.users[member.user.id] = member.user
                guild.members[member.id] = member
            humans = [m for m in members if not m.user.bot]
            guild.member = humans[0] if humans else None
        guild.bot_member = self.add_member(guild, self.bot_user, roles=[guild.bot_role])
        return guild

    def add_role(
        self,
        guild: FakeGuild,
        name: str,
        permissions: int | discord.Permissions = 0,
        *,
        mentionable: bool = False,
        hoist: bool = False,
        color: int = 0,
    ) -> FakeRole:
        """Add a role to ``guild`` (above the existing ones)."""
        perms = permissions.value if isinstance(permissions, discord.Permissions) else permissions
        role = FakeRole(
            self.snowflake(),
            name,
            int(perms),
            position=len(guild.roles),
            mentionable=mentionable,
            hoist=hoist,
            color=color,
        )
        guild.roles[role.id] = role
        return role

    def add_text_channel(
        self,
        guild: FakeGuild,
        name: str,
        *,
        nsfw: bool = False,
        topic: str | None = None,
        overwrites: Sequence[Overwrite] = (),
    ) -> FakeChannel:
        """Add a text channel; ``overwrites`` take part in permission computation."""
        channel = FakeChannel(
            self.snowflake(),
            name,
            type=0,
            guild_id=guild.id,
            nsfw=nsfw,
            position=len(guild.channels),
            topic=topic,
            overwrites=list(overwrites),
        )
        guild.channels[channel.id] = channel
        return channel

    def add_member(
        self,
        guild: FakeGuild,
        user: FakeUser | str,
        *,
        roles: Sequence[FakeRole | int] = (),
        nick: str | None = None,
    ) -> FakeMember:
        """Make ``user`` (an existing user, or a username for a new one) a member of ``guild``."""
        if isinstance(user, str):
            user = self.add_user(user)
        self.users[user.id] = user
        member = FakeMember(
            user=user,
            role_ids=[r.id if isinstance(r, FakeRole) else int(r) for r in roles],
            nick=nick,
        )
        guild.members[user.id] = member
        return member

    def find_channel(self, channel_id: int) -> FakeChannel | None:
        """A guild or DM channel by id, or None."""
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild.channels[channel_id]
        return next((c for c in self._dm_channels.values() if c.id == channel_id), None)

    def channel(self, channel_id: int) -> FakeChannel:
        """A guild or DM channel by id (KeyError if unknown)."""
        found = self.find_channel(channel_id)
        if found is None:
            raise KeyError(f"unknown channel {channel_id}")
        return found

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The DM channel between the bot and ``user`` (created on first use)."""
        channel = self._dm_channels.get(user.id)
        if channel is None:
            channel = FakeChannel(self.snowflake(), "", type=1, recipients=[user])
            self._dm_channels[user.id] = channel
        return channel

    def block_dms(self, user: FakeUser | FakeMember | int) -> None:
        """Make messages to this user's DM channel fail with 403 ``50007``."""
        self.dm_blocked.add(user if isinstance(user, int) else user.id)

    def make_attachment(
        self,
        data: bytes | None = None,
        filename: str = "image.png",
        *,
        content_type: str | None = None,
        url: str | None = None,
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
        description: str | None = None,
    ) -> FakeAttachment:
        """An attachment a user "uploads" (for attachment options, modals, user messages).

        With ``data`` the fake serves the bytes at ``url`` (a signed-looking CDN URL on the
        fake). With ``url`` (and no data) the attachment points wherever the test says. ``size``
        defaults to ``len(data)`` and may be set to lie (e.g. to test size checks);
        ``content_type`` defaults to what Discord would detect.
        """
        aid = self.snowflake()
        if url is None:
            if not self._port:
                raise RuntimeError("make_attachment() needs a started fake (inside `async with`)")
            if data is None:
                data = png_bytes()
            stamp = int(time.time())
            query = f"?ex={stamp + 86_400:x}&is={stamp:x}&hm={secrets.token_hex(32)}&"
            path = f"/attachments/0/{aid}/{quote(filename)}"
            url, proxy = self.base_url + path + query, self.base_url + "/media" + path + query
        else:
            proxy = url
        dims = image_size(data)
        attachment = FakeAttachment(
            id=aid,
            filename=filename,
            data=data,
            content_type=content_type or sniff_content_type(data, filename),
            size=size if size is not None else len(data or b""),
            url=url,
            proxy_url=proxy,
            width=width or (dims[0] if dims else None),
            height=height or (dims[1] if dims else None),
            description=description,
        )
        if data is not None:
            self.attachments[aid] = attachment
        return attachment

    def expire_attachment(self, attachment: FakeAttachment) -> None:
        """Make the attachment's URL answer 404, like an expired signed CDN link."""
        self._expired_attachments.add(attachment.id)

    # -- gateway ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a bot currently has an identified gateway connection."""
        return bool(self.gateway.live_sessions)

    @property
    def identifies(self) -> list[dict[str, Any]]:
        """IDENTIFY payloads received (intents, properties, shard...), oldest first."""
        return [f["d"] for f in self.gateway.received if f.get("op") == 2]

    @property
    def gateway_frames(self) -> list[dict[str, Any]]:
        """Every gateway frame received from bots, heartbeats included."""
        return self.gateway.received

    async def dispatch(self, event: str, data: Any) -> int:
        """Send a raw dispatch (``t`` = ``event``) to connected bots; returns how many got it."""
        return await self.gateway.dispatch(event, data)

    async def disconnect_bot(self, code: int = 4000) -> None:
        """Drop the gateway socket(s); discord.py reconnects and RESUMEs (missed events replay)."""
        await self.gateway.drop(code)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; discord.py reconnects and RESUMEs."""
        await self.gateway.send_op(7)

    async def wait_until_connected(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Wait until a bot has an identified gateway session."""
        await self.wait_until(lambda: self.connected, timeout=timeout, describe="a gateway session")

    # -- commands ----------------------------------------------------------------------------

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """Registered commands (global with None, else that guild's), as Discord stores them."""
        return list(self.registered_commands.get(guild_id, {}).values())

    def find_command(
        self, name: str, command_type: int, guild_id: int | None
    ) -> tuple[dict[str, Any] | None, int | None]:
        """The registered definition a user would invoke: guild command first, then global.

        Returns ``(definition, guild_id it is registered in)``. When the bot registered no
        commands at all, returns ``(None, None)`` (option types are then inferred). When it did
        register some but not this one where the user is, raises ValueError if
        ``strict_commands`` (a Discord client would not offer the command), else
        ``(None, None)``.
        """
        scopes = ([guild_id] if guild_id is not None else []) + [None]
        for scope in scopes:
            for command in self.registered_commands.get(scope, {}).values():
                if command["name"] == name and command.get("type", 1) == command_type:
                    return command, scope
        if self.strict_commands and any(self.registered_commands.values()):
            where = f"guild {guild_id}" if guild_id is not None else "DMs"
            raise ValueError(
                f"command {name!r} (type {command_type}) is not registered for {where}; "
                f"registered: {self._registered_names()}"
            )
        return None, None

    def _registered_names(self) -> dict[str, list[str]]:
        return {
            str(scope or "global"): sorted(c["name"] for c in cmds.values())
            for scope, cmds in self.registered_commands.items()
        }

    # -- interactions ------------------------------------------------------------------------

    def _guild_id(self, guild: GuildRef) -> int | None:
        if isinstance(guild, _DefaultGuild):
            return self.guild.id
        if isinstance(guild, FakeGuild):
            return guild.id
        return guild

    @contextlib.contextmanager
    def forging(self, mutate: Callable[[dict[str, Any]], None]) -> Iterator[None]:
        """Interactions sent inside the block are changed by ``mutate(payload)`` first: what a
        forged or broken client, or a Discord bug, would deliver. The fake keeps its own view."""
        self._forge = mutate
        try:
            yield
        finally:
            self._forge = None

    async def _send(self, state: InteractionState) -> SentInteraction:
        if self._forge is not None:
            self._forge(state.payload)
        self.interactions[state.token] = state
        mark = len(self.requests)
        state.dispatched_at = time.monotonic()
        await self.gateway.dispatch("INTERACTION_CREATE", state.payload, required=True)
        return SentInteraction(self, state, mark)

    async def slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: UserLike | None = None,
        guild_id: GuildRef = DEFAULT_GUILD,
        channel_id: ChannelRef = None,
        attachments: Mapping[str, FakeAttachment] | None = None,
        member_permissions: int | discord.Permissions | None = None,
        roles: Sequence[FakeRole | int] | None = None,
        locale: str = "en-US",
        attachment_size_limit: int | None = None,
        created_at: datetime | None = None,
    ) -> SentInteraction:
        """Dispatch a chat-input command as ``user`` typed it.

        ``name`` may include subcommands: ``"admin quota default"``. ``options`` maps option
        names to values: str/int/float/bool, :class:`FakeAttachment` (from
        :meth:`make_attachment`; it goes into ``data.resolved.attachments``), users/members,
        roles, channels. ``attachments`` is merged into ``options`` (a convenience). When the bot
        registered the command, option types come from its definition and unknown/missing
        required options raise ValueError; otherwise types are inferred from the values.
        ``guild_id=None`` sends it from the user's DM (then ``user`` is required). ``user``
        defaults to the guild's plain ``member``; ``roles`` / ``member_permissions`` override
        the member's roles / the computed ``member.permissions``. ``created_at`` backdates the
        interaction id (discord.py's ``is_expired()`` and the fake's 15-minute token lifetime
        follow it).
        """
        gid = self._guild_id(guild_id)
        merged = {**(options or {}), **(attachments or {})}
        data = self._builder.command_data(name, merged, guild_id=gid)
        state = self._builder.envelope(
            type=APPLICATION_COMMAND,
            data=data,
            user=user,
            guild_id=gid,
            channel_id=_channel_id(channel_id),
            member_permissions=_perm_value(member_permissions),
            roles=roles,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
            created_at=created_at,
        )
        return await self._send(state)

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        user: UserLike | None = None,
        guild_id: GuildRef = DEFAULT_GUILD,
        channel_id: ChannelRef = None,
    ) -> SentInteraction:
        """Dispatch an autocomplete request (type 4) with ``focused`` being typed.

        The choices the bot returns are in ``SentInteraction.choices``.
        """
        gid = self._guild_id(guild_id)
        data = self._builder.command_data(name, options, guild_id=gid, focused=focused)
        state = self._builder.envelope(
            type=AUTOCOMPLETE,
            data=data,
            user=user,
            guild_id=gid,
            channel_id=_channel_id(channel_id),
        )
        return await self._send(state)

    async def click_button(
        self,
        message: MessageRef,
        custom_id: str,
        *,
        user: UserLike | None = None,
        member_permissions: int | discord.Permissions | None = None,
        roles: Sequence[FakeRole | int] | None = None,
        locale: str = "en-US",
        attachment_size_limit: int | None = None,
        created_at: datetime | None = None,
    ) -> SentInteraction:
        """Dispatch a button click (type 3, component_type 2) on a stored message.

        The interaction carries the message with its components (discord.py needs them to
        route DynamicItems). Raises ValueError if the message has no such button or it is
        disabled. ``user`` defaults to the guild's plain member (for DMs: the DM recipient).
        """
        msg = self._live(message)
        data = self._builder.component_data(msg, custom_id, values=None, kind="button")
        return await self._component(
            msg,
            data,
            user,
            member_permissions,
            roles,
            locale,
            attachment_size_limit,
            created_at,
        )

    async def select_menu(
        self,
        message: MessageRef,
        custom_id: str,
        values: Sequence[Any],
        *,
        user: UserLike | None = None,
        member_permissions: int | discord.Permissions | None = None,
        roles: Sequence[FakeRole | int] | None = None,
        locale: str = "en-US",
    ) -> SentInteraction:
        """Dispatch a select-menu choice (strings, or users/roles/channels for typed menus)."""
        msg = self._live(message)
        resolved = Resolved()
        gid = msg.guild_id
        comp = msg.find_component(custom_id) or {}
        converted = [
            self._builder.select_value(int(comp.get("type", 3)), v, gid, resolved) for v in values
        ]
        data = self._builder.component_data(msg, custom_id, values=converted, kind="select")
        if resolved.data:
            data["resolved"] = resolved.data
        return await self._component(msg, data, user, member_permissions, roles, locale, None, None)

    async def _component(
        self,
        msg: StoredMessage,
        data: dict[str, Any],
        user: UserLike | None,
        member_permissions: int | discord.Permissions | None,
        roles: Sequence[FakeRole | int] | None,
        locale: str,
        attachment_size_limit: int | None,
        created_at: datetime | None,
    ) -> SentInteraction:
        if msg.guild_id is None and user is None:
            channel = self.channel(msg.channel_id)
            user = channel.recipients[0] if channel.recipients else None
        state = self._builder.envelope(
            type=MESSAGE_COMPONENT,
            data=data,
            user=user,
            guild_id=msg.guild_id,
            channel_id=msg.channel_id if msg.guild_id is not None else None,
            message=msg,
            member_permissions=_perm_value(member_permissions),
            roles=roles,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
            created_at=created_at,
        )
        return await self._send(state)

    async def submit_modal(
        self,
        custom_id: str,
        values: Mapping[str, Any],
        *,
        user: UserLike | None = None,
        guild_id: GuildRef = DEFAULT_GUILD,
        channel_id: ChannelRef = None,
        message: MessageRef | None = None,
        member_permissions: int | discord.Permissions | None = None,
        roles: Sequence[FakeRole | int] | None = None,
        locale: str = "en-US",
        attachment_size_limit: int | None = None,
    ) -> SentInteraction:
        """Dispatch a modal submission (type 5); ``values`` maps input custom_ids to values.

        If the bot opened a modal with this ``custom_id`` (callback type 9), the submission
        mirrors its layout (Labels or action rows, as discord.py built it), inputs not given
        keep their default value, unknown ids and text inputs breaking required/min/max raise
        ValueError, and user, guild, channel and message default to those of the interaction
        that opened it. Text inputs take str, selects / file uploads / checkbox groups take a
        list (FakeAttachment for file uploads), checkboxes a bool.
        """
        opener = self.modals.get(custom_id)
        if opener is not None:
            if user is None:
                user = opener.user
            if isinstance(guild_id, _DefaultGuild):
                guild_id = opener.guild_id
            if channel_id is None and opener.guild_id is not None:
                channel_id = opener.channel_id
            if message is None and opener.source_message_id is not None:
                message = self.messages.get(opener.source_message_id)
        gid = self._guild_id(guild_id)
        resolved = Resolved()
        components = self._builder.modal_components(
            opener.modal if opener else None, values, resolved, gid
        )
        data: dict[str, Any] = {"custom_id": custom_id, "components": components}
        if resolved.data:
            data["resolved"] = resolved.data
        msg = self._live(message) if message is not None else None
        state = self._builder.envelope(
            type=MODAL_SUBMIT,
            data=data,
            user=user,
            guild_id=gid,
            channel_id=_channel_id(channel_id),
            message=msg,
            member_permissions=_perm_value(member_permissions),
            roles=roles,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
        )
        return await self._send(state)

    async def message_context_menu(
        self,
        name: str,
        target_message: MessageRef,
        *,
        user: UserLike | None = None,
        member_permissions: int | discord.Permissions | None = None,
        roles: Sequence[FakeRole | int] | None = None,
        locale: str = "en-US",
        attachment_size_limit: int | None = None,
    ) -> SentInteraction:
        """Dispatch a message context-menu command (type 2, data.type 3) on a stored message.

        ``data.target_id`` and ``data.resolved.messages`` carry the target; the interaction
        comes from the target's channel.
        """
        target = self._live(target_message)
        data = self._builder.message_command_data(name, target, guild_id=target.guild_id)
        if target.guild_id is None and user is None:
            channel = self.channel(target.channel_id)
            user = channel.recipients[0] if channel.recipients else None
        state = self._builder.envelope(
            type=APPLICATION_COMMAND,
            data=data,
            user=user,
            guild_id=target.guild_id,
            channel_id=target.channel_id if target.guild_id is not None else None,
            member_permissions=_perm_value(member_permissions),
            roles=roles,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
        )
        return await self._send(state)

    async def user_context_menu(
        self,
        name: str,
        target_user: UserLike,
        *,
        user: UserLike | None = None,
        guild_id: GuildRef = DEFAULT_GUILD,
        channel_id: ChannelRef = None,
    ) -> SentInteraction:
        """Dispatch a user context-menu command (type 2, data.type 2) on ``target_user``."""
        gid = self._guild_id(guild_id)
        data = self._builder.user_command_data(name, target_user, guild_id=gid)
        state = self._builder.envelope(
            type=APPLICATION_COMMAND,
            data=data,
            user=user,
            guild_id=gid,
            channel_id=_channel_id(channel_id),
        )
        return await self._send(state)

    def interaction(self, token: str) -> SentInteraction:
        """The SentInteraction for a token (e.g. one found in a recorded path)."""
        return SentInteraction(self, self.interactions[token], 0)

    def original_response(self, interaction: SentInteraction | str) -> StoredMessage | None:
        """Current original-response message of an interaction (by object or token)."""
        token = interaction if isinstance(interaction, str) else interaction.token
        state = self.interactions[token]
        mid = state.original_message_id
        return None if mid is None else self.messages.get(mid)

    # -- messages from users --------------------------------------------------------------

    async def post_user_message(
        self,
        channel: FakeChannel | int,
        author: UserLike,
        content: str = "",
        *,
        attachments: Sequence[FakeAttachment] = (),
        embeds: Sequence[dict[str, Any]] = (),
    ) -> StoredMessage:
        """A message written by a user (e.g. a target for a context menu); MESSAGE_CREATE sent."""
        chan = self.channel(channel) if isinstance(channel, int) else channel
        user = self._builder.user(author)
        msg = StoredMessage(
            id=self.snowflake(),
            channel_id=chan.id,
            guild_id=chan.guild_id,
            author=user,
            origin="user",
            content=content,
            embeds=[copy.deepcopy(e) for e in embeds],
            attachments=list(attachments),
        )
        self.messages[msg.id] = msg
        data = msg.payload(self.users)
        guild = self.guilds.get(chan.guild_id) if chan.guild_id is not None else None
        if guild is not None and user.id in guild.members:
            data["member"] = guild.members[user.id].payload(with_user=False)
        await self.dispatch("MESSAGE_CREATE", data)
        self.notify()
        return msg

    def _live(self, message: MessageRef) -> StoredMessage:
        msg = self.message(message) if isinstance(message, int) else message
        if msg.deleted:
            raise ValueError(f"message {msg.id} was deleted: a user cannot interact with it")
        return msg

    def message(self, message_id: int) -> StoredMessage:
        """A live message by id (KeyError if unknown or deleted)."""
        try:
            return self.messages[message_id]
        except KeyError:
            raise KeyError(f"no live message {message_id}") from None

    def messages_in(self, channel: FakeChannel | int) -> list[StoredMessage]:
        """Live messages in a channel, oldest first (ephemeral ones included)."""
        cid = channel if isinstance(channel, int) else channel.id
        return sorted(
            (m for m in self.messages.values() if m.channel_id == cid), key=lambda m: m.id
        )

    async def wait_for_message(
        self,
        predicate: Callable[[StoredMessage], bool],
        *,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        """Wait until some live message satisfies ``predicate`` (e.g. a channel fallback)."""
        return await self.wait_until(
            lambda: next((m for m in list(self.messages.values()) if predicate(m)), None),
            timeout=timeout,
            describe=f"a message matching {predicate!r}",
        )

    # -- fault injection ------------------------------------------------------------------

    def rate_limit(
        self,
        matcher: Matcher,
        *,
        count: int = 1,
        retry_after: float = 0.05,
        is_global: bool = False,
        scope: str = "user",
    ) -> Fault:
        """Answer the next ``count`` matching requests with a 429 discord.py retries.

        The 429 has ``Via``, ``Retry-After``, ``X-RateLimit-*`` headers and the body
        ``{"message", "retry_after", "global"}``. Keep ``retry_after`` small (tens of ms).
        """

        def reply() -> Reply:
            headers = {
                "Retry-After": str(max(1, round(retry_after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Bucket": "fakebucket" + secrets.token_hex(4),
                "X-RateLimit-Scope": scope,
            }
            if is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {
                "message": "You are being rate limited.",
                "retry_after": retry_after,
                "global": is_global,
            }
            return Reply(429, body, headers, injected="rate_limit")

        fault = Fault(matcher, count, reply, "rate_limit")
        self.faults.append(fault)
        return fault

    def fail(
        self,
        matcher: Matcher,
        *,
        status: int = 500,
        code: int = 0,
        message: str | None = None,
        count: int = 1,
        body: Any = None,
    ) -> Fault:
        """Answer the next ``count`` matching requests with an error.

        E.g. ``fake.fail("POST /channels/*/messages", status=403, code=50013,
        message="Missing Permissions")``. Note discord.py sleeps 1 s, 3 s... before retrying
        500/502/504 (and the webhook adapter every 5xx): prefer 4xx or 503 on the HTTP client.
        """

        def reply() -> Reply:
            payload = (
                body if body is not None else {"message": message or f"{status}", "code": code}
            )
            return Reply(status, payload, injected="failure")

        fault = Fault(matcher, count, reply, "failure")
        self.faults.append(fault)
        return fault

    def expire_interaction(self, interaction: SentInteraction | str, *, code: int = 10015) -> None:
        """Expire an interaction's token from now on.

        Webhook routes (followups, ``@original``) answer 404 ``10015 Unknown Webhook``
        (discord.NotFound), or 401 ``50027 Invalid Webhook Token`` with ``code=50027``
        (discord.HTTPException); the callback answers 404 ``10062``.
        """
        token = interaction if isinstance(interaction, str) else interaction.token
        self.interactions[token].expired_code = code

    def forget_interaction(self, interaction: SentInteraction | str) -> None:
        """Make the callback answer 404 ``10062 Unknown interaction`` (e.g. acked too late)."""
        token = interaction if isinstance(interaction, str) else interaction.token
        self.interactions[token].unknown = True

    # -- recording and waiting --------------------------------------------------------------

    def mark(self) -> int:
        """Current length of ``requests``; pass it as ``after=`` to only look at newer ones."""
        return len(self.requests)

    def requests_to(
        self, matcher: Matcher, *, after: int | Recorded | None = None, status: int | None = None
    ) -> list[Recorded]:
        """Recorded requests matching ``matcher`` (see :data:`Matcher`), oldest first."""
        start = _start(after)
        return [
            r
            for r in self.requests[start:]
            if match(matcher, r) and (status is None or r.status == status)
        ]

    async def wait_for(
        self,
        matcher: Matcher,
        *,
        timeout: float = 15.0,  # noqa: ASYNC109
        after: int | Recorded | None = None,
        status: int | None = None,
        count: int = 1,
    ) -> Recorded:
        """Wait until ``count`` matching requests were answered; returns the ``count``-th.

        Requests already received count (use ``after=fake.mark()`` to only consider new ones).
        """

        def check() -> Recorded | None:
            found = self.requests_to(matcher, after=after, status=status)
            return found[count - 1] if len(found) >= count else None

        return await self.wait_until(check, timeout=timeout, describe=f"request {matcher!r}")

    async def wait_until(
        self,
        check: Callable[[], T | None],
        *,
        timeout: float = 15.0,  # noqa: ASYNC109
        describe: str = "condition",
        poll: float | None = None,
    ) -> T:
        """Wait until ``check()`` returns a truthy value, and return that value.

        ``check`` is re-evaluated after every request the fake answers and every gateway
        change (no sleeping). For state the fake cannot observe (the bot's own memory, a
        database), pass ``poll`` (e.g. 0.01) to also re-check periodically. Raises TimeoutError
        naming the last requests after ``timeout`` seconds.
        """

        def truthy() -> T | None:
            value = check()
            return value if value else None

        try:
            return await self._waiters.wait(truthy, timeout, describe, poll)
        except TimeoutError as exc:
            recent = ", ".join(r.route + f" -> {r.status}" for r in self.requests[-8:])
            raise TimeoutError(f"{exc}; last requests: [{recent}]") from None

    def notify(self) -> None:
        """Wake waiters (called after every request and gateway change)."""
        self._waiters.notify()

    # -- HTTP plumbing ----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = await _read_request(request)
        try:
            reply = await self._answer(rec)
        except Exception:
            log.exception("fake discord: handler crashed for %s", rec.route)
            reply = error(500, 0, "500: Internal Server Error (fake handler crashed)")
        rec.status = reply.status
        rec.response = reply.body
        rec.injected = reply.injected
        rec.index = len(self.requests)
        self.requests.append(rec)
        log.debug("fake discord: %s -> %s", rec.route, reply.status)
        self.notify()
        if isinstance(reply.body, bytes):
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        headers = {"Via": "1.1 google", **reply.headers}
        if reply.body is None:
            return web.Response(status=reply.status, headers=headers)
        headers["Content-Type"] = "application/json"  # exactly: discord.py compares it verbatim
        return web.Response(
            status=reply.status, body=json.dumps(reply.body).encode(), headers=headers
        )

    async def _answer(self, rec: Recorded) -> Reply:
        if not rec.extra.get("api"):
            return self._serve_attachment(rec)
        resolved = self._rest.resolve(rec.method, rec.path)
        if isinstance(resolved, Reply):
            rec.extra["unhandled"] = True
            return resolved
        route, params = resolved
        if route.auth and rec.headers.get("Authorization") != f"Bot {self.token}":
            return error(401, 0, "401: Unauthorized")
        for fault in self.faults:
            if fault.remaining > 0 and match(fault.matcher, rec):
                fault.remaining -= 1
                fault.hits.append(rec)
                return fault.reply()
        return await route.handler(rec, params)

    def _serve_attachment(self, rec: Recorded) -> Reply:
        parts = rec.path.removeprefix("/media").split("/")
        # /attachments/{channel}/{attachment}/{filename}
        if len(parts) >= 4 and parts[1] == "attachments" and parts[3].isdigit():
            attachment = self.attachments.get(int(parts[3]))
            if attachment is not None and attachment.id not in self._expired_attachments:
                content_type = attachment.content_type or "application/octet-stream"
                return _ranged(attachment.data or b"", content_type, rec.headers)
            return Reply(
                404, b"This content is no longer available.", {"Content-Type": "text/plain"}
            )
        return Reply(404, b"404: Not Found", {"Content-Type": "text/plain"})


# -- helpers ------------------------------------------------------------------------------------


def _start(after: int | Recorded | None) -> int:
    if after is None:
        return 0
    return after.index + 1 if isinstance(after, Recorded) else after


def _channel_id(channel: ChannelRef) -> int | None:
    return channel.id if isinstance(channel, FakeChannel) else channel


def _perm_value(perms: int | discord.Permissions | None) -> int | None:
    return perms.value if isinstance(perms, discord.Permissions) else perms


def _ranged(data: bytes, content_type: str, headers: Mapping[str, str]) -> Reply:
    """Serve ``data`` as a CDN does: all of it (200), or one ``Range: bytes=...`` (206/416).

    A Range header that is not a single well-formed byte range is ignored (RFC 9110).
    """
    sent = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
    wanted = next((v for k, v in headers.items() if k.lower() == "range"), None)
    found = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", wanted or "")
    if found is None or found.group(1) == found.group(2) == "":
        return Reply(200, data, sent)
    size = len(data)
    if found.group(1):  # bytes=START- or bytes=START-END
        start = int(found.group(1))
        end = min(int(found.group(2)), size - 1) if found.group(2) else size - 1
        if found.group(2) and int(found.group(2)) < start:
            return Reply(200, data, sent)  # invalid range: ignored
    else:  # bytes=-SUFFIX: the last SUFFIX bytes
        start, end = max(size - int(found.group(2)), 0), size - 1
        if int(found.group(2)) == 0:
            start = size  # an empty suffix selects nothing
    if start >= size:
        unsatisfiable = {"Content-Type": "text/plain", "Content-Range": f"bytes */{size}"}
        return Reply(416, b"416: Range Not Satisfiable", unsatisfiable)
    sent["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Reply(206, data[start : end + 1], sent)


def _flat_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    return {k: v for k, v in headers.items()}


async def _read_request(request: web.Request) -> Recorded:
    """Record a request: JSON body, or multipart ``payload_json`` + ``files[n]`` parts."""
    received_at = time.monotonic()
    path = request.path
    is_api = path.startswith(API_PREFIX)
    json_body: Any = None
    files: list[RecordedFile] = []
    raw = b""
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue  # nested multipart: discord.py never sends one
            data = await part.read(decode=False)
            name = part.name or ""
            if name == "payload_json":
                json_body = json.loads(bytes(data))
            elif part.filename is not None:
                files.append(
                    RecordedFile(
                        field=name,
                        filename=part.filename,
                        content_type=part.headers.get("Content-Type"),
                        data=bytes(data),
                    )
                )
    else:
        raw = await request.read()
        if raw and request.content_type == "application/json":
            json_body = json.loads(raw)
    return Recorded(
        index=-1,
        method=request.method,
        path=path[len(API_PREFIX) :] if is_api else path,
        query=dict(request.query),
        json=json_body,
        files=files,
        headers=_flat_headers(request.headers),
        received_at=received_at,
        received_wall=datetime.now(UTC),
        raw_body=raw,
        extra={"api": is_api},
    )
