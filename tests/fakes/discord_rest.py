"""REST side of the fake Discord: routes, message store rules, interaction callbacks, webhooks.

Handlers receive the :class:`Recorded` request and the path parameters and return a
:class:`Reply`; :class:`tests.fakes.discord.FakeDiscord` does the HTTP, auth and fault injection.
"""

from __future__ import annotations

import copy
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .discord_interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    CALLBACK_AUTOCOMPLETE,
    CALLBACK_DEFERRED_MESSAGE,
    CALLBACK_DEFERRED_UPDATE,
    CALLBACK_MESSAGE,
    CALLBACK_MODAL,
    CALLBACK_PONG,
    CALLBACK_UPDATE_MESSAGE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    PING,
    InteractionState,
)
from .discord_limits import (
    Problem,
    autocomplete_problem,
    command_problem,
    commands_problem,
    message_problem,
    modal_problem,
)
from .discord_models import (
    ATTACH_FILES,
    EMBED_LINKS,
    MANAGE_MESSAGES,
    MESSAGE_FLAG_COMPONENTS_V2,
    MESSAGE_FLAG_EPHEMERAL,
    MESSAGE_FLAG_LOADING,
    MESSAGE_FLAG_SUPPRESS_EMBEDS,
    MESSAGE_FLAG_SUPPRESS_NOTIFICATIONS,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    FakeAttachment,
    FakeChannel,
    FakeUser,
    StoredMessage,
    image_size,
    number_components,
    sniff_content_type,
)
from .discord_recording import Recorded, RecordedFile

if TYPE_CHECKING:
    from .discord import FakeDiscord

MAX_FILES = 10
#: Whole-request ceiling; a larger per-interaction ``attachment_size_limit`` raises it.
MAX_REQUEST_BYTES = 25 * 1024 * 1024
INTERACTION_TOKEN_LIFETIME = timedelta(minutes=15)

CHANNEL_FLAGS = MESSAGE_FLAG_SUPPRESS_EMBEDS | MESSAGE_FLAG_SUPPRESS_NOTIFICATIONS
CHANNEL_FLAGS |= MESSAGE_FLAG_COMPONENTS_V2
INTERACTION_FLAGS = CHANNEL_FLAGS | MESSAGE_FLAG_EPHEMERAL
EDITABLE_FLAGS = MESSAGE_FLAG_SUPPRESS_EMBEDS | MESSAGE_FLAG_COMPONENTS_V2


@dataclass
class Reply:
    """What the fake answers: status, JSON body (None for no body), extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    injected: str | None = None


def error(status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> Reply:
    """A Discord JSON error body (``{"message", "code"[, "errors"]}``)."""
    body: dict[str, Any] = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return Reply(status, body)


def invalid_form(field_name: str, code: str, message: str) -> Reply:
    return error(
        400,
        50035,
        "Invalid Form Body",
        {field_name: {"_errors": [{"code": code, "message": message}]}},
    )


def form_error(problem: Problem, *prefix: str) -> Reply:
    """400 50035 with Discord's nested ``errors`` naming the field (see discord_limits)."""
    return error(400, 50035, "Invalid Form Body", problem.under(*prefix).errors())


Handler = Callable[[Recorded, dict[str, str]], Awaitable[Reply]]


@dataclass
class RouteSpec:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool = True


