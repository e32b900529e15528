"""Bad images: each refused with a 4xx in OpenAI's error shape, quickly, without
allocating decompression bombs, and http(s) URLs only when enabled and never loopback."""

from __future__ import annotations

import base64
import io
import os
import re
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.helpers import app_client, bomb_png, data_url, image_message, make_settings, png_bytes
from tests.netguard import loopback_only  # noqa: F401

CHAT = "/v1/chat/completions"
PARAM = "messages.0.content.1.image_url"
MAX_IMAGE_BYTES = 4096


def assert_openai_error(
    resp: httpx.Response, status: int | tuple[int, ...], code: str | None = None
) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert resp.status_code in statuses, resp.text
    body = resp.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code
    return error


def big_png() -> bytes:
    """A PNG well over MAX_IMAGE_BYTES (noise does not compress)."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(buf, format="PNG")
    assert len(buf.getvalue()) > MAX_IMAGE_BYTES
    return buf.getvalue()


BAD_URLS: list[tuple[str, str, int | tuple[int, ...]]] = [
    ("malformed-base64", "data:image/png;base64,@@not base64@@", 400),
    ("base64-with-junk-in-the-middle", "data:image/png;base64,iVBO%%%RK", 400),
    ("not-an-image", data_url(b"hello"), 400),
    ("not-an-image-long", data_url(b"just some text, " * 40), 400),
    ("non-image-mime", data_url(png_bytes(), "text/plain"), 400),
    ("application-mime", data_url(b"%PDF-1.4", "application/pdf"), 400),
    ("data-url-not-base64", "data:image/png,rawbytes", 400),
    ("data-url-without-comma", "data:image/png;base64", 400),
    ("truncated-png", data_url(png_bytes(64, 64)[:60]), 400),
    ("png-header-only", data_url(png_bytes(64, 64)[:33]), 400),
    ("unsupported-scheme", "ftp://example.com/cat.png", 400),
    ("image-over-byte-limit", data_url(big_png()), (400, 413)),
]


@pytest.mark.parametrize("url,status", [u[1:] for u in BAD_URLS], ids=[u[0] for u in BAD_URLS])
async def test_bad_image_urls(url: str, status: int | tuple[int, ...]) -> None:
    settings = make_settings(limits={"max_image_bytes": MAX_IMAGE_BYTES})
    async with app_client(settings) as client:
        resp = await client.post(CHAT, json={"messages": [image_message("what is it?", url)]})
    error = assert_openai_error(resp, status)
    assert error["param"] == PARAM


async def test_image_under_byte_limit_is_accepted() -> None:
    settings = make_settings(limits={"max_image_bytes": MAX_IMAGE_BYTES})
    async with app_client(settings) as client:
        resp = await client.post(
            CHAT, json={"messages": [image_message("what is it?", data_url(png_bytes(16, 16)))]}
        )
    assert resp.status_code == 200


def peak_rss_kib() -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    assert match
    return int(match.group(1))


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def test_decompression_bomb_is_refused_quickly_without_allocating() -> None:
    bomb = bomb_png(20000, 20000)  # 400 M pixels: 400 MB as L, 1.2 GB as RGB
    assert len(bomb) < 1024**2
    body = {"messages": [image_message("what is it?", data_url(bomb))]}
    async with app_client() as client:
        if not reset_peak_rss():
            pytest.skip("cannot reset peak RSS on this kernel")
        before = peak_rss_kib()
        began = time.perf_counter()
        resp = await client.post(CHAT, json=body)
        elapsed = time.perf_counter() - began
        grown_mib = (peak_rss_kib() - before) / 1024
    error = assert_openai_error(resp, 400, "image_too_large")
    assert error["param"] == PARAM
    assert "pixels" in error["message"]
    assert elapsed < 2.0
    assert grown_mib < 200, f"peak RSS grew by {grown_mib:.0f} MiB"


async def test_image_over_pixel_setting_is_400() -> None:
    settings = make_settings(limits={"max_image_pixels": 100 * 100})
    async with app_client(settings) as client:
        small = await client.post(
            CHAT, json={"messages": [image_message("hi", data_url(png_bytes(100, 100)))]}
        )
        large = await client.post(
            CHAT, json={"messages": [image_message("hi", data_url(png_bytes(101, 100)))]}
        )
    assert small.status_code == 200
    error = assert_openai_error(large, 400, "image_too_large")
    assert error["param"] == PARAM


async def test_more_images_than_allowed_is_400() -> None:
    img = data_url(png_bytes())
    async with app_client(make_settings(limits={"max_images": 2})) as client:
        ok = await client.post(CHAT, json={"messages": [image_message("two", img, img)]})
        too_many = await client.post(
            CHAT,
            json={"messages": [image_message("one", img), image_message("two", img, img)]},
        )
    assert ok.status_code == 200
    error = assert_openai_error(too_many, 400, "too_many_images")
    assert error["param"] == "messages"
    assert "2" in error["message"]


async def test_images_counted_before_decoding() -> None:
    """The count limit is checked first: undecodable extra images still give the count error."""
    junk = data_url(b"hello")
    async with app_client(make_settings(limits={"max_images": 1})) as client:
        resp = await client.post(CHAT, json={"messages": [image_message("x", junk, junk)]})
    assert_openai_error(resp, 400, "too_many_images")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/cat.png",
        "http://localhost:9/cat.png",
        "http://[::1]:9/cat.png",
        "http://10.0.0.1/cat.png",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0:9/cat.png",
        "http://[::ffff:127.0.0.1]:9/cat.png",
        "http://100.64.0.1/cat.png",
        "http://[2002:7f00:1::1]/cat.png",
    ],
)
@pytest.mark.usefixtures("loopback_only")
async def test_fetching_private_addresses_is_refused(url: str) -> None:
    settings = make_settings(image_fetch={"enabled": True})
    async with app_client(settings) as client:
        resp = await client.post(CHAT, json={"messages": [image_message("look", url)]})
    error = assert_openai_error(resp, 400, "image_url_forbidden")
    assert error["param"] == PARAM


async def test_http_urls_are_refused_when_fetching_is_disabled() -> None:
    async with app_client(make_settings(image_fetch={"enabled": False})) as client:
        resp = await client.post(
            CHAT, json={"messages": [image_message("look", "http://127.0.0.1:9/cat.png")]}
        )
    error = assert_openai_error(resp, 400)
    assert error["param"] == PARAM
    assert "disabled" in error["message"]


async def test_line_wrapped_base64_is_never_a_500() -> None:
    """Some clients wrap base64 at a fixed width: accept it or refuse it cleanly."""
    encoded = base64.b64encode(png_bytes()).decode()
    wrapped = "\n".join(encoded[i : i + 20] for i in range(0, len(encoded), 20))
    async with app_client() as client:
        resp = await client.post(
            CHAT, json={"messages": [image_message("x", f"data:image/png;base64,{wrapped}")]}
        )
    assert resp.status_code in (200, 400)
    if resp.status_code == 400:
        assert_openai_error(resp, 400)
