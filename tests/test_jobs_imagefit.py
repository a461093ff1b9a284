"""Fitting results into Discord's upload limits: unchanged when possible, never dropped."""

from __future__ import annotations

import io
import os

from PIL import Image

from client.models import DownloadedImage
from services.imagefit import REQUEST_OVERHEAD, _budgets, fit_images, needs_work, reencode

MIB = 2**20


def noisy_png(side: int, *, alpha: bool = False) -> bytes:
    mode = "RGBA" if alpha else "RGB"
    image = Image.frombytes(mode, (side, side), os.urandom(side * side * len(mode)))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=0)
    return out.getvalue()


def downloaded(data: bytes, name: str = "a") -> DownloadedImage:
    return DownloadedImage(
        url=f"https://out.example/{name}.png", data=data, content_type="image/png"
    )


def test_images_that_fit_are_passed_through_byte_for_byte() -> None:
    images = [downloaded(noisy_png(64), "a"), downloaded(noisy_png(64), "b")]
    assert not needs_work(images, per_file_limit=MIB, total_limit=25 * MIB, max_files=10)
    fitted = fit_images(images, stem="job", per_file_limit=MIB)
    assert [f.data for f in fitted] == [i.data for i in images]
    assert [f.filename for f in fitted] == ["job_1.png", "job_2.png"]
    assert not any(f.reencoded or f.linked for f in fitted)


def test_an_oversized_image_is_reencoded_under_the_limit() -> None:
    big = downloaded(noisy_png(700))  # ~1.5 MB of incompressible pixels
    limit = 400_000
    assert needs_work([big], per_file_limit=limit, total_limit=25 * MIB, max_files=10)
    (fitted,) = fit_images([big], stem="job", per_file_limit=limit)
    assert fitted.reencoded and fitted.data is not None and len(fitted.data) <= limit
    assert fitted.filename == "job_1.jpg"
    with Image.open(io.BytesIO(fitted.data)) as image:
        assert image.format == "JPEG"


def test_transparency_survives_reencoding_as_webp() -> None:
    data = noisy_png(500, alpha=True)
    result = reencode(data, 300_000)
    assert result is not None
    encoded, extension = result
    assert extension == "webp" and len(encoded) <= 300_000
    with Image.open(io.BytesIO(encoded)) as image:
        assert image.mode == "RGBA"


def test_an_image_that_cannot_fit_is_linked_not_dropped() -> None:
    big = downloaded(noisy_png(600))
    (fitted,) = fit_images([big], stem="job", per_file_limit=2_000)
    assert fitted.linked and fitted.source_url == big.url


def test_undecodable_bytes_over_the_limit_are_linked() -> None:
    broken = downloaded(b"\x89PNG not really" * 1000)
    (fitted,) = fit_images([broken], stem="job", per_file_limit=1_000)
    assert fitted.linked


def test_the_request_total_shrinks_only_the_largest_files() -> None:
    small, large = noisy_png(100), noisy_png(900)  # ~30 KB and ~2.4 MB
    total = 1 * MIB + REQUEST_OVERHEAD
    fitted = fit_images(
        [downloaded(small, "s"), downloaded(large, "l")],
        stem="job",
        per_file_limit=10 * MIB,
        total_limit=total,
    )
    assert fitted[0].data == small and not fitted[0].reencoded
    assert fitted[1].reencoded
    assert sum(len(f.data or b"") for f in fitted) <= total - REQUEST_OVERHEAD


def test_budgets_water_fill() -> None:
    assert _budgets([10, 20], per_file=100, total=1000) == [100, 100]
    assert _budgets([10, 500, 500], per_file=1000, total=610) == [300, 300, 300]


def test_more_files_than_a_message_takes_are_linked() -> None:
    images = [downloaded(noisy_png(8), str(i)) for i in range(12)]
    fitted = fit_images(images, stem="job", per_file_limit=MIB, max_files=10)
    assert [f.linked for f in fitted] == [False] * 10 + [True] * 2
