"""Image decoding under limits, and http(s) image fetching against a mocked upstream."""

from __future__ import annotations

import io

import httpx
import pytest
import respx
from PIL import Image

from app.errors import BadRequestError, PayloadTooLargeError
from app.images import open_image
from app.settings import LimitSettings
from tests.helpers import app_client, image_message, jpeg_bytes, make_settings, png_bytes

CHAT = "/v1/chat/completions"
PUBLIC_URL = "http://93.184.216.34/cat.png"  # an IP literal: resolves without DNS
VISION = "nvidia/nemotron-nano-12b-v2-vl"


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


def test_open_image_refuses_unsupported_format() -> None:
    tiff = encode(Image.new("RGB", (8, 8)), "TIFF")
    with pytest.raises(BadRequestError, match="TIFF") as info:
        open_image(tiff, LimitSettings(), "messages.0.content.1.image_url")
    assert info.value.param == "messages.0.content.1.image_url"


def test_open_image_refuses_bytes_over_limit() -> None:
    limits = LimitSettings(max_image_bytes=1024)
    with pytest.raises(PayloadTooLargeError):
        open_image(b"\x89PNG" + b"\0" * 2000, limits, "p")


async def fetch_route(route_response: httpx.Response | Exception, **fetch: object):
    settings = make_settings(
        image_fetch={"enabled": True, **fetch}, limits={"max_image_bytes": 4096}
    )
    with respx.mock(assert_all_called=True) as mock:
        route = mock.get(PUBLIC_URL)
        if isinstance(route_response, Exception):
            route.side_effect = route_response
        else:
            route.return_value = route_response
        async with app_client(settings) as client:
            resp = await client.post(CHAT, json={"messages": [image_message("see", PUBLIC_URL)]})
    return resp


async def test_fetched_image_is_routed_to_a_vision_model() -> None:
    resp = await fetch_route(httpx.Response(200, content=png_bytes(16, 16)))
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == VISION


@pytest.mark.parametrize(
    "upstream,status",
    [
        (httpx.Response(404), 400),
        (httpx.Response(500), 400),
        (httpx.Response(302, headers={"location": "http://127.0.0.1/x.png"}), 400),
        (httpx.Response(200, content=b"not an image"), 400),
        (httpx.Response(200, content=b"\0" * 10_000), 413),
        (httpx.ConnectTimeout("slow"), 400),
        (httpx.ReadTimeout("slow"), 400),
        (httpx.ConnectError("refused"), 400),
    ],
    ids=[
        "404",
        "500",
        "redirect-not-followed",
        "not-image",
        "too-big",
        "connect-timeout",
        "read-timeout",
        "connect-error",
    ],
)
async def test_fetch_failures_are_client_errors(
    upstream: httpx.Response | Exception, status: int
) -> None:
    resp = await fetch_route(upstream)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == "messages.0.content.1.image_url"
