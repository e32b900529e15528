"""Image decoding under limits (fetching: test_image_fetch.py; the async pipeline:
test_image_loader.py; hostile input: test_hostile_images.py)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.images.decode import open_image
from app.settings import LimitSettings
from models.core.errors import BadRequestError, PayloadTooLargeError
from tests.helpers import jpeg_bytes, png_bytes


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data,size",
    [
        (png_bytes(8, 8), (8, 8)),
        (png_bytes(1024, 300), (512, 150)),
        (png_bytes(300, 2000), (77, 512)),
        (jpeg_bytes(2048, 1024), (512, 256)),
        (encode(Image.new("RGBA", (600, 600), (1, 2, 3, 4)), "PNG"), (512, 512)),
        (encode(Image.new("L", (40, 20), 7), "PNG"), (40, 20)),
        (encode(Image.new("P", (30, 30)), "GIF"), (30, 30)),
        (encode(Image.new("RGB", (30, 30)), "WEBP"), (30, 30)),
        (encode(Image.new("RGB", (30, 30)), "BMP"), (30, 30)),
    ],
    ids=["small", "wide", "tall", "jpeg", "rgba", "grey", "gif", "webp", "bmp"],
)
def test_open_image_gives_rgb_at_most_512(data: bytes, size: tuple[int, int]) -> None:
    img = open_image(data, LimitSettings(), "p")
    assert img.mode == "RGB"
    assert max(img.size) <= 512
    assert img.size == pytest.approx(size, abs=1)


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM", "TGA"])
def test_open_image_refuses_formats_outside_the_allowed_list(fmt: str) -> None:
    """Pillow is asked for the allowed formats only, so other decoders never run."""
    data = encode(Image.new("RGB", (8, 8)), fmt)
    with pytest.raises(BadRequestError) as info:
        open_image(data, LimitSettings(), "messages.0.content.1.image_url")
    assert info.value.param == "messages.0.content.1.image_url"
    assert info.value.code == "invalid_image_format"


def test_open_image_refuses_bytes_over_limit() -> None:
    limits = LimitSettings(max_image_bytes=1024)
    with pytest.raises(PayloadTooLargeError):
        open_image(b"\x89PNG" + b"\0" * 2000, limits, "p")
