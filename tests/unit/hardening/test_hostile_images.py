"""Hostile image input, as a table: each case gets its status and error code, and the
server answers a normal request right afterwards. Plus a memory bound for a burst of
large images.

Fetch cases run with fetching enabled, a stub resolver and the loopback-only guard.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from PIL import Image

from app.images.fetch import is_public_address
from app.server.factory import create_app
from tests.helpers import bomb_png, data_url, image_message, make_settings, png_bytes, wait_ready
from tests.netguard import Reply, image_server, loopback_only  # noqa: F401

pytestmark = pytest.mark.usefixtures("loopback_only")

CHAT = "/v1/chat/completions"
MAX_IMAGE_BYTES = 64 * 1024
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
RESOLVES = {
    "cgnat.test": ["100.64.1.1"],
    "private.test": ["10.1.2.3"],
    "mapped.test": ["::ffff:192.168.0.1"],
    "sixtofour.test": ["2002:c0a8:1::1"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": ["127.0.0.1", "10.0.0.1"],
    "images.test": ["127.0.0.1"],
}


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def noise_png(side: int) -> bytes:
    return encode(Image.effect_noise((side, side), 80).convert("RGB"), "PNG")


ONE = "messages.0.content.1.image_url"
CASES: list[tuple[str, list[str], int, str]] = [
    ("malformed-base64", ["data:image/png;base64,@@@not base64@@@"], 400, "invalid_base64"),
    ("bad-padding", ["data:image/png;base64,iVBORw0KGgo"], 400, "invalid_base64"),
    ("not-an-image", [data_url(b"MZ\x90\x00 this is an exe")], 400, "invalid_image_format"),
    ("truncated-png", [data_url(png_bytes(64, 64)[:60])], 400, "invalid_image"),
    ("truncated-idat", [data_url(noise_png(64)[:2000])], 400, "invalid_image"),
    ("bomb-from-header", [data_url(bomb_png(20000, 20000)[:8192])], 400, "image_too_large"),
    ("too-many-images", [data_url(png_bytes())] * 9, 400, "too_many_images"),
    ("huge-data-url", [data_url(noise_png(200))], 413, "image_too_large"),
    ("svg", [data_url(SVG, "image/svg+xml")], 400, "invalid_image_format"),
    ("tiff", [data_url(encode(Image.new("RGB", (8, 8)), "TIFF"))], 400, "invalid_image_format"),
    ("ico", [data_url(encode(Image.new("RGB", (16, 16)), "ICO"))], 400, "invalid_image_format"),
    ("pdf-mime", [data_url(b"%PDF-1.4", "application/pdf")], 400, "invalid_image_format"),
    ("not-base64-data-url", ["data:image/png,rawbytes"], 400, "invalid_image_url"),
    ("bracket-url", ["http://[::1/x.png"], 400, "invalid_image_url"),
    ("port-out-of-range", ["http://images.test:99999/x.png"], 400, "invalid_image_url"),
    ("port-not-a-number", ["http://images.test:abc/x.png"], 400, "invalid_image_url"),
    ("cgnat", ["http://cgnat.test/x.png"], 400, "image_url_forbidden"),
    ("cgnat-literal", ["http://100.64.0.1/x.png"], 400, "image_url_forbidden"),
    ("private", ["http://private.test/x.png"], 400, "image_url_forbidden"),
    ("ipv4-mapped", ["http://mapped.test/x.png"], 400, "image_url_forbidden"),
    ("ipv4-mapped-literal", ["http://[::ffff:169.254.169.254]/"], 400, "image_url_forbidden"),
    ("6to4", ["http://sixtofour.test/x.png"], 400, "image_url_forbidden"),
    ("metadata", ["http://metadata.test/latest/meta-data"], 400, "image_url_forbidden"),
    ("one-bad-address", ["http://mixed.test/x.png"], 400, "image_url_forbidden"),
    ("loopback-literal", ["http://[::1]:9/x.png"], 400, "image_url_forbidden"),
    ("redirect-to-private", ["{server}/to-private"], 400, "image_url_forbidden"),
    ("redirect-to-cgnat-name", ["{server}/to-cgnat"], 400, "image_url_forbidden"),
    ("redirect-to-mapped", ["{server}/to-mapped"], 400, "image_url_forbidden"),
]
REDIRECTS = {
    "/to-private": Reply(302, headers={"Location": "http://10.0.0.1/x.png"}),
    "/to-cgnat": Reply(302, headers={"Location": "http://cgnat.test/x.png"}),
    "/to-mapped": Reply(307, headers={"Location": "http://[::ffff:10.0.0.1]/x.png"}),
}


async def stub_resolver(host: str, port: int) -> list[str]:
    if host not in RESOLVES:
        raise OSError(f"unknown {host}")
    return RESOLVES[host]


def only_loopback_server_is_public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Test policy: the loopback server at 127.0.0.1 stands in for a public host."""
    return str(addr) == "127.0.0.1" or is_public_address(addr)


