"""Settings: defaults, and one clear line naming a missing or malformed variable."""

from __future__ import annotations

import pytest

from client.settings import ClientSettings, SettingError, env_int, env_str

TOKEN = {"RUNCOMFY_API_TOKEN": "rc-123"}


def test_defaults() -> None:
    assert ClientSettings.from_env(TOKEN) == ClientSettings(
        api_token="rc-123",
        api_base="https://model-api.runcomfy.net",
        text_to_image_model="google/nano-banana-2/text-to-image",
        edit_model="google/nano-banana-2/edit",
    )


def test_everything_can_be_overridden() -> None:
    settings = ClientSettings.from_env(
        {
            "RUNCOMFY_API_TOKEN": "  rc-456 ",
            "RUNCOMFY_API_BASE": "http://127.0.0.1:8765/",
            "RUNCOMFY_TEXT_TO_IMAGE_MODEL": "google/nano-banana-pro/text-to-image",
            "RUNCOMFY_EDIT_MODEL": "acme/edit-v1.5",
        }
    )
    assert settings.api_token == "rc-456"
    assert settings.api_base == "http://127.0.0.1:8765"  # trailing slash dropped
    assert settings.text_to_image_model == "google/nano-banana-pro/text-to-image"
    assert settings.edit_model == "acme/edit-v1.5"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "RUNCOMFY_API_TOKEN: is required"),
        ({"RUNCOMFY_API_TOKEN": "   "}, "RUNCOMFY_API_TOKEN: is required"),
        ({"RUNCOMFY_API_TOKEN": "Bearer rc-1"}, "RUNCOMFY_API_TOKEN: must be the bare token"),
        ({"RUNCOMFY_API_TOKEN": '"rc-1"'}, "RUNCOMFY_API_TOKEN: must be the bare token"),
        ({**TOKEN, "RUNCOMFY_API_BASE": "model-api.runcomfy.net"}, "RUNCOMFY_API_BASE: must be"),
        ({**TOKEN, "RUNCOMFY_API_BASE": "ftp://x.net"}, "RUNCOMFY_API_BASE: must be"),
        ({**TOKEN, "RUNCOMFY_API_BASE": "https://x.net?a=1"}, "RUNCOMFY_API_BASE: must be"),
        ({**TOKEN, "RUNCOMFY_API_BASE": "http://[::1"}, "RUNCOMFY_API_BASE: must be"),
        ({**TOKEN, "RUNCOMFY_API_BASE": "http://127.0.0.1:99999"}, "RUNCOMFY_API_BASE: must be"),
        ({**TOKEN, "RUNCOMFY_API_BASE": "http://127.0.0.1:abc"}, "RUNCOMFY_API_BASE: must be"),
        ({**TOKEN, "RUNCOMFY_API_BASE": "http://127.0.0.1:0"}, "RUNCOMFY_API_BASE: must be"),
        ({**TOKEN, "RUNCOMFY_API_BASE": "http://:8765"}, "RUNCOMFY_API_BASE: must be"),
        ({**TOKEN, "RUNCOMFY_API_BASE": "http://exa mple.net"}, "RUNCOMFY_API_BASE: must be"),
        (
            {**TOKEN, "RUNCOMFY_API_BASE": "http://u:p@host"},
            "RUNCOMFY_API_BASE: must not contain a user name or password",
        ),
        (
            {**TOKEN, "RUNCOMFY_API_BASE": "https://token@host"},
            "RUNCOMFY_API_BASE: must not contain a user name or password",
        ),
        ({**TOKEN, "RUNCOMFY_EDIT_MODEL": "/google/edit"}, "RUNCOMFY_EDIT_MODEL: must be"),
        ({**TOKEN, "RUNCOMFY_EDIT_MODEL": "google//edit"}, "RUNCOMFY_EDIT_MODEL: must be"),
        (
            {**TOKEN, "RUNCOMFY_TEXT_TO_IMAGE_MODEL": "google/nano banana"},
            "RUNCOMFY_TEXT_TO_IMAGE_MODEL: must be",
        ),
    ],
)
def test_bad_settings_name_the_variable_in_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError) as caught:
        ClientSettings.from_env(env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert caught.value.name == message.split(":")[0]


def test_ipv6_and_ports_are_fine() -> None:
    for base in ("http://[::1]:8765", "https://model-api.runcomfy.net:443/prefix"):
        assert ClientSettings.from_env({**TOKEN, "RUNCOMFY_API_BASE": base}).api_base == base


def test_env_str() -> None:
    env = {"A": " x ", "EMPTY": " "}
    assert env_str(env, "A") == "x"
    assert env_str(env, "EMPTY", "d") == "d"
    assert env_str(env, "MISSING") is None
    with pytest.raises(SettingError, match=r"^MISSING: is required$"):
        env_str(env, "MISSING", required=True)


def test_env_int() -> None:
    env = {"N": "12", "BAD": "twelve", "NEG": "-1"}
    assert env_int(env, "N") == 12
    assert env_int(env, "MISSING", 5) == 5
    with pytest.raises(SettingError, match=r"^BAD: must be a whole number, got 'twelve'$"):
        env_int(env, "BAD")
    with pytest.raises(SettingError, match=r"^NEG: must be at least 0, got -1$"):
        env_int(env, "NEG", minimum=0)
