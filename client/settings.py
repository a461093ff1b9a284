"""Settings for the RunComfy client, read from an environment mapping.

``env_str`` and ``env_int`` are the shared helpers every settings module uses, so a missing or
malformed setting always reads the same way: one line naming the variable and the problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, overload
from urllib.parse import urlsplit

DEFAULT_API_BASE: Final = "https://model-api.runcomfy.net"
DEFAULT_TEXT_TO_IMAGE_MODEL: Final = "google/nano-banana-2/text-to-image"
DEFAULT_EDIT_MODEL: Final = "google/nano-banana-2/edit"

# Model ids are path segments joined by slashes ("google/nano-banana-2/edit"); they go into the
# URL unquoted, so anything else is refused here rather than producing a wrong URL later.
_MODEL_ID = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


class SettingError(Exception):
    """A setting is missing or malformed. ``str()`` is one line: ``NAME: problem``."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@overload
def env_str(
    env: Mapping[str, str], name: str, default: None = None, *, required: Literal[True]
) -> str: ...
@overload
def env_str(env: Mapping[str, str], name: str, default: str, *, required: bool = False) -> str: ...
@overload
def env_str(
    env: Mapping[str, str], name: str, default: str | None = None, *, required: bool = False
) -> str | None: ...
def env_str(
    env: Mapping[str, str], name: str, default: str | None = None, *, required: bool = False
) -> str | None:
    """The stripped value of ``name``; an empty value counts as unset."""
    value = env.get(name, "").strip()
    if value:
        return value
    if required:
        raise SettingError(name, "is required")
    return default


def env_int(
    env: Mapping[str, str], name: str, default: int | None = None, *, minimum: int | None = None
) -> int | None:
    raw = env_str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(name, f"must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingError(name, f"must be at least {minimum}, got {value}")
    return value


def _api_base(env: Mapping[str, str], name: str) -> str:
    value = env_str(env, name, DEFAULT_API_BASE)
    problem = f"must be an http(s) URL like {DEFAULT_API_BASE}, got {value!r}"
    if any(ch.isspace() for ch in value):
        raise SettingError(name, problem)
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as err:  # e.g. "http://[::1": an unclosed IPv6 bracket
        raise SettingError(name, f"{problem} ({err})") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or port == 0
        or parts.query
        or parts.fragment
    ):
        raise SettingError(name, problem)
    if parts.username is not None or parts.password is not None:
        # The token goes in a header; credentials in the URL would end up in logs.
        raise SettingError(name, "must not contain a user name or password")
    return value.rstrip("/")


def _model_id(env: Mapping[str, str], name: str, default: str) -> str:
    value = env_str(env, name, default)
    if not _MODEL_ID.fullmatch(value):
        raise SettingError(name, f"must be a model id like {default!r}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class ClientSettings:
    api_token: str
    api_base: str = DEFAULT_API_BASE
    text_to_image_model: str = DEFAULT_TEXT_TO_IMAGE_MODEL
    edit_model: str = DEFAULT_EDIT_MODEL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClientSettings:
        """Read the ``RUNCOMFY_*`` variables; raises ``SettingError`` naming the first bad one."""
        token = env_str(env, "RUNCOMFY_API_TOKEN", required=True)
        if any(ch.isspace() for ch in token) or token.startswith(("'", '"')):
            # Usually a paste accident ("Bearer xyz", quotes kept from a shell line).
            raise SettingError(
                "RUNCOMFY_API_TOKEN", "must be the bare token (no spaces, quotes or 'Bearer')"
            )
        return cls(
            api_token=token,
            api_base=_api_base(env, "RUNCOMFY_API_BASE"),
            text_to_image_model=_model_id(
                env, "RUNCOMFY_TEXT_TO_IMAGE_MODEL", DEFAULT_TEXT_TO_IMAGE_MODEL
            ),
            edit_model=_model_id(env, "RUNCOMFY_EDIT_MODEL", DEFAULT_EDIT_MODEL),
        )
