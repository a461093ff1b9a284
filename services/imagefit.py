"""Fit generated images into a chat platform's upload limits without dropping any.

An image that fits is passed through byte for byte. One that does not is re-encoded (JPEG, or
WebP when it has transparency) at falling quality, then downscaled step by step until it fits;
if even a small version does not, it is handed back as a link to the original. The total per
message is bounded too: when the files together pass it, the largest ones get a smaller budget
(water-filling), so small images stay untouched.

Pillow work is CPU-bound: callers on an event loop run ``fit_images`` in a thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from client.models import DownloadedImage

MIB = 2**20
# Room for the JSON part and multipart framing of the request that carries the files.
REQUEST_OVERHEAD = 64 * 1024
_QUALITIES = (92, 85, 75)
_SCALE_STEP = 0.75
_MIN_SIDE = 256  # below this a re-encode is not worth posting: link the original instead


@dataclass(frozen=True, slots=True)
class FittedImage:
    filename: str
    source_url: str  # the original's URL (what a link points to)
    data: bytes | None  # None: too large even re-encoded; post ``source_url`` as a link
    reencoded: bool = False

    @property
    def linked(self) -> bool:
        return self.data is None


def needs_work(
    images: Sequence[DownloadedImage], *, per_file_limit: int, total_limit: int, max_files: int
) -> bool:
    """Whether ``fit_images`` would change anything (cheap: no decoding)."""
    sizes = [len(i.data) for i in images]
    return (
        len(images) > max_files
        or any(s > per_file_limit for s in sizes)
        or sum(sizes) > total_limit - REQUEST_OVERHEAD
    )


def fit_images(
    images: Sequence[DownloadedImage],
    *,
    stem: str,
    per_file_limit: int,
    total_limit: int = 25 * MIB,
    max_files: int = 10,
) -> list[FittedImage]:
    """Files (or links) for ``images``, in order, within the limits. Blocking: use a thread."""
    budgets = _budgets(
        [len(i.data) for i in images[:max_files]],
        per_file_limit,
        total_limit - REQUEST_OVERHEAD,
    )
    fitted: list[FittedImage] = []
    for index, image in enumerate(images):
        name = f"{stem}_{index + 1}"
        if index >= max_files:
            fitted.append(FittedImage(f"{name}.{image.extension}", image.url, None))
            continue
        budget = budgets[index]
        if len(image.data) <= budget:
            fitted.append(FittedImage(f"{name}.{image.extension}", image.url, image.data))
            continue
        shrunk = reencode(image.data, budget)
        if shrunk is None:
            fitted.append(FittedImage(f"{name}.{image.extension}", image.url, None))
        else:
            data, extension = shrunk
            fitted.append(FittedImage(f"{name}.{extension}", image.url, data, reencoded=True))
    return fitted


def _budgets(sizes: list[int], per_file: int, total: int) -> list[int]:
    """Per-file byte budgets: each at most ``per_file``, together at most ``total``.

    Water-filling: find the cap ``c`` such that sum(min(size, c)) fits, so files under the cap
    keep their bytes and only the big ones shrink.
    """
    capped = [min(s, per_file) for s in sizes]
    if sum(capped) <= total or not sizes:
        return [per_file] * len(sizes)
    low, high = 0, per_file
    while low < high:  # the largest cap that fits
        mid = (low + high + 1) // 2
        if sum(min(s, mid) for s in capped) <= total:
            low = mid
        else:
            high = mid - 1
    return [low] * len(sizes)


def reencode(data: bytes, budget: int) -> tuple[bytes, str] | None:
    """``data`` re-encoded to at most ``budget`` bytes, with its extension; None if impossible."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = opened.copy()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    has_alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
    fmt, extension = ("WEBP", "webp") if has_alpha else ("JPEG", "jpg")
    image = image.convert("RGBA" if has_alpha else "RGB")
    while True:
        for quality in _QUALITIES:
            out = io.BytesIO()
            image.save(out, fmt, quality=quality, optimize=fmt == "JPEG")
            if out.tell() <= budget:
                return out.getvalue(), extension
        width, height = image.size
        new_size = (int(width * _SCALE_STEP), int(height * _SCALE_STEP))
        if min(new_size) < _MIN_SIDE:
            return None
        image = image.resize(new_size, Image.Resampling.LANCZOS)