class RestApi:
    """The REST routes of the fake, bound to one :class:`FakeDiscord`."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        app = r"/applications/(?P<app_id>\d+)(?:/guilds/(?P<guild_id>\d+))?/commands"
        hook = r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)"
        chan = r"/channels/(?P<channel_id>\d+)"
        table: list[tuple[str, str, Handler, bool]] = [
            ("GET", r"/users/@me", self.get_me, True),
            ("GET", r"/users/(?P<user_id>\d+)", self.get_user, True),
            ("POST", r"/users/@me/channels", self.create_dm, True),
            ("GET", r"/oauth2/applications/@me", self.get_application, True),
            ("GET", r"/applications/@me", self.get_application, True),
            ("GET", r"/gateway", self.get_gateway, False),
            ("GET", r"/gateway/bot", self.get_gateway_bot, True),
            ("GET", app, self.list_commands, True),
            ("PUT", app, self.overwrite_commands, True),
            ("POST", app, self.create_command, True),
            ("GET", app + r"/(?P<command_id>\d+)", self.get_command, True),
            ("PATCH", app + r"/(?P<command_id>\d+)", self.edit_command, True),
            ("DELETE", app + r"/(?P<command_id>\d+)", self.delete_command, True),
            (
                "POST",
                r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback",
                self.interaction_callback,
                False,
            ),
            ("POST", hook, self.execute_webhook, False),
            ("GET", hook + r"/messages/(?P<message_id>@original|\d+)", self.get_hook_msg, False),
            ("PATCH", hook + r"/messages/(?P<message_id>@original|\d+)", self.edit_hook_msg, False),
            ("DELETE", hook + r"/messages/(?P<message_id>@original|\d+)", self.del_hook_msg, False),
            ("GET", chan, self.get_channel, True),
            ("GET", chan + r"/messages", self.list_messages, True),
            ("POST", chan + r"/messages", self.create_message, True),
            ("GET", chan + r"/messages/(?P<message_id>\d+)", self.get_message, True),
            ("PATCH", chan + r"/messages/(?P<message_id>\d+)", self.edit_message, True),
            ("DELETE", chan + r"/messages/(?P<message_id>\d+)", self.delete_message, True),
            ("POST", chan + r"/typing", self.typing, True),
            ("GET", r"/guilds/(?P<guild_id>\d+)", self.get_guild, True),
            ("GET", r"/guilds/(?P<guild_id>\d+)/channels", self.get_guild_channels, True),
            ("GET", r"/guilds/(?P<guild_id>\d+)/roles", self.get_guild_roles, True),
            ("GET", r"/guilds/(?P<guild_id>\d+)/members/(?P<user_id>\d+)", self.get_member, True),
        ]
        self.routes = [RouteSpec(m, re.compile(p + r"/?$"), h, a) for m, p, h, a in table]

    def resolve(self, method: str, path: str) -> tuple[RouteSpec, dict[str, str]] | Reply:
        path_known = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            path_known = True
            if route.method == method:
                return route, {k: v for k, v in found.groupdict().items() if v is not None}
        if path_known:
            return error(405, 0, "405: Method Not Allowed")
        return error(404, 0, "404: Not Found")

    # -- users, application, gateway -------------------------------------------------------

    async def get_me(self, rec: Recorded, p: dict[str, str]) -> Reply:
        user = self.fake.bot_user.payload()
        user.update({"verified": True, "mfa_enabled": False, "email": None, "bot": True})
        return Reply(200, user)

    async def get_user(self, rec: Recorded, p: dict[str, str]) -> Reply:
        user = self.fake.users.get(int(p["user_id"]))
        return Reply(200, user.payload()) if user else error(404, 10013, "Unknown User")

    async def create_dm(self, rec: Recorded, p: dict[str, str]) -> Reply:
        body = rec.json if isinstance(rec.json, dict) else {}
        user = self.fake.users.get(int(body.get("recipient_id") or 0))
        if user is None:
            return invalid_form("recipient_id", "INVALID_RECIPIENT", "Invalid Recipient(s)")
        return Reply(200, self.fake.dm_channel(user).payload())

    async def get_application(self, rec: Recorded, p: dict[str, str]) -> Reply:
        fake = self.fake
        return Reply(
            200,
            {
                "id": str(fake.application_id),
                "name": fake.bot_user.username,
                "icon": None,
                "description": "A fake application",
                "summary": "",
                "type": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 0,
                "owner": fake.owner_user.payload(),
                "team": None,
                "bot": fake.bot_user.payload(),
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "tags": [],
                "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
                "integration_types_config": {"0": {}},
                "approximate_guild_count": len(fake.guilds),
            },
        )

    async def get_gateway(self, rec: Recorded, p: dict[str, str]) -> Reply:
        return Reply(200, {"url": self.fake.gateway_url})

    async def get_gateway_bot(self, rec: Recorded, p: dict[str, str]) -> Reply:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return Reply(200, {"url": self.fake.gateway_url, "shards": 1, "session_start_limit": limit})

    # -- application commands ----------------------------------------------------------------

    def _command_scope(self, p: dict[str, str]) -> tuple[int | None, dict[int, dict[str, Any]]]:
        if int(p["app_id"]) != self.fake.application_id:
            raise LookupError("unknown application")
        guild_id = int(p["guild_id"]) if "guild_id" in p else None
        return guild_id, self.fake.registered_commands.setdefault(guild_id, {})

    def _normalise_command(
        self, spec: dict[str, Any], guild_id: int | None, existing: dict[int, dict[str, Any]]
    ) -> dict[str, Any]:
        ctype = int(spec.get("type", 1))
        same = next(
            (c for c in existing.values() if c["name"] == spec["name"] and c["type"] == ctype),
            None,
        )
        command: dict[str, Any] = {
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            "contexts": None,
            "integration_types": [0],
        }
        command.update(copy.deepcopy(spec))
        command.update(
            {
                "id": str(same["id"] if same else self.fake.snowflake()),
                "application_id": str(self.fake.application_id),
                "version": str(self.fake.snowflake()),
                "type": ctype,
            }
        )
        if guild_id is not None:
            command["guild_id"] = str(guild_id)
        return command

    async def list_commands(self, rec: Recorded, p: dict[str, str]) -> Reply:
        try:
            _, store = self._command_scope(p)
        except LookupError:
            return error(404, 10002, "Unknown Application")
        return Reply(200, list(store.values()))

    async def overwrite_commands(self, rec: Recorded, p: dict[str, str]) -> Reply:
        try:
            guild_id, store = self._command_scope(p)
        except LookupError:
            return error(404, 10002, "Unknown Application")
        if not isinstance(rec.json, list):
            return invalid_form("_root", "LIST_TYPE_CONVERT", "Must be a list")
        problem = commands_problem(rec.json)
        if problem is not None:
            return form_error(problem)
        fresh = [self._normalise_command(spec, guild_id, store) for spec in rec.json]
        store.clear()
        store.update({int(c["id"]): c for c in fresh})
        self.fake.notify()
        return Reply(200, fresh)

    async def create_command(self, rec: Recorded, p: dict[str, str]) -> Reply:
        try:
            guild_id, store = self._command_scope(p)
        except LookupError:
            return error(404, 10002, "Unknown Application")
        problem = command_problem(rec.json if isinstance(rec.json, dict) else {})
        if problem is not None:
            return form_error(problem)
        command = self._normalise_command(rec.json, guild_id, store)
        created = int(command["id"]) not in store
        store[int(command["id"])] = command
        return Reply(201 if created else 200, command)

    async def get_command(self, rec: Recorded, p: dict[str, str]) -> Reply:
        try:
            _, store = self._command_scope(p)
        except LookupError:
            return error(404, 10002, "Unknown Application")
        command = store.get(int(p["command_id"]))
        return Reply(200, command) if command else error(404, 10063, "Unknown application command")

    async def edit_command(self, rec: Recorded, p: dict[str, str]) -> Reply:
        try:
            _, store = self._command_scope(p)
        except LookupError:
            return error(404, 10002, "Unknown Application")
        command = store.get(int(p["command_id"]))
        if command is None:
            return error(404, 10063, "Unknown application command")
        problem = command_problem(rec.json or {}, partial=True, command_type=command["type"])
        if problem is not None:
            return form_error(problem)
        command.update(rec.json or {})
        return Reply(200, command)

    async def delete_command(self, rec: Recorded, p: dict[str, str]) -> Reply:
        try:
            _, store = self._command_scope(p)
        except LookupError:
            return error(404, 10002, "Unknown Application")
        if store.pop(int(p["command_id"]), None) is None:
            return error(404, 10063, "Unknown application command")
        return Reply(204)

    # -- message building blocks ------------------------------------------------------------

    def validate(
        self,
        body: dict[str, Any],
        files: Sequence[RecordedFile],
        *,
        file_limit: int,
        creating: bool,
        prefix: tuple[str, ...] = (),
    ) -> Reply | None:
        """Discord's message limits; None when the message is acceptable.

        ``prefix`` is where the message sits in the request (``("data",)`` in a callback).
        """
        v2 = bool(int(body.get("flags") or 0) & MESSAGE_FLAG_COMPONENTS_V2)
        problem = message_problem(body, components_v2=v2)
        if problem is not None:
            return form_error(problem, *prefix)
        if len(files) > MAX_FILES or len(body.get("attachments") or ()) > MAX_FILES:
            return invalid_form(
                "attachments", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_FILES} or fewer in length."
            )
        if any(f.size > file_limit for f in files) or sum(f.size for f in files) > max(
            MAX_REQUEST_BYTES, file_limit
        ):
            return error(413, 40005, "Request entity too large")
        if creating:
            has_something = (
                bool(body.get("content"))
                or bool(body.get("embeds"))
                or bool(files)
                or bool(body.get("components"))
                or bool(body.get("sticker_ids"))
                or bool(body.get("poll"))
            )
            if not has_something:
                return error(400, 50006, "Cannot send an empty message")
        return None

    def _attachment(
        self, channel_id: int, part: RecordedFile, entry: dict[str, Any] | None, ephemeral: bool
    ) -> FakeAttachment:
        fake = self.fake
        aid = fake.snowflake()
        filename = (entry or {}).get("filename") or part.filename
        path = f"/attachments/{channel_id}/{aid}/{quote(filename)}"
        expires = int(time.time()) + 86_400
        signed = f"?ex={expires:x}&is={int(time.time()):x}&hm={secrets.token_hex(32)}&"
        size = image_size(part.data)
        attachment = FakeAttachment(
            id=aid,
            filename=filename,
            data=part.data,
            content_type=sniff_content_type(part.data, filename),
            size=part.size,
            url=fake.base_url + path + signed,
            proxy_url=fake.base_url + "/media" + path + signed,
            width=size[0] if size else None,
            height=size[1] if size else None,
            description=(entry or {}).get("description"),
            ephemeral=ephemeral,
            sent_content_type=part.content_type,
        )
        fake.attachments[aid] = attachment
        return attachment

    def _new_files(
        self, body: dict[str, Any], files: Sequence[RecordedFile]
    ) -> list[tuple[RecordedFile, dict[str, Any] | None]]:
        """Pair uploaded ``files[n]`` parts with their ``attachments`` entries (id == n)."""
        by_index: dict[int, RecordedFile] = {}
        for n, part in enumerate(files):
            found = re.fullmatch(r"files\[(\d+)\]", part.field)
            by_index[int(found.group(1)) if found else n] = part
        entries = body.get("attachments")
        if entries is None:
            return [(part, None) for part in by_index.values()]
        paired = []
        for entry in entries:
            try:
                index = int(entry.get("id"))
            except (TypeError, ValueError):
                continue
            if index in by_index:
                paired.append((by_index.pop(index), entry))
        paired.extend((part, None) for part in by_index.values())  # parts without an entry
        return paired

    def create_stored(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        author: FakeUser,
        body: dict[str, Any],
        files: Sequence[RecordedFile],
        origin: str,
        flags_mask: int,
        interaction: InteractionState | None = None,
        extra_flags: int = 0,
    ) -> StoredMessage:
        """Store a new message from a create-message body (validated by the caller)."""
        fake = self.fake
        flags = (int(body.get("flags") or 0) & flags_mask) | extra_flags
        ephemeral = bool(flags & MESSAGE_FLAG_EPHEMERAL)
        components = copy.deepcopy(body.get("components") or [])
        number_components(components)
        msg = StoredMessage(
            id=fake.snowflake(),
            channel_id=channel_id,
            guild_id=guild_id,
            author=author,
            origin=origin,
            content=str(body.get("content") or ""),
            embeds=copy.deepcopy(body.get("embeds") or []),
            components=components,
            flags=flags,
            allowed_mentions=body.get("allowed_mentions"),
            tts=bool(body.get("tts")),
            message_reference=body.get("message_reference"),
            payloads=[copy.deepcopy(body)],
        )
        msg.attachments = [
            self._attachment(channel_id, part, entry, ephemeral)
            for part, entry in self._new_files(body, files)
        ]
        if interaction is not None:
            msg.interaction_token = interaction.token
            msg.webhook_id = fake.application_id
            msg.application_id = fake.application_id
            msg.message_type = _message_type(interaction, origin)
            msg.interaction_metadata = _interaction_metadata(interaction)
        fake.messages[msg.id] = msg
        return msg

    def edit_stored(
        self, msg: StoredMessage, body: dict[str, Any], files: Sequence[RecordedFile]
    ) -> None:
        """Apply an edit-message body: present fields replace, attachments keep/append."""
        if "content" in body:
            msg.content = str(body["content"] or "")
        if "embeds" in body:
            msg.embeds = copy.deepcopy(body["embeds"] or [])
        if "components" in body:
            msg.components = copy.deepcopy(body["components"] or [])
            number_components(msg.components)
        if "allowed_mentions" in body:
            msg.allowed_mentions = body["allowed_mentions"]
        if body.get("flags") is not None:
            wanted = int(body["flags"]) & EDITABLE_FLAGS
            msg.flags = (msg.flags & ~EDITABLE_FLAGS) | wanted
        msg.flags &= ~MESSAGE_FLAG_LOADING
        entries = body.get("attachments")
        new = [
            self._attachment(msg.channel_id, part, entry, msg.ephemeral)
            for part, entry in self._new_files(body, files)
        ]
        if entries is not None:
            keep = {str(e.get("id")) for e in entries}
            msg.attachments = [a for a in msg.attachments if str(a.id) in keep]
        msg.attachments.extend(new)
        msg.edited_at = datetime.now(UTC)
        msg.payloads.append(copy.deepcopy(body))

    @staticmethod
    def _edit_leaves_empty(
        msg: StoredMessage, body: dict[str, Any], files: Sequence[RecordedFile]
    ) -> bool:
        """Whether applying this edit would leave a message with nothing in it."""
        content = body.get("content", msg.content)
        embeds = body.get("embeds", msg.embeds)
        components = body.get("components", msg.components)
        entries = body.get("attachments")
        if entries is None:
            kept = bool(msg.attachments)
        else:
            kept = any(str(a.id) in {str(e.get("id")) for e in entries} for a in msg.attachments)
        return not (content or embeds or components or kept or files)

    async def _announce(self, event: str, msg: StoredMessage) -> None:
        """MESSAGE_CREATE/UPDATE over the gateway, as Discord does for visible messages."""
        fake = self.fake
        if not fake.message_events or msg.ephemeral:
            return
        data = msg.payload(fake.users)
        guild = fake.guilds.get(msg.guild_id) if msg.guild_id is not None else None
        member = guild.members.get(msg.author.id) if guild else None
        if member is not None:
            data["member"] = member.payload(with_user=False)
        await fake.dispatch(event, data)

    async def announce_delete(self, msg: StoredMessage) -> None:
        fake = self.fake
        if not fake.message_events or msg.ephemeral:
            return
        data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
        await fake.dispatch("MESSAGE_DELETE", data)

    async def store_and_announce(self, **kwargs: Any) -> StoredMessage:
        msg = self.create_stored(**kwargs)
        await self._announce("MESSAGE_CREATE", msg)
        return msg

    def delete_stored(self, msg: StoredMessage) -> None:
        msg.deleted = True
        self.fake.messages.pop(msg.id, None)
        self.fake.deleted_messages[msg.id] = msg

    # -- interaction callbacks ---------------------------------------------------------------

    async def interaction_callback(self, rec: Recorded, p: dict[str, str]) -> Reply:
        fake = self.fake
        state = fake.interactions.get(p["token"])
        unknown = error(404, 10062, "Unknown interaction")
        if state is None or state.id != int(p["interaction_id"]):
            return unknown
        late = (
            fake.interaction_ack_timeout is not None
            and rec.received_at - state.dispatched_at > fake.interaction_ack_timeout
        )
        if state.unknown or state.expired_code or late:
            unknown.injected = "unknown_interaction" if state.unknown else "expired_token"
            return unknown
        if state.callback is not None:
            return error(400, 40060, "Interaction has already been acknowledged.")
        body = rec.json if isinstance(rec.json, dict) else {}
        ctype = int(body.get("type") or 0)
        data = body.get("data") or {}
        problem = _callback_type_problem(state, ctype)
        if problem is not None:
            return problem
        interaction_info: dict[str, Any] = {"id": str(state.id), "type": state.type}
        reply_body: dict[str, Any] = {"interaction": interaction_info}
        source = fake.messages.get(state.source_message_id or 0)

        if ctype in (CALLBACK_MESSAGE, CALLBACK_UPDATE_MESSAGE):
            problem = self.validate(
                data,
                rec.files,
                file_limit=state.attachment_size_limit,
                creating=ctype == CALLBACK_MESSAGE,
                prefix=("data",),
            )
            if problem is not None:
                return problem
        elif ctype in (CALLBACK_MODAL, CALLBACK_AUTOCOMPLETE):
            check = modal_problem if ctype == CALLBACK_MODAL else autocomplete_problem
            found = check(data)
            if found is not None:
                return form_error(found, "data")
        if ctype == CALLBACK_MESSAGE:
            msg = self.create_stored(
                channel_id=state.channel_id,
                guild_id=state.guild_id,
                author=fake.bot_user,
                body=data,
                files=rec.files,
                origin="interaction",
                flags_mask=INTERACTION_FLAGS,
                interaction=state,
            )
            state.original_message_id = msg.id
            reply_body["resource"] = {"type": ctype, "message": msg.payload(fake.users)}
        elif ctype == CALLBACK_DEFERRED_MESSAGE:
            msg = self.create_stored(
                channel_id=state.channel_id,
                guild_id=state.guild_id,
                author=fake.bot_user,
                body={"flags": data.get("flags") or 0},
                files=(),
                origin="interaction",
                flags_mask=MESSAGE_FLAG_EPHEMERAL,
                interaction=state,
                extra_flags=MESSAGE_FLAG_LOADING,
            )
            state.original_message_id = msg.id
            reply_body["resource"] = {"type": ctype, "message": msg.payload(fake.users)}
        elif ctype == CALLBACK_DEFERRED_UPDATE and state.source_message_id is None:
            msg = None  # e.g. a modal opened by a command: a plain acknowledgement
        elif ctype in (CALLBACK_DEFERRED_UPDATE, CALLBACK_UPDATE_MESSAGE):
            if state.source_message_id is None:
                return invalid_form("type", "INTERACTION_HAS_NO_MESSAGE", "No message to update")
            if source is None:  # the message was deleted meanwhile
                return error(404, 10008, "Unknown Message")
            state.original_message_id = source.id
            msg = source
            if ctype == CALLBACK_UPDATE_MESSAGE:
                self.edit_stored(source, data, rec.files)
                reply_body["resource"] = {"type": ctype, "message": source.payload(fake.users)}
        elif ctype == CALLBACK_MODAL:
            state.modal = copy.deepcopy(data)
            fake.modals[str(data.get("custom_id"))] = state
            msg = None
        elif ctype == CALLBACK_AUTOCOMPLETE:
            state.autocomplete_choices = list(data.get("choices") or [])
            msg = None
        else:
            msg = None
        if msg is not None:
            interaction_info.update(
                {
                    "response_message_id": str(msg.id),
                    "response_message_loading": msg.loading,
                    "response_message_ephemeral": msg.ephemeral,
                }
            )
        state.callback = rec
        state.callback_type = ctype
        if ctype == CALLBACK_MESSAGE and msg is not None:
            await self._announce("MESSAGE_CREATE", msg)
        elif ctype == CALLBACK_UPDATE_MESSAGE and msg is not None:
            await self._announce("MESSAGE_UPDATE", msg)
        return Reply(200, reply_body)

    # -- interaction webhooks ----------------------------------------------------------------

    def _token_state(self, p: dict[str, str]) -> InteractionState | Reply:
        fake = self.fake
        unknown = error(404, 10015, "Unknown Webhook")
        state = fake.interactions.get(p["token"])
        if int(p["app_id"]) != fake.application_id or state is None:
            return unknown
        if state.expired_code == 50027:
            reply = error(401, 50027, "Invalid Webhook Token")
            reply.injected = "expired_token"
            return reply
        if state.expired_code is not None:
            unknown.injected = "expired_token"
            return unknown
        if datetime.now(UTC) - state.created_at > INTERACTION_TOKEN_LIFETIME:
            unknown.injected = "expired_token"
            return unknown
        if state.callback is None:  # not acknowledged yet: Discord knows no webhook
            return unknown
        return state

    def _hook_message(self, state: InteractionState, message_id: str) -> StoredMessage | None:
        mid = state.original_message_id if message_id == "@original" else int(message_id)
        if mid is None or (mid != state.original_message_id and mid not in state.followup_ids):
            return None
        return self.fake.messages.get(mid)

    async def execute_webhook(self, rec: Recorded, p: dict[str, str]) -> Reply:
        state = self._token_state(p)
        if isinstance(state, Reply):
            return state
        fake = self.fake
        body = rec.json if isinstance(rec.json, dict) else {}
        wait = rec.query.get("wait", "").lower() in ("1", "true")
        original = fake.messages.get(state.original_message_id or 0)
        replaces_loading = (
            state.callback_type == CALLBACK_DEFERRED_MESSAGE
            and original is not None
            and original.loading
        )
        problem = self.validate(
            body, rec.files, file_limit=state.attachment_size_limit, creating=True
        )
        if problem is not None:
            return problem
        if replaces_loading:
            # Discord: the first followup after a deferred message edits the "thinking" message
            # and keeps the defer's ephemerality.
            assert original is not None
            edit = {k: v for k, v in body.items() if k != "flags"}
            self.edit_stored(original, edit, rec.files)
            msg = original
            await self._announce("MESSAGE_UPDATE", msg)
        else:
            msg = await self.store_and_announce(
                channel_id=state.channel_id,
                guild_id=state.guild_id,
                author=fake.bot_user,
                body=body,
                files=rec.files,
                origin="followup",
                flags_mask=INTERACTION_FLAGS,
                interaction=state,
            )
            state.followup_ids.append(msg.id)
        rec.extra["message_id"] = msg.id
        return Reply(200, msg.payload(fake.users)) if wait else Reply(204)

    async def get_hook_msg(self, rec: Recorded, p: dict[str, str]) -> Reply:
        state = self._token_state(p)
        if isinstance(state, Reply):
            return state
        msg = self._hook_message(state, p["message_id"])
        return (
            Reply(200, msg.payload(self.fake.users))
            if msg
            else error(404, 10008, "Unknown Message")
        )

    async def edit_hook_msg(self, rec: Recorded, p: dict[str, str]) -> Reply:
        state = self._token_state(p)
        if isinstance(state, Reply):
            return state
        msg = self._hook_message(state, p["message_id"])
        if msg is None:
            return error(404, 10008, "Unknown Message")
        return await self._edit_message(rec, msg, file_limit=state.attachment_size_limit)

    async def _edit_message(self, rec: Recorded, msg: StoredMessage, *, file_limit: int) -> Reply:
        """PATCH a stored message (through a webhook or the channel): validate, apply, announce."""
        body = rec.json if isinstance(rec.json, dict) else {}
        problem = self.validate(body, rec.files, file_limit=file_limit, creating=False)
        if problem is not None:
            return problem
        if self._edit_leaves_empty(msg, body, rec.files):
            return error(400, 50006, "Cannot send an empty message")
        self.edit_stored(msg, body, rec.files)
        rec.extra["message_id"] = msg.id
        await self._announce("MESSAGE_UPDATE", msg)
        return Reply(200, msg.payload(self.fake.users))

    async def del_hook_msg(self, rec: Recorded, p: dict[str, str]) -> Reply:
        state = self._token_state(p)
        if isinstance(state, Reply):
            return state
        msg = self._hook_message(state, p["message_id"])
        if msg is None:
            return error(404, 10008, "Unknown Message")
        self.delete_stored(msg)
        rec.extra["message_id"] = msg.id
        await self.announce_delete(msg)
        return Reply(204)

    # -- channels and messages ---------------------------------------------------------------

    def _channel_access(self, channel_id: str, needed: int) -> tuple[FakeChannel, int] | Reply:
        """The channel and the bot's permissions in it, or the error Discord gives."""
        fake = self.fake
        channel = fake.find_channel(int(channel_id))
        if channel is None:
            return error(404, 10003, "Unknown Channel")
        if channel.guild_id is None:
            recipient = channel.recipients[0] if channel.recipients else None
            if needed & SEND_MESSAGES and recipient and recipient.id in fake.dm_blocked:
                return error(403, 50007, "Cannot send messages to this user")
            return channel, ~0
        guild = fake.guilds[channel.guild_id]
        perms = guild.permissions_in(guild.member_for(fake.bot_user.id), channel)
        if not perms & VIEW_CHANNEL:
            return error(403, 50001, "Missing Access")
        if perms & needed != needed:
            return error(403, 50013, "Missing Permissions")
        return channel, perms

    async def get_channel(self, rec: Recorded, p: dict[str, str]) -> Reply:
        access = self._channel_access(p["channel_id"], VIEW_CHANNEL)
        if isinstance(access, Reply):
            return access
        return Reply(200, access[0].payload())

    async def typing(self, rec: Recorded, p: dict[str, str]) -> Reply:
        access = self._channel_access(p["channel_id"], SEND_MESSAGES)
        return access if isinstance(access, Reply) else Reply(204)

    def _channel_message(self, p: dict[str, str]) -> StoredMessage | None:
        msg = self.fake.messages.get(int(p["message_id"]))
        if msg is None or msg.ephemeral or msg.channel_id != int(p["channel_id"]):
            return None
        return msg

    async def list_messages(self, rec: Recorded, p: dict[str, str]) -> Reply:
        access = self._channel_access(p["channel_id"], VIEW_CHANNEL)
        if isinstance(access, Reply):
            return access
        limit = min(int(rec.query.get("limit", 50)), 100)
        before = int(rec.query.get("before", 0)) or None
        after = int(rec.query.get("after", 0)) or None
        found = [
            m
            for m in self.fake.messages_in(int(p["channel_id"]))
            if (before is None or m.id < before) and (after is None or m.id > after)
        ]
        found.sort(key=lambda m: m.id, reverse=True)
        return Reply(200, [m.payload(self.fake.users) for m in found[:limit]])

    async def create_message(self, rec: Recorded, p: dict[str, str]) -> Reply:
        body = rec.json if isinstance(rec.json, dict) else {}
        needed = VIEW_CHANNEL | SEND_MESSAGES | (ATTACH_FILES if rec.files else 0)
        access = self._channel_access(p["channel_id"], needed)
        if isinstance(access, Reply):
            return access
        channel, perms = access
        problem = self.validate(
            body, rec.files, file_limit=self.fake.attachment_size_limit, creating=True
        )
        if problem is not None:
            return problem
        if not perms & EMBED_LINKS:
            body = {**body, "embeds": []}  # Discord drops embeds the bot may not post
        msg = await self.store_and_announce(
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=self.fake.bot_user,
            body=body,
            files=rec.files,
            origin="channel",
            flags_mask=CHANNEL_FLAGS,
        )
        rec.extra["message_id"] = msg.id
        return Reply(200, msg.payload(self.fake.users))

    async def get_message(self, rec: Recorded, p: dict[str, str]) -> Reply:
        access = self._channel_access(p["channel_id"], VIEW_CHANNEL)
        if isinstance(access, Reply):
            return access
        msg = self._channel_message(p)
        return (
            Reply(200, msg.payload(self.fake.users))
            if msg
            else error(404, 10008, "Unknown Message")
        )

    async def edit_message(self, rec: Recorded, p: dict[str, str]) -> Reply:
        access = self._channel_access(p["channel_id"], VIEW_CHANNEL)
        if isinstance(access, Reply):
            return access
        msg = self._channel_message(p)
        if msg is None:
            return error(404, 10008, "Unknown Message")
        if msg.author.id != self.fake.bot_user.id:
            return error(403, 50005, "Cannot edit a message authored by another user")
        return await self._edit_message(rec, msg, file_limit=self.fake.attachment_size_limit)

    async def delete_message(self, rec: Recorded, p: dict[str, str]) -> Reply:
        access = self._channel_access(p["channel_id"], VIEW_CHANNEL)
        if isinstance(access, Reply):
            return access
        msg = self._channel_message(p)
        if msg is None:
            return error(404, 10008, "Unknown Message")
        if msg.author.id != self.fake.bot_user.id and not access[1] & MANAGE_MESSAGES:
            return error(403, 50013, "Missing Permissions")
        self.delete_stored(msg)
        rec.extra["message_id"] = msg.id
        await self.announce_delete(msg)
        return Reply(204)

    # -- guilds -------------------------------------------------------------------------------

    async def get_guild(self, rec: Recorded, p: dict[str, str]) -> Reply:
        guild = self.fake.guilds.get(int(p["guild_id"]))
        if guild is None:
            return error(404, 10004, "Unknown Guild")
        data = guild.create_payload()
        for key in ("members", "channels", "threads", "voice_states", "presences", "joined_at"):
            data.pop(key, None)
        return Reply(200, data)

    async def get_guild_channels(self, rec: Recorded, p: dict[str, str]) -> Reply:
        guild = self.fake.guilds.get(int(p["guild_id"]))
        if guild is None:
            return error(404, 10004, "Unknown Guild")
        return Reply(200, [c.payload() for c in guild.channels.values()])

    async def get_guild_roles(self, rec: Recorded, p: dict[str, str]) -> Reply:
        guild = self.fake.guilds.get(int(p["guild_id"]))
        if guild is None:
            return error(404, 10004, "Unknown Guild")
        return Reply(200, [r.payload() for r in guild.roles.values()])

    async def get_member(self, rec: Recorded, p: dict[str, str]) -> Reply:
        guild = self.fake.guilds.get(int(p["guild_id"]))
        if guild is None:
            return error(404, 10004, "Unknown Guild")
        member = guild.members.get(int(p["user_id"]))
        return Reply(200, member.payload()) if member else error(404, 10007, "Unknown Member")