@pytest.fixture
async def client() -> Any:
    settings = make_settings(
        limits={"max_image_bytes": MAX_IMAGE_BYTES}, image_fetch={"enabled": True}
    )
    app = create_app(settings)
    async with image_server(REDIRECTS) as server, LifespanManager(app) as manager:
        fetcher = app.state.router.images.fetcher
        fetcher.resolver = stub_resolver
        fetcher.is_allowed = only_loopback_server_is_public
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router.test") as c:
            await wait_ready(c)
            c.headers["x-test-server"] = f"http://images.test:{server.port}"
            yield c


@pytest.mark.parametrize("urls,status,code", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_hostile_image_gets_its_error_and_the_server_stays_healthy(
    client: httpx.AsyncClient, urls: list[str], status: int, code: str
) -> None:
    urls = [u.format(server=client.headers["x-test-server"]) for u in urls]
    resp = await client.post(CHAT, json={"messages": [image_message("look", *urls)]})
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code, error
    assert error["param"] == ("messages" if code == "too_many_images" else ONE)
    assert len(error["message"]) < 300
    normal = await client.post(
        CHAT, json={"messages": [image_message("and this?", data_url(png_bytes()))]}
    )
    assert normal.status_code == 200, normal.text


def _kib(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    assert match
    return int(match.group(1))


async def test_memory_stays_bounded_under_a_burst_of_large_images() -> None:
    """6 concurrent requests x 2 PNGs of 4000x4000 (64 MB decoded each): with two decode
    threads and the pixel budget, peak RSS grows by well under what 12 simultaneous
    decodes need (~770 MB), and memory goes back once the burst is over."""
    big = Image.new("RGB", (4000, 4000), (10, 200, 30))
    big.paste(Image.linear_gradient("L").resize((4000, 50)).convert("RGB"), (0, 0))
    url = data_url(encode(big, "PNG"))
    body = {"messages": [image_message("what?", url, url)]}
    settings = make_settings(limits={"max_concurrency": 64, "image_wait_s": 120})
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router.test") as c:
            await wait_ready(c)
            small = {"messages": [image_message("warm up", data_url(png_bytes()))]}
            assert (await c.post(CHAT, json=small)).status_code == 200
            try:
                Path("/proc/self/clear_refs").write_text("5")  # reset the peak mark
            except OSError:
                pytest.skip("cannot reset peak RSS on this kernel")
            before = _kib("VmRSS")
            responses = await asyncio.gather(*(c.post(CHAT, json=body) for _ in range(6)))
            peak_growth_mib = (_kib("VmHWM") - before) / 1024
            after_growth_mib = (_kib("VmRSS") - before) / 1024
    assert [r.status_code for r in responses] == [200] * 6, responses[0].text
    assert peak_growth_mib < 300, f"peak RSS grew {peak_growth_mib:.0f} MiB"
    assert after_growth_mib < 60, f"RSS stayed {after_growth_mib:.0f} MiB higher"
