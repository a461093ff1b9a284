"""Interactions in the fake Discord: building INTERACTION_CREATE payloads and tracking responses.

:class:`SentInteraction` is what the ``FakeDiscord.slash_command`` / ``click_button`` / ...
helpers return; it exposes the callback the bot sent, the original response and followups.
"""

from __future__ import annotations

import base64
import copy
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .discord_models import (
    DM_APP_PERMISSIONS,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    StoredMessage,
    iter_components,
    number_components,
    snowflake_time,
)
from .discord_recording import Matcher, Recorded

if TYPE_CHECKING:
    from .discord import FakeDiscord

# Interaction types.
PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Interaction callback types.
CALLBACK_PONG = 1
CALLBACK_MESSAGE = 4
CALLBACK_DEFERRED_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE = 6
CALLBACK_UPDATE_MESSAGE = 7
CALLBACK_AUTOCOMPLETE = 8
CALLBACK_MODAL = 9

# Application command option types.
OPT_SUB_COMMAND = 1
OPT_SUB_COMMAND_GROUP = 2
OPT_STRING = 3
OPT_INTEGER = 4
OPT_BOOLEAN = 5
OPT_USER = 6
OPT_CHANNEL = 7
OPT_ROLE = 8
OPT_MENTIONABLE = 9
OPT_NUMBER = 10
OPT_ATTACHMENT = 11

#: Per-file upload limit of an interaction when none is given (10 MiB).
DEFAULT_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024

UserLike = FakeUser | FakeMember | int


