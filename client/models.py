"""Typed requests and results for RunComfy's Nano Banana 2 models.

The field names, ranges and enumerations follow the model's published input schema
(text-to-image and edit). Validation happens in ``__post_init__``, so an invalid request can never
be built, let alone sent; each violation names the field and what is allowed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from client.errors import InvalidRequestError

ASPECT_RATIOS: Final = (
    "auto",
    "21:9",
    "16:9",
    "3:2",
    "4:3",
    "5:4",
    "1:1",
    "4:5",
    "3:4",
    "2:3",
    "9:16",
)
RESOLUTIONS: Final = ("0.5K", "1K", "2K", "4K")
OUTPUT_FORMATS: Final = ("jpeg", "png", "webp")
SAFETY_LEVELS: Final = (1, 2, 3, 4, 5, 6)
MIN_IMAGES: Final = 1
MAX_IMAGES: Final = 4
MIN_EDIT_IMAGES: Final = 1
MAX_EDIT_IMAGES: Final = 20
# The schema sets no maximum; ours keeps prompts within what a Discord option can carry.
MAX_PROMPT_LENGTH: Final = 4000
# The schema's seed is an integer; we keep it within an unsigned 32-bit range, as most backends do.
MAX_SEED: Final = 2**32 - 1


def _check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed)
        raise InvalidRequestError(name, f"must be one of {shown}", value=value)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequestError(name, f"must be a whole number from {low} to {high}", value=value)


def is_http_url(value: Any) -> bool:
    """An absolute http(s) URL with a host (and a valid port, if any)."""
    if not isinstance(value, str) or any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises ValueError for a port out of range or not a number
    except ValueError:  # e.g. "http://[x": an unclosed IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_url(value: Any) -> None:
    if not is_http_url(value):
        raise InvalidRequestError(
            "image_urls", "each must be an absolute http or https URL", value=value
        )


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Everything both models accept besides the prompt (and the edit's images)."""

    num_images: int = 1
    seed: int | None = None  # None: let the API pick (the schema's default is 0)
    aspect_ratio: str = "auto"
    resolution: str = "1K"
    output_format: str = "png"
    safety_tolerance: int = 4
    limit_generations: bool = True
    enable_web_search: bool = False

    def __post_init__(self) -> None:
        _check_int("num_images", self.num_images, MIN_IMAGES, MAX_IMAGES)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, MAX_SEED)
        _check_choice("aspect_ratio", self.aspect_ratio, ASPECT_RATIOS)
        _check_choice("resolution", self.resolution, RESOLUTIONS)
        _check_choice("output_format", self.output_format, OUTPUT_FORMATS)
        _check_choice("safety_tolerance", self.safety_tolerance, SAFETY_LEVELS)
        for name in ("limit_generations", "enable_web_search"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidRequestError(name, "must be true or false", value=getattr(self, name))

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "num_images": self.num_images,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "output_format": self.output_format,
            "safety_tolerance": self.safety_tolerance,
            "limit_generations": self.limit_generations,
            "enable_web_search": self.enable_web_search,
        }
        if self.seed is not None:
            payload["seed"] = self.seed
        return payload


def _check_options(options: Any) -> None:
    if not isinstance(options, GenerationOptions):
        raise InvalidRequestError("options", "must be GenerationOptions", value=options)


def _check_prompt(prompt: Any) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequestError("prompt", "must not be empty", value=prompt)
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise InvalidRequestError(
            "prompt", f"must be at most {MAX_PROMPT_LENGTH} characters", value=len(prompt)
        )


@dataclass(frozen=True, slots=True)
class TextToImageRequest:
    prompt: str
    options: GenerationOptions = field(default_factory=GenerationOptions)

    def __post_init__(self) -> None:
        _check_prompt(self.prompt)
        _check_options(self.options)

    def to_payload(self) -> dict[str, Any]:
        return {"prompt": self.prompt, **self.options.to_payload()}


@dataclass(frozen=True, slots=True)
class EditRequest:
    prompt: str
    image_urls: tuple[str, ...]
    options: GenerationOptions = field(default_factory=GenerationOptions)

    def __post_init__(self) -> None:
        _check_prompt(self.prompt)
        if not isinstance(self.image_urls, tuple):
            raise InvalidRequestError("image_urls", "must be a tuple of URLs")
        if not MIN_EDIT_IMAGES <= len(self.image_urls) <= MAX_EDIT_IMAGES:
            raise InvalidRequestError(
                "image_urls",
                f"needs {MIN_EDIT_IMAGES} to {MAX_EDIT_IMAGES} images",
                value=len(self.image_urls),
            )
        for url in self.image_urls:
            _check_url(url)
        _check_options(self.options)

    def to_payload(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "image_urls": list(self.image_urls),
            **self.options.to_payload(),
        }


GenerationRequest = TextToImageRequest | EditRequest


class JobState(enum.Enum):
    """The closed set of states a RunComfy job can be in, as the client reports them."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED)


@dataclass(frozen=True, slots=True)
class JobStatus:
    state: JobState
    queue_position: int | None = None  # only while QUEUED, when the API says
    error: str | None = None  # only when FAILED: the API's message
    raw: Any = field(default=None, compare=False, repr=False)


class CancelOutcome(enum.Enum):
    CANCELLED = "cancelled"
    NOT_CANCELLABLE = "not_cancellable"


@dataclass(frozen=True, slots=True)
class DownloadedImage:
    url: str
    data: bytes
    content_type: str  # e.g. "image/png"

    @property
    def extension(self) -> str:
        return {"image/jpeg": "jpg", "image/webp": "webp"}.get(self.content_type, "png")