def _callback_type_problem(state: InteractionState, ctype: int) -> Reply | None:
    """Which callback types Discord accepts for which interaction types."""
    allowed = {
        PING: {CALLBACK_PONG},
        APPLICATION_COMMAND: {CALLBACK_MESSAGE, CALLBACK_DEFERRED_MESSAGE, CALLBACK_MODAL},
        MESSAGE_COMPONENT: {
            CALLBACK_MESSAGE,
            CALLBACK_DEFERRED_MESSAGE,
            CALLBACK_DEFERRED_UPDATE,
            CALLBACK_UPDATE_MESSAGE,
            CALLBACK_MODAL,
        },
        AUTOCOMPLETE: {CALLBACK_AUTOCOMPLETE},
        MODAL_SUBMIT: {
            CALLBACK_MESSAGE,
            CALLBACK_DEFERRED_MESSAGE,
            CALLBACK_DEFERRED_UPDATE,
            CALLBACK_UPDATE_MESSAGE,
        },
    }.get(state.type, set())
    if ctype not in allowed:
        return invalid_form(
            "type", "INTERACTION_CALLBACK_TYPE_INVALID", f"Invalid callback type {ctype}"
        )
    return None


def _message_type(state: InteractionState, origin: str) -> int:
    if origin != "interaction" or state.type != APPLICATION_COMMAND:
        return 0
    command_type = (state.payload.get("data") or {}).get("type", 1)
    return 20 if command_type == 1 else 23  # CHAT_INPUT_COMMAND / CONTEXT_MENU_COMMAND


def _interaction_metadata(state: InteractionState) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": str(state.id),
        "type": state.type,
        "user": state.user.payload(),
        "authorizing_integration_owners": state.payload.get("authorizing_integration_owners", {}),
    }
    data = state.payload.get("data") or {}
    if state.type == APPLICATION_COMMAND:
        meta["name"] = data.get("name")
        meta["command_type"] = data.get("type", 1)
    if state.source_message_id is not None:
        meta["interacted_message_id"] = str(state.source_message_id)
    if state.original_message_id is not None:
        meta["original_response_message_id"] = str(state.original_message_id)
    return meta