@dataclass
class InteractionState:
    """The fake's bookkeeping for one interaction (internal; tests use SentInteraction)."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    guild_id: int | None
    channel_id: int
    user: FakeUser
    dispatched_at: float
    attachment_size_limit: int
    source_message_id: int | None = None
    callback: Recorded | None = None
    callback_type: int | None = None
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    autocomplete_choices: list[dict[str, Any]] | None = None
    expired_code: int | None = None
    unknown: bool = False

    @property
    def created_at(self) -> datetime:
        return snowflake_time(self.id)


class SentInteraction:
    """An interaction the fake dispatched, and everything the bot did in response.

    Properties read the current state; ``wait_*`` methods block (event-driven) until the bot
    did the thing, raising ``TimeoutError`` after ``timeout`` seconds.

    Discord behaviours worth knowing when asserting:

    * After a deferred *message* response (callback type 5, ``interaction.response.defer()``
      on a command or ``thinking=True``), the bot's first followup does not create a message: it
      replaces the "thinking..." original (keeping the defer's ephemerality). It shows up in
      ``original``, not in ``followups``.
    * For component/modal interactions answered with type 6 or 7, ``original`` is the message the
      component is on.
    """

    def __init__(self, fake: FakeDiscord, state: InteractionState, mark: int) -> None:
        self._fake = fake
        self._state = state
        self._mark = mark

    def __repr__(self) -> str:
        return f"<SentInteraction id={self.id} type={self.type} callback_type={self.callback_type}>"

    @property
    def id(self) -> int:
        return self._state.id

    @property
    def token(self) -> str:
        return self._state.token

    @property
    def type(self) -> int:
        """Interaction type: 2 command, 3 component, 4 autocomplete, 5 modal submit."""
        return self._state.type

    @property
    def payload(self) -> dict[str, Any]:
        """The INTERACTION_CREATE data exactly as dispatched."""
        return self._state.payload

    @property
    def user(self) -> FakeUser:
        return self._state.user

    @property
    def callback(self) -> Recorded | None:
        """The accepted callback request (POST /interactions/{id}/{token}/callback), if any."""
        return self._state.callback

    @property
    def callback_type(self) -> int | None:
        """4 message, 5 deferred message, 6 deferred update, 7 update, 8 autocomplete, 9 modal."""
        return self._state.callback_type

    @property
    def callback_data(self) -> dict[str, Any] | None:
        """The ``data`` object of the callback body (message fields, modal, choices)."""
        cb = self._state.callback
        if cb is None or not isinstance(cb.json, dict):
            return None
        return cb.json.get("data")

    @property
    def callback_delay(self) -> float | None:
        """Seconds between dispatch and the callback's arrival (for bench scripts)."""
        cb = self._state.callback
        return None if cb is None else cb.received_at - self._state.dispatched_at

    @property
    def ephemeral(self) -> bool:
        """Whether the callback asked for an ephemeral response (flags & 64)."""
        data = self.callback_data or {}
        return bool(int(data.get("flags") or 0) & 64)

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened (callback type 9 data: custom_id, title, components)."""
        return self._state.modal

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        """Autocomplete choices the bot returned (callback type 8)."""
        return self._state.autocomplete_choices

    @property
    def original(self) -> StoredMessage | None:
        """Current state of the original response message (None if none or deleted)."""
        mid = self._state.original_message_id
        return None if mid is None else self._fake.messages.get(mid)

    @property
    def followups(self) -> list[StoredMessage]:
        """Live followup messages created with this token, oldest first."""
        return [
            self._fake.messages[m] for m in self._state.followup_ids if m in self._fake.messages
        ]

    @property
    def messages(self) -> list[StoredMessage]:
        """Original response (if any) followed by the followups."""
        original = self.original
        return ([original] if original else []) + self.followups

    @property
    def requests(self) -> list[Recorded]:
        """Every request made with this interaction's token (callback and webhook routes)."""
        return [r for r in self._fake.requests[self._mark :] if self.token in r.path]

    async def wait_for_callback(self, *, timeout: float = 15.0) -> Recorded:  # noqa: ASYNC109
        """Wait until the bot acknowledged the interaction; returns the callback request."""
        return await self._fake.wait_until(
            lambda: self._state.callback, timeout=timeout, describe=f"callback for {self!r}"
        )

    async def wait_for_original(
        self,
        predicate: Callable[[StoredMessage], bool] | None = None,
        *,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        """Wait for the original response to satisfy ``predicate``.

        The default predicate is "exists and is not the deferred 'thinking...' placeholder".
        """
        check = predicate or (lambda m: not m.loading)

        def ready() -> StoredMessage | None:
            msg = self.original
            return msg if msg is not None and check(msg) else None

        return await self._fake.wait_until(
            ready, timeout=timeout, describe=f"original response of {self!r}"
        )

    async def wait_for_followups(
        self,
        count: int = 1,
        *,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> list[StoredMessage]:
        """Wait until at least ``count`` followup messages exist; returns them all."""

        def ready() -> list[StoredMessage] | None:
            found = self.followups
            return found if len(found) >= count else None

        return await self._fake.wait_until(
            ready, timeout=timeout, describe=f"{count} followup(s) of {self!r}"
        )

    async def wait_for_message(
        self,
        predicate: Callable[[StoredMessage], bool],
        *,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        """Wait until the original or a followup satisfies ``predicate``."""
        return await self._fake.wait_until(
            lambda: next((m for m in self.messages if predicate(m)), None),
            timeout=timeout,
            describe=f"a message of {self!r} matching {predicate!r}",
        )

    async def wait_for_request(self, matcher: Matcher, *, timeout: float = 15.0) -> Recorded:  # noqa: ASYNC109
        """Wait for a request with this interaction's token that matches ``matcher``."""
        return await self._fake.wait_until(
            lambda: next((r for r in self.requests if r.matches(matcher)), None),
            timeout=timeout,
            describe=f"request {matcher!r} for {self!r}",
        )


# --------------------------------------------------------------------------------------------
# Payload building
# --------------------------------------------------------------------------------------------


def new_token(interaction_id: int) -> str:
    """An interaction token shaped like Discord's: URL-safe base64 of ``interaction:<id>:...``."""
    raw = f"interaction:{interaction_id}:{secrets.token_urlsafe(96)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def infer_option_type(value: Any) -> int:
    if isinstance(value, FakeAttachment):
        return OPT_ATTACHMENT
    if isinstance(value, bool):
        return OPT_BOOLEAN
    if isinstance(value, int):
        return OPT_INTEGER
    if isinstance(value, float):
        return OPT_NUMBER
    if isinstance(value, FakeUser | FakeMember):
        return OPT_USER
    if isinstance(value, FakeRole):
        return OPT_ROLE
    if isinstance(value, FakeChannel):
        return OPT_CHANNEL
    return OPT_STRING


class Resolved:
    """Accumulates ``data.resolved`` while options are converted."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def add(self, kind: str, key: int, value: dict[str, Any]) -> None:
        self.data.setdefault(kind, {})[str(key)] = value


class PayloadBuilder:
    """Turns test-friendly arguments into the payloads Discord would dispatch."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake

    # -- users and members ----------------------------------------------------------------

    def member(
        self,
        guild: FakeGuild,
        user: UserLike | None,
        roles: Sequence[int | FakeRole] | None,
    ) -> FakeMember:
        """The invoking member: an existing one, or an ad-hoc one for an unknown user."""
        if user is None:
            if guild.member is not None:
                found = guild.member
            else:
                found = next(m for m in guild.members.values() if not m.user.bot)
        elif isinstance(user, FakeMember):
            found = user
        else:
            known = user if isinstance(user, FakeUser) else self._fake.user(int(user))
            found = guild.members.get(known.id) or FakeMember(user=known)
        if roles is not None:
            role_ids = [r.id if isinstance(r, FakeRole) else int(r) for r in roles]
            found = FakeMember(
                user=found.user, role_ids=role_ids, nick=found.nick, joined_at=found.joined_at
            )
        return found

    def user(self, user: UserLike | None) -> FakeUser:
        if user is None:
            raise ValueError("a DM interaction needs an explicit user=")
        if isinstance(user, FakeMember):
            return user.user
        if isinstance(user, FakeUser):
            return user
        return self._fake.user(int(user))

    # -- the envelope ---------------------------------------------------------------------

    def envelope(
        self,
        *,
        type: int,
        data: dict[str, Any] | None,
        user: UserLike | None,
        guild_id: int | None,
        channel_id: int | None,
        message: StoredMessage | None = None,
        member_permissions: int | None = None,
        roles: Sequence[int | FakeRole] | None = None,
        locale: str = "en-US",
        attachment_size_limit: int | None = None,
        created_at: datetime | None = None,
    ) -> InteractionState:
        """Build a complete INTERACTION_CREATE and the state the fake keeps for it."""
        fake = self._fake
        iid = fake.snowflake(created_at)
        token = new_token(iid)
        limit = attachment_size_limit or fake.attachment_size_limit
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(fake.application_id),
            "type": type,
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": limit,
        }
        if data is not None:
            payload["data"] = data
        if guild_id is not None:
            guild = fake.guilds[guild_id]
            channel = guild.channels.get(channel_id) if channel_id else guild.text_channel
            if channel is None:
                raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
            member = self.member(guild, user, roles)
            perms = (
                guild.permissions_in(member, channel)
                if member_permissions is None
                else int(member_permissions)
            )
            bot_perms = guild.permissions_in(guild.member_for(fake.bot_user.id), channel)
            member_payload = member.payload()
            member_payload["permissions"] = str(perms)
            channel_payload = channel.payload()
            channel_payload["permissions"] = str(perms)
            payload.update(
                {
                    "guild_id": str(guild.id),
                    "guild": {
                        "id": str(guild.id),
                        "locale": guild.locale,
                        "features": ["COMMUNITY"],
                    },
                    "guild_locale": guild.locale,
                    "channel_id": str(channel.id),
                    "channel": channel_payload,
                    "member": member_payload,
                    "app_permissions": str(bot_perms),
                    "authorizing_integration_owners": {"0": str(guild.id)},
                    "context": 0,
                }
            )
            invoker = member.user
        else:
            invoker = self.user(user)
            channel = fake.dm_channel(invoker)
            if channel_id is not None and channel_id != channel.id:
                raise ValueError("channel_id of a DM interaction must be the user's DM channel")
            channel_payload = channel.payload()
            channel_payload["permissions"] = str(DM_APP_PERMISSIONS)
            payload.update(
                {
                    "channel_id": str(channel.id),
                    "channel": channel_payload,
                    "user": invoker.payload(),
                    "app_permissions": str(DM_APP_PERMISSIONS),
                    "authorizing_integration_owners": {"0": "0"},
                    "context": 1,
                }
            )
        if message is not None:
            payload["message"] = message.payload(fake.users)
        return InteractionState(
            id=iid,
            token=token,
            type=type,
            payload=payload,
            guild_id=guild_id,
            channel_id=channel.id,
            user=invoker,
            dispatched_at=time.monotonic(),
            attachment_size_limit=limit,
            source_message_id=message.id if message is not None else None,
        )

    # -- application commands -------------------------------------------------------------

    def command_data(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        guild_id: int | None,
        command_type: int = 1,
        focused: str | None = None,
    ) -> dict[str, Any]:
        """``data`` of a chat-input command; ``name`` may be ``"group sub command"``.

        With ``focused`` (autocomplete) required options may be missing and the focused
        option's value is sent as the partial text typed so far.
        """
        root, *path = name.split()
        definition, registered_guild = self._fake.find_command(root, command_type, guild_id)
        data: dict[str, Any] = {
            "id": str(definition["id"]) if definition else str(self._fake.snowflake()),
            "name": root,
            "type": command_type,
        }
        if registered_guild is not None:
            data["guild_id"] = str(registered_guild)
        resolved = Resolved()
        container = data
        current = definition
        for depth, sub in enumerate(path):
            sub_def = _find_option(current, sub) if current else None
            if current is not None and sub_def is None:
                raise ValueError(f"/{name}: {sub!r} is not a subcommand of the registered command")
            if sub_def is not None:
                sub_type = sub_def["type"]
            else:
                sub_type = OPT_SUB_COMMAND if depth == len(path) - 1 else OPT_SUB_COMMAND_GROUP
            node: dict[str, Any] = {"name": sub, "type": sub_type, "options": []}
            container.setdefault("options", []).append(node)
            container, current = node, sub_def
        leaf_options = self._convert_options(name, current, options, guild_id, resolved, focused)
        if leaf_options or container is data:
            container["options"] = leaf_options
        if resolved.data:
            data["resolved"] = resolved.data
        return data

    def _convert_options(
        self,
        name: str,
        definition: Mapping[str, Any] | None,
        options: Mapping[str, Any],
        guild_id: int | None,
        resolved: Resolved,
        focused: str | None = None,
    ) -> list[dict[str, Any]]:
        known = {o["name"]: o for o in definition.get("options", ())} if definition else {}
        if definition is not None:
            unknown = set(options) - set(known)
            if unknown:
                raise ValueError(
                    f"/{name}: unknown option(s) {sorted(unknown)}; has {sorted(known)}"
                )
            missing = [n for n, o in known.items() if o.get("required") and n not in options]
            if missing and focused is None:
                raise ValueError(f"/{name}: missing required option(s) {missing}")
        converted = []
        for opt_name, value in options.items():
            opt_type = known[opt_name]["type"] if opt_name in known else infer_option_type(value)
            option: dict[str, Any] = {"name": opt_name, "type": opt_type}
            if opt_name == focused:
                option["value"] = str(value)
                option["focused"] = True
            else:
                if opt_name in known:
                    _check_option(name, known[opt_name], value)
                option["value"] = self.option_value(opt_type, value, guild_id, resolved)
            converted.append(option)
        return converted

    def option_value(self, opt_type: int, value: Any, guild_id: int | None, res: Resolved) -> Any:
        """Convert one option value, adding what it refers to into ``resolved``."""
        if opt_type == OPT_STRING:
            return str(value)
        if opt_type == OPT_INTEGER:
            return int(value)
        if opt_type == OPT_BOOLEAN:
            return bool(value)
        if opt_type == OPT_NUMBER:
            return float(value)
        if opt_type == OPT_ATTACHMENT:
            if not isinstance(value, FakeAttachment):
                raise TypeError("attachment options take a FakeAttachment (fake.make_attachment)")
            res.add("attachments", value.id, value.payload())
            return str(value.id)
        if opt_type == OPT_ROLE or (opt_type == OPT_MENTIONABLE and isinstance(value, FakeRole)):
            role = (
                value if isinstance(value, FakeRole) else self._fake.guilds[guild_id].roles[value]
            )
            res.add("roles", role.id, role.payload())
            return str(role.id)
        if opt_type in (OPT_USER, OPT_MENTIONABLE):
            self.resolve_user(value, guild_id, res)
            return str(value.id if isinstance(value, FakeUser | FakeMember) else int(value))
        if opt_type == OPT_CHANNEL:
            channel = value if isinstance(value, FakeChannel) else self._fake.channel(int(value))
            data = channel.payload()
            data["permissions"] = str(DM_APP_PERMISSIONS if channel.type == 1 else 0)
            res.add("channels", channel.id, data)
            return str(channel.id)
        return value

    def resolve_user(self, value: UserLike, guild_id: int | None, res: Resolved) -> None:
        user = self.user(value)
        res.add("users", user.id, user.payload())
        guild = self._fake.guilds.get(guild_id) if guild_id is not None else None
        member = guild.members.get(user.id) if guild else None
        if member is not None:
            data = member.payload(with_user=False)
            data["permissions"] = str(guild.base_permissions(member))  # type: ignore[union-attr]
            res.add("members", user.id, data)

    def message_command_data(
        self, name: str, target: StoredMessage, *, guild_id: int | None
    ) -> dict[str, Any]:
        definition, registered_guild = self._fake.find_command(name, 3, guild_id)
        data: dict[str, Any] = {
            "id": str(definition["id"]) if definition else str(self._fake.snowflake()),
            "name": name,
            "type": 3,
            "target_id": str(target.id),
            "resolved": {"messages": {str(target.id): target.payload(self._fake.users)}},
        }
        if registered_guild is not None:
            data["guild_id"] = str(registered_guild)
        return data

    def user_command_data(
        self, name: str, target: UserLike, *, guild_id: int | None
    ) -> dict[str, Any]:
        definition, registered_guild = self._fake.find_command(name, 2, guild_id)
        resolved = Resolved()
        self.resolve_user(target, guild_id, resolved)
        target_id = self.user(target).id
        data: dict[str, Any] = {
            "id": str(definition["id"]) if definition else str(self._fake.snowflake()),
            "name": name,
            "type": 2,
            "target_id": str(target_id),
            "resolved": resolved.data,
        }
        if registered_guild is not None:
            data["guild_id"] = str(registered_guild)
        return data

    # -- components and modals ------------------------------------------------------------

    @staticmethod
    def component_data(
        message: StoredMessage, custom_id: str, *, values: Sequence[str] | None, kind: str
    ) -> dict[str, Any]:
        comp = message.find_component(custom_id)
        if comp is None:
            raise ValueError(
                f"message {message.id} has no component {custom_id!r}; has {message.custom_ids()}"
            )
        if comp.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled: a user cannot use it")
        if kind == "button" and comp.get("type") != 2:
            raise ValueError(f"component {custom_id!r} is not a button (type {comp.get('type')})")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"]}
        if "id" in comp:
            data["id"] = comp["id"]
        if values is not None:
            data["values"] = list(values)
        return data

    def modal_components(
        self,
        modal: Mapping[str, Any] | None,
        values: Mapping[str, Any],
        res: Resolved,
        guild_id: int | None,
    ) -> list[dict[str, Any]]:
        """What a user submitting ``modal`` with ``values`` (by custom_id) sends back."""
        if modal is None:  # unknown modal: the current Discord shape (Label + text input)
            out: list[dict[str, Any]] = []
            for n, (custom_id, value) in enumerate(values.items()):
                child = {"type": 4, "id": 2 * n + 2, "custom_id": custom_id, "value": str(value)}
                out.append({"type": 18, "id": 2 * n + 1, "component": child})
            return out
        components = copy.deepcopy(list(modal.get("components", ())))
        number_components(components)
        present = {c["custom_id"] for c in iter_components(components) if "custom_id" in c}
        unknown = set(values) - present
        if unknown:
            raise ValueError(f"modal has no input(s) {sorted(unknown)}; has {sorted(present)}")
        return [self._submitted(c, values, res, guild_id) for c in components]

    def _submitted(
        self, comp: Mapping[str, Any], values: Mapping[str, Any], res: Resolved, gid: int | None
    ) -> dict[str, Any]:
        ctype = comp["type"]
        if ctype == 1:
            children = [self._submitted(c, values, res, gid) for c in comp.get("components", ())]
            return {"type": 1, "id": comp["id"], "components": children}
        if ctype == 18:
            child = self._submitted(comp["component"], values, res, gid)
            return {"type": 18, "id": comp["id"], "component": child}
        if ctype == 10:
            return {"type": 10, "id": comp["id"], "content": comp.get("content", "")}
        out: dict[str, Any] = {"type": ctype, "id": comp["id"], "custom_id": comp.get("custom_id")}
        given = values.get(comp.get("custom_id", ""))
        if ctype == 4:
            text = str(given) if given is not None else str(comp.get("value") or "")
            _check_text_input(comp, text)
            out["value"] = text
        elif ctype == 23:
            out["value"] = bool(given)
        elif ctype == 21:
            out["value"] = given
        else:  # selects (3, 5-8), file upload (19), checkbox group (22): a list of values
            items = list(given or ())
            out["values"] = [self.select_value(ctype, v, gid, res) for v in items]
        return out

    def select_value(self, ctype: int, value: Any, gid: int | None, res: Resolved) -> str:
        if isinstance(value, FakeAttachment):
            res.add("attachments", value.id, value.payload())
            return str(value.id)
        if ctype == 5 or isinstance(value, FakeUser | FakeMember):
            return self.option_value(OPT_USER, value, gid, res)
        if ctype == 6 or isinstance(value, FakeRole):
            return self.option_value(OPT_ROLE, value, gid, res)
        if ctype == 8 or isinstance(value, FakeChannel):
            return self.option_value(OPT_CHANNEL, value, gid, res)
        return str(value)


def _find_option(definition: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    return next(
        (
            o
            for o in definition.get("options", ())
            if o["name"] == name and o["type"] in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP)
        ),
        None,
    )


def _check_option(command: str, spec: Mapping[str, Any], value: Any) -> None:
    """The Discord client only lets users send values the definition allows."""
    where = f"/{command} {spec['name']}"
    choices = spec.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise ValueError(f"{where}: {value!r} is not one of the choices {choices}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.get("min_value") is not None and value < spec["min_value"]:
            raise ValueError(f"{where}: {value} is below min_value {spec['min_value']}")
        if spec.get("max_value") is not None and value > spec["max_value"]:
            raise ValueError(f"{where}: {value} is above max_value {spec['max_value']}")
    if isinstance(value, str):
        if spec.get("min_length") is not None and len(value) < spec["min_length"]:
            raise ValueError(f"{where}: shorter than min_length {spec['min_length']}")
        if spec.get("max_length") is not None and len(value) > spec["max_length"]:
            raise ValueError(f"{where}: longer than max_length {spec['max_length']}")


def _check_text_input(comp: Mapping[str, Any], text: str) -> None:
    """A Discord client refuses to submit a modal that breaks these, so tests should too."""
    cid = comp.get("custom_id")
    if comp.get("required", True) and not text:
        raise ValueError(f"text input {cid!r} is required")
    if text and comp.get("min_length") and len(text) < comp["min_length"]:
        raise ValueError(f"text input {cid!r} needs at least {comp['min_length']} characters")
    if comp.get("max_length") and len(text) > comp["max_length"]:
        raise ValueError(f"text input {cid!r} takes at most {comp['max_length']} characters")
