"""Images a member hands in, checked before anything is reserved: where they are and what they
really are (the first bytes, not the declared type). No discord import.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from client import RunComfyClient
from client.errors import RunComfyError
from services.errors import InvalidInput

log = logging.getLogger(__name__)

# Where Discord serves uploaded files (attachments, and its proxied copies of embed images:
# media.discordapp.net, and images-ext-N.discordapp.net for link embeds).
DISCORD_CDN_ORIGINS = (
    "https://cdn.discordapp.com",
    "https://media.discordapp.net",
    "https://images-ext-*.discordapp.net",
)
SNIFF_TIMEOUT = 2.0  # seconds for the first bytes; the interaction is deferred meanwhile

NamedUrl = tuple[str, str]  # (what the member calls it, e.g. "image2"; its URL)


class InputImages:
    def __init__(
        self, client: RunComfyClient, *, origins: Sequence[str] = DISCORD_CDN_ORIGINS
    ) -> None:
        self._client = client
        # "*" stands for one DNS label of letters, digits and hyphens (images-ext-1, -2, ...)
        self._origins = [
            re.compile(re.escape(o.rstrip("/").lower()).replace(r"\*", "[a-z0-9-]+"))
            for o in origins
        ]

    async def check(self, images: Sequence[NamedUrl]) -> None:
        """Raise InvalidInput for the first image that is not a real image on Discord's CDN."""
        for name, url in images:
            if not any(o.fullmatch(_origin(url)) for o in self._origins):
                raise InvalidInput(
                    name,
                    "`{option}` isn't a file uploaded to Discord. Nothing was charged.",
                    option=name,
                )
        found = await asyncio.gather(*(self._sniff(url) for _, url in images))
        for (name, url), kind in zip(images, found, strict=True):
            if kind == "":
                raise InvalidInput(
                    name,
                    "`{option}` couldn't be read from Discord (it may have expired); upload it"
                    " again. Nothing was charged.",
                    option=name,
                )
            if kind is None:
                log.info("input %s is not an image by its first bytes: %s", name, url)
                raise InvalidInput(
                    name,
                    "`{option}` isn't really a PNG, JPEG or WebP image. Nothing was charged.",
                    option=name,
                )

    async def _sniff(self, url: str) -> str | None:
        """The sniffed type; None: not an image; "": could not be read."""
        try:
            return await self._client.sniff(url, timeout=SNIFF_TIMEOUT)
        except RunComfyError as err:
            log.info("could not read an input image: %s", err)
            return ""


def _origin(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()
