"""Typed requests: every schema field, validated before anything is sent.

The payloads are checked against the fake's own copy of the published schemas, so a field
misnamed or mistyped in client.models would show up here.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from client.errors import InvalidRequestError
from client.models import (
    ASPECT_RATIOS,
    OUTPUT_FORMATS,
    RESOLUTIONS,
    SAFETY_LEVELS,
    DownloadedImage,
    EditRequest,
    GenerationOptions,
    TextToImageRequest,
)
from tests.fakes.runcomfy import EDIT_MODEL, TEXT_TO_IMAGE_MODEL, validate


def test_defaults_match_the_schema_defaults() -> None:
    assert TextToImageRequest("a cat").to_payload() == {
        "prompt": "a cat",
        "num_images": 1,
        "aspect_ratio": "auto",
        "resolution": "1K",
        "output_format": "png",
        "safety_tolerance": 4,
        "limit_generations": True,
        "enable_web_search": False,
    }


def test_every_allowed_value_makes_a_payload_the_schema_accepts() -> None:
    for ratio, resolution, fmt, safety in itertools.product(
        ASPECT_RATIOS, RESOLUTIONS, OUTPUT_FORMATS, SAFETY_LEVELS
    ):
        options = GenerationOptions(
            num_images=4,
            seed=2**32 - 1,
            aspect_ratio=ratio,
            resolution=resolution,
            output_format=fmt,
            safety_tolerance=safety,
            limit_generations=False,
            enable_web_search=True,
        )
        assert validate(TEXT_TO_IMAGE_MODEL, TextToImageRequest("p", options).to_payload()) == []
    edit = EditRequest("p", ("https://cdn.example/a.png",) * 20, GenerationOptions(seed=0))
    payload = edit.to_payload()
    assert payload["image_urls"] == ["https://cdn.example/a.png"] * 20
    assert payload["seed"] == 0
    assert validate(EDIT_MODEL, payload) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_images", 0),
        ("num_images", 5),
        ("num_images", True),
        ("num_images", 2.0),
        ("seed", -1),
        ("seed", 2**32),
        ("aspect_ratio", "7:3"),
        ("resolution", "8K"),
        ("output_format", "gif"),
        ("safety_tolerance", 0),
        ("safety_tolerance", 7),
        ("limit_generations", "yes"),
        ("enable_web_search", 1),
    ],
)
def test_invalid_options_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        GenerationOptions(**{field: value})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: TextToImageRequest(""), "prompt"),
        (lambda: TextToImageRequest("   "), "prompt"),
        (lambda: TextToImageRequest("x" * 4001), "prompt"),
        (lambda: TextToImageRequest("p", options={"num_images": 2}), "options"),  # type: ignore[arg-type]
        (lambda: EditRequest("p", ()), "image_urls"),
        (lambda: EditRequest("p", ("https://a/x.png",) * 21), "image_urls"),
        (lambda: EditRequest("p", ["https://a/x.png"]), "image_urls"),  # type: ignore[arg-type]
        (lambda: EditRequest("p", ("not a url",)), "image_urls"),
        (lambda: EditRequest("p", ("ftp://a/x.png",)), "image_urls"),
        (lambda: EditRequest("p", ("http://[x",)), "image_urls"),  # urlsplit: ValueError
        (lambda: EditRequest("p", ("http://a:99999/x.png",)), "image_urls"),
        (lambda: EditRequest("p", ("http://a:abc/x.png",)), "image_urls"),
        (lambda: EditRequest("p", ("http:///x.png",)), "image_urls"),
        (lambda: EditRequest("p", ("https://a/x y.png",)), "image_urls"),
        (lambda: EditRequest("", ("https://a/x.png",)), "prompt"),
    ],
)
def test_invalid_requests_cannot_be_built(build: Any, field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        build()
    assert caught.value.field == field


def test_downloaded_image_extension() -> None:
    assert DownloadedImage("u", b"", "image/png").extension == "png"
    assert DownloadedImage("u", b"", "image/jpeg").extension == "jpg"
    assert DownloadedImage("u", b"", "image/webp").extension == "webp"
