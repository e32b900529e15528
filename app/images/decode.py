"""Image bytes → small RGB images, under limits: the synchronous decode steps.

Every failure is a :class:`BadRequestError` or :class:`PayloadTooLargeError` naming the
message/part it came from. Decoding is split in two so the caller can reserve memory
in between: :func:`probe` reads only the header (format, size; decompression bombs are
refused here, before any pixel buffer exists), :func:`finish` decodes the pixels (JPEGs
at reduced size in draft mode) and shrinks them to ``DECODE_MAX_SIDE``. The async
pipeline that runs these off the event loop is :mod:`app.images.loader`.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, UnidentifiedImageError

from app.settings import LimitSettings, Settings
from models.core.conversation import ENCODED_KEY, EncodedImage
from models.core.errors import BadRequestError, PayloadTooLargeError

ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
DECODE_MAX_SIDE = 512  # strategies see at most this; encoders resize further


def too_large(limits: LimitSettings, param: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"image is larger than {limits.max_image_bytes} bytes", param=param, code="image_too_large"
    )


def data_url_payload(url: str, limits: LimitSettings, param: str) -> str:
    """The base64 payload of a ``data:image/...;base64,`` URL (checked, not decoded)."""
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:"):
        raise BadRequestError(
            "image_url must be a data: URL or an http(s) URL", param=param, code="invalid_image_url"
        )
    if not header.endswith(";base64"):
        raise BadRequestError(
            "data: image URLs must be base64 encoded", param=param, code="invalid_image_url"
        )
    mime = header[5:].split(";", 1)[0].lower()
    if mime and not mime.startswith("image/"):
        raise BadRequestError(
            f"data: URL has media type '{mime[:40]}', not an image",
            param=param,
            code="invalid_image_format",
        )
    if len(payload) > (limits.max_image_bytes * 4) // 3 + 8:
        raise too_large(limits, param)
    return payload


def b64decode(payload: str, param: str) -> bytes:
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(
            "image data is not valid base64", param=param, code="invalid_base64"
        ) from None


def decode_data_url(url: str, limits: LimitSettings, param: str) -> bytes:
    """Bytes of a base64 ``data:image/...`` URL."""
    return b64decode(data_url_payload(url, limits, param), param)


@contextmanager
def _image_errors(limits: LimitSettings, param: str) -> Iterator[None]:
    """Turn Pillow's failures into 400s naming the image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own bomb guard fires in open(), before our pixel check can run
        raise BadRequestError(
            f"image has too many pixels; the limit is {limits.max_image_pixels} pixels",
            param=param,
            code="image_too_large",
        ) from None
    except UnidentifiedImageError:
        raise BadRequestError(
            f"data is not a supported image ({', '.join(ALLOWED_FORMATS)})",
            param=param,
            code="invalid_image_format",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError):  # truncated or corrupt
        raise BadRequestError(
            "image data is corrupt or truncated", param=param, code="invalid_image"
        ) from None


def device_decodes_jpeg(settings: Settings) -> bool:
    """Whether the strategy decodes JPEGs itself, on a CUDA device, from the original bytes
    (the auto strategy with open_clip): the edge then only validates them, cheaply."""
    auto = settings.auto
    return (
        settings.strategy == "auto"
        and auto.device_images
        and auto.device.startswith("cuda")
        and auto.encoder.startswith("open_clip:")
    )


def probe(data: bytes, limits: LimitSettings, param: str, *, preview: bool = False) -> Image.Image:
    """Open an image lazily (header only) and check its format and pixel count.

    The original bytes ride along on the image (``strategies.base.encoded_source``).
    ``preview``: JPEGs decode at 1/8 scale, which still reads (and so validates) all of
    the entropy-coded data for a fraction of the cost; for strategies that decode the
    original bytes on the device (:func:`device_decodes_jpeg`)."""
    if len(data) > limits.max_image_bytes:
        raise too_large(limits, param)
    with _image_errors(limits, param):
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        width, height = img.size
        if width * height > limits.max_image_pixels:
            raise BadRequestError(
                f"image is {width}x{height} pixels; the limit is {limits.max_image_pixels} pixels",
                param=param,
                code="image_too_large",
            )
        img.info[ENCODED_KEY] = EncodedImage(img.format or "unknown", data, (width, height))
        if img.format == "JPEG" and preview:
            img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        elif img.format == "JPEG" and max(width, height) > DECODE_MAX_SIDE:
            # decode at the smallest DCT scale whose longer side still covers the cap
            scale = DECODE_MAX_SIDE / max(width, height)
            img.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
        return img


def decode_pixels(img: Image.Image) -> int:
    """Pixels the decoder will allocate for a probed image (after JPEG draft scaling)."""
    width, height = img.size
    return max(1, width * height)


def finish(img: Image.Image, limits: LimitSettings, param: str) -> Image.Image:
    """Decode a probed image into RGB no larger than DECODE_MAX_SIDE a side."""
    with _image_errors(limits, param):
        img.load()
        encoded = img.info.get(ENCODED_KEY)
        if max(img.size) > DECODE_MAX_SIDE:
            img.thumbnail((DECODE_MAX_SIDE, DECODE_MAX_SIDE), Image.Resampling.BILINEAR)
        out = img.convert("RGB") if img.mode != "RGB" else img
        if encoded is not None:
            out.info[ENCODED_KEY] = encoded
        return out


def open_image(
    data: bytes, limits: LimitSettings, param: str, *, preview: bool = False
) -> Image.Image:
    """Decode image bytes into a small RGB image, synchronously (CLI, tests)."""
    return finish(probe(data, limits, param, preview=preview), limits, param)
