"""Gateway side of the fake Discord: HELLO, heartbeats, IDENTIFY/READY, RESUME, dispatches.

Plain JSON text frames (discord.py asks for zlib-stream but only decompresses binary frames).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from .discord import FakeDiscord

OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE = 3
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

CLOSE_AUTHENTICATION_FAILED = 4004

# Flags of a verified-looking bot application (GATEWAY_GUILD_MEMBERS_LIMITED,
# GATEWAY_MESSAGE_CONTENT_LIMITED, APPLICATION_COMMAND_BADGE).
APPLICATION_FLAGS = (1 << 15) | (1 << 19) | (1 << 23)

_REPLAY_LIMIT = 500


class NoBotConnected(RuntimeError):
    """A dispatch was attempted while no bot had an identified gateway connection."""


@dataclass
class GatewaySession:
    """One identified gateway session (survives a dropped socket so the bot can RESUME)."""

    session_id: str
    identify: dict[str, Any]
    seq: int = 0
    ws: web.WebSocketResponse | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def live(self) -> bool:
        return self.ws is not None and not self.ws.closed

    def covers(self, guild_id: int | None) -> bool:
        """Whether Discord sends this guild's events (None: DMs) on this session's shard."""
        shard_id, shard_count = self.identify.get("shard") or (0, 1)
        if guild_id is None:
            return shard_id == 0
        return (guild_id >> 22) % shard_count == shard_id

    async def send_dispatch(self, event: str, data: Any) -> None:
        async with self.lock:
            self.seq += 1
            frame = {"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data}
            self.sent.append(frame)
            del self.sent[:-_REPLAY_LIMIT]
            if self.ws is None:
                raise ConnectionResetError("session has no socket")
            await self.ws.send_str(json.dumps(frame))


def _guild_of(event: str, data: Any) -> int | None:
    if not isinstance(data, dict):
        return None
    raw = data.get("guild_id") or (data.get("id") if event.startswith("GUILD_") else None)
    return int(raw) if raw is not None else None


class Gateway:
    """Serves ``/gateway`` for :class:`FakeDiscord` and tracks sessions."""

    def __init__(self, fake: FakeDiscord, *, heartbeat_interval_ms: int) -> None:
        self._fake = fake
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: dict[str, GatewaySession] = {}
        #: Every frame received from clients, in order (heartbeats included).
        self.received: list[dict[str, Any]] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self.on_change: Callable[[], None] = lambda: None

    @property
    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.live]

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: GatewaySession | None = None
        try:
            hello = {"op": OP_HELLO, "d": {"heartbeat_interval": self._heartbeat_interval_ms}}
            await ws.send_str(json.dumps(hello))
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                self.received.append(frame)
                session = await self._on_frame(ws, frame, session)
                self.on_change()
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            self.on_change()
        return ws

    async def _on_frame(
        self, ws: web.WebSocketResponse, frame: dict[str, Any], session: GatewaySession | None
    ) -> GatewaySession | None:
        op = frame.get("op")
        data = frame.get("d")
        if op == OP_HEARTBEAT:
            await ws.send_str(json.dumps({"op": OP_HEARTBEAT_ACK}))
        elif op == OP_IDENTIFY:
            if data.get("token") != self._fake.token:
                await ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed.")
                return session
            session = GatewaySession(session_id=secrets.token_hex(16), identify=data, ws=ws)
            self.sessions[session.session_id] = session
            await session.send_dispatch("READY", self._ready_payload(session))
            for guild in self._fake.guilds.values():
                if session.covers(guild.id):
                    await session.send_dispatch("GUILD_CREATE", guild.create_payload())
        elif op == OP_RESUME:
            known = self.sessions.get(data.get("session_id", ""))
            if known is None or data.get("token") != self._fake.token:
                # Not resumable: discord.py then sends a fresh IDENTIFY.
                await ws.send_str(json.dumps({"op": OP_INVALID_SESSION, "d": False}))
                return session
            session = known
            async with session.lock:
                session.ws = ws
                last = data.get("seq") or 0
                for old in session.sent:
                    if old["s"] > last:
                        await ws.send_str(json.dumps(old))
            await session.send_dispatch("RESUMED", {})
        elif op == OP_REQUEST_MEMBERS and session is not None:
            await self._send_member_chunk(session, data)
        # PRESENCE_UPDATE / VOICE_STATE_UPDATE: recorded in ``received``, nothing to answer.
        return session

    def _ready_payload(self, session: GatewaySession) -> dict[str, Any]:
        fake = self._fake
        user = fake.bot_user.payload()
        user.update({"verified": True, "mfa_enabled": False, "email": None, "bot": True})
        return {
            "v": 10,
            "user": user,
            "user_settings": {},
            "guilds": [
                {"id": str(g), "unavailable": True} for g in fake.guilds if session.covers(g)
            ],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": fake.gateway_url,
            "shard": session.identify.get("shard", [0, 1]),
            "application": {"id": str(fake.application_id), "flags": APPLICATION_FLAGS},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["rotterdam"],
            "auth": {},
            "_trace": ['["fake-gateway",{"micros":1}]'],
        }

    async def _send_member_chunk(self, session: GatewaySession, data: dict[str, Any]) -> None:
        guild_ids = data.get("guild_id")
        if not isinstance(guild_ids, list):
            guild_ids = [guild_ids]
        for raw in guild_ids:
            guild = self._fake.guilds.get(int(raw))
            if guild is None:
                continue
            wanted = {int(u) for u in data.get("user_ids") or ()}
            members = [m.payload() for m in guild.members.values() if not wanted or m.id in wanted]
            chunk = {
                "guild_id": str(guild.id),
                "members": members,
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
                "nonce": data.get("nonce"),
            }
            if data.get("presences"):
                chunk["presences"] = []
            await session.send_dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def dispatch(self, event: str, data: Any, *, required: bool = False) -> int:
        """Send a dispatch to every live session of the event's shard (a guild's events go to
        shard ``(guild_id >> 22) % shard_count``, DMs to shard 0); how many received it."""
        delivered = 0
        guild_id = _guild_of(event, data)
        for session in self.live_sessions:
            if not session.covers(guild_id):
                continue
            try:
                await session.send_dispatch(event, data)
            except (ConnectionResetError, RuntimeError):
                continue  # the socket closed under us; the bot will resume and get a replay
            delivered += 1
        if required and not delivered:
            raise NoBotConnected(f"no bot is connected to the fake gateway to receive {event}")
        return delivered

    async def send_op(self, op: int, data: Any = None) -> None:
        """Send a raw opcode (e.g. RECONNECT) to every live session."""
        for session in self.live_sessions:
            assert session.ws is not None
            await session.ws.send_str(json.dumps({"op": op, "d": data}))

    async def drop(self, code: int) -> None:
        """Close every live socket with ``code`` (sessions stay resumable)."""
        for ws in list(self._sockets):
            await ws.close(code=code)

    async def close(self) -> None:
        await self.drop(1001)
