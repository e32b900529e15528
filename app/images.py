"""Image inputs: ``data:`` URLs and (when enabled) http(s) URLs, decoded under limits.

Every failure is a :class:`BadRequestError` or :class:`PayloadTooLargeError` naming the
message/part it came from. Decompression bombs are refused from the header, before any
pixel buffer is allocated; JPEGs decode at reduced size (draft mode).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import socket
import warnings
from urllib.parse import urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from app.errors import BadRequestError, PayloadTooLargeError
from app.settings import ImageFetchSettings, LimitSettings, Settings
from strategies.base import ENCODED_KEY, EncodedImage

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "GIF", "WEBP", "BMP"})
DECODE_MAX_SIDE = 512  # strategies see at most this; encoders resize further


def decode_data_url(url: str, limits: LimitSettings, param: str) -> bytes:
    """Bytes of a base64 ``data:image/...`` URL."""
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:"):
        raise BadRequestError("image_url must be a data: URL or an http(s) URL", param=param)
    if not header.endswith(";base64"):
        raise BadRequestError("data: image URLs must be base64 encoded", param=param)
    mime = header[5:].split(";", 1)[0].lower()
    if mime and not mime.startswith("image/"):
        raise BadRequestError(f"data: URL has media type '{mime}', not an image", param=param)
    if len(payload) > (limits.max_image_bytes * 4) // 3 + 8:
        raise PayloadTooLargeError(
            f"image is larger than {limits.max_image_bytes} bytes", param=param
        )
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("image data is not valid base64", param=param) from None


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


def open_image(
    data: bytes, limits: LimitSettings, param: str, *, preview: bool = False
) -> Image.Image:
    """Decode image bytes into an RGB image no larger than DECODE_MAX_SIDE, keeping the
    original bytes on it (``strategies.base.encoded_source``).

    ``preview``: JPEGs decode at 1/8 scale, which still reads (and so validates) all of
    the entropy-coded data for a fraction of the cost; for strategies that decode the
    original bytes on the device (:func:`device_decodes_jpeg`)."""
    if len(data) > limits.max_image_bytes:
        raise PayloadTooLargeError(
            f"image is larger than {limits.max_image_bytes} bytes", param=param
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            width, height = img.size
            if fmt not in ALLOWED_FORMATS:
                raise BadRequestError(f"unsupported image format {fmt}", param=param)
            if width * height > limits.max_image_pixels:
                raise BadRequestError(
                    f"image is {width}x{height} pixels; the limit is "
                    f"{limits.max_image_pixels} pixels",
                    param=param,
                    code="image_too_large",
                )
            if fmt == "JPEG" and preview:
                img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            elif fmt == "JPEG" and max(width, height) > DECODE_MAX_SIDE:
                # decode at the smallest DCT scale whose longer side still covers the cap
                scale = DECODE_MAX_SIDE / max(width, height)
                img.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
            img.load()
            if max(img.size) > DECODE_MAX_SIDE:
                img.thumbnail((DECODE_MAX_SIDE, DECODE_MAX_SIDE), Image.Resampling.BILINEAR)
            out = img.convert("RGB") if img.mode != "RGB" else img
            out.info[ENCODED_KEY] = EncodedImage(fmt, data, (width, height))
            return out
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own bomb guard fires in open(), before our pixel check can run
        raise BadRequestError(
            f"image has too many pixels; the limit is {limits.max_image_pixels} pixels",
            param=param,
            code="image_too_large",
        ) from None
    except UnidentifiedImageError:
        raise BadRequestError("data is not a supported image", param=param) from None
    except (OSError, SyntaxError, ValueError, EOFError):  # truncated or corrupt data
        raise BadRequestError("image data is corrupt or truncated", param=param) from None


def _is_public(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


async def check_host(host: str, port: int, param: str) -> None:
    """Refuse hosts that resolve to loopback, private, link-local or reserved addresses."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise BadRequestError(f"cannot resolve image host '{host}'", param=param) from None
    for info in infos:
        if not _is_public(str(info[4][0])):
            raise BadRequestError(
                "image URL points at a private or loopback address",
                param=param,
                code="image_url_forbidden",
            )


async def fetch_image(
    url: str,
    client: httpx.AsyncClient,
    fetch: ImageFetchSettings,
    limits: LimitSettings,
    param: str,
) -> bytes:
    """Download an http(s) image with a timeout, a byte limit and no private hosts.

    Redirects are not followed (each hop would need the same host check)."""
    if not fetch.enabled:
        raise BadRequestError(
            "http(s) image URLs are disabled; send the image as a data: URL "
            "(or set ROUTER_IMAGE_FETCH__ENABLED=true)",
            param=param,
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequestError("image URL must be http(s) with a host", param=param)
    if not fetch.allow_private:
        await check_host(parts.hostname, parts.port or 443, param)
    try:
        async with client.stream("GET", url, timeout=fetch.timeout_s) as resp:
            if resp.status_code != 200:
                raise BadRequestError(f"image URL answered HTTP {resp.status_code}", param=param)
            chunks, size = [], 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limits.max_image_bytes:
                    raise PayloadTooLargeError(
                        f"image is larger than {limits.max_image_bytes} bytes", param=param
                    )
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.TimeoutException:
        raise BadRequestError("image URL timed out", param=param) from None
    except httpx.HTTPError:
        raise BadRequestError("image URL could not be fetched", param=param) from None
