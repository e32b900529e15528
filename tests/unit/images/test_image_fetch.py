"""Image fetching (ROUTER_IMAGE_FETCH__ENABLED): URL checks, the address policy, DNS
resolved once, redirects re-checked, total deadlines, byte caps.

Every test runs under ``loopback_only``: names resolve through a stub resolver, servers
listen on 127.0.0.1, and any attempt to look up or connect elsewhere fails the test.
The "public" address in these tests is 127.0.0.1, allowed by an explicit test policy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.images.fetch import is_public_address, parse_url
from app.server.factory import create_app
from tests.helpers import image_message, make_settings, png_bytes, wait_ready
from tests.netguard import Reply, image_server, loopback_only  # noqa: F401

pytestmark = pytest.mark.usefixtures("loopback_only")

CHAT = "/v1/chat/completions"
PARAM = "messages.0.content.1.image_url"
VISION = "nvidia/nemotron-nano-12b-v2-vl"
PNG = png_bytes(16, 16)
LOCAL = ipaddress.ip_address("127.0.0.1")


class StubResolver:
    """Maps names to address lists; a list of lists answers successive lookups in turn."""

    def __init__(self, table: dict[str, list[str] | list[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answer = self.table.get(host)
        if answer is None:
            raise OSError(f"stub resolver: unknown name {host}")
        if answer and isinstance(answer[0], list):
            n = sum(1 for c in self.calls if c == host)
            return list(answer[min(n, len(answer)) - 1])  # type: ignore[arg-type]
        return list(answer)  # type: ignore[arg-type]


def loopback_is_public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Test policy: 127.0.0.1 plays the public internet; everything else as in production."""
    return addr == LOCAL or is_public_address(addr)


@asynccontextmanager
async def fetch_client(
    resolver: StubResolver,
    policy: Callable[[Any], bool] | None = loopback_is_public,
    limits: dict[str, Any] | None = None,
    **fetch: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(image_fetch={"enabled": True, **fetch}, limits=limits or {})
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        fetcher = app.state.router.images.fetcher
        fetcher.resolver = resolver
        if policy is not None:
            fetcher.is_allowed = policy
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router.test") as c:
            await wait_ready(c)
            yield c


async def ask(client: httpx.AsyncClient, *urls: str) -> httpx.Response:
    return await client.post(CHAT, json={"messages": [image_message("what is this?", *urls)]})


def error_of(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code, error
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/x.png",
        "http://images.test:99999/x.png",
        "http://images.test:abc/x.png",
        "http://images.test:0/x.png",
        "http://user:secret@images.test/x.png",
        "ftp://images.test/x.png",
        "http:///x.png",
        "javascript:alert(1)",
    ],
)
async def test_malformed_urls_are_400_invalid_image_url(url: str) -> None:
    resolver = StubResolver({"images.test": ["127.0.0.1"]})
    async with fetch_client(resolver) as client:
        error = error_of(await ask(client, url), 400, "invalid_image_url")
    assert error["param"] == PARAM
    assert resolver.calls == []


NON_GLOBAL = [
    "127.0.0.1",
    "10.0.0.1",
    "100.64.0.1",  # carrier-grade NAT (also used for cloud metadata)
    "100.100.100.200",  # Alibaba Cloud metadata, inside 100.64.0.0/10
    "169.254.169.254",
    "0.0.0.0",
    "192.168.1.1",
    "224.0.0.1",
    "::1",
    "fc00::1",
    "fe80::1",
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::ffff:100.64.0.1",
    "::10.0.0.1",  # IPv4-compatible
    "2002:a00:1::1",  # 6to4 wrapping 10.0.0.1
    "2002:7f00:1::1",  # 6to4 wrapping 127.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
]


@pytest.mark.parametrize("address", NON_GLOBAL)
def test_address_policy_refuses_non_global(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "2002:808:808::1"])
def test_address_policy_allows_global(address: str) -> None:
    """Pure function of the address: nothing connects."""
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", NON_GLOBAL)
async def test_names_resolving_to_non_global_addresses_are_refused_before_connecting(
    address: str,
) -> None:
    resolver = StubResolver({"evil.test": ["203.0.113.9", address]})  # one bad answer is enough
    async with fetch_client(resolver, policy=None) as client:
        error = error_of(await ask(client, "http://evil.test/x.png"), 400, "image_url_forbidden")
    assert error["param"] == PARAM


async def test_connects_to_the_checked_address_with_the_name_as_host() -> None:
    """Resolved once; the connection goes to the checked address; Host names the host;
    no compression is accepted; an HTTP proxy from the environment is not used."""
    async with image_server({"/cat.png": Reply(body=PNG)}) as server:
        # a second lookup would get an address the guard refuses (DNS rebinding)
        resolver = StubResolver({"images.test": [["127.0.0.1"], ["10.0.0.1"]]})
        async with fetch_client(resolver) as client:
            with pytest.MonkeyPatch.context() as env:
                env.setenv("HTTP_PROXY", "http://10.1.2.3:3128")
                env.setenv("ALL_PROXY", "http://10.1.2.3:3128")
                resp = await ask(client, f"http://images.test:{server.port}/cat.png")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == VISION
    assert resolver.calls == ["images.test"]
    [(path, headers)] = server.requests
    assert path == "/cat.png"
    assert headers["host"] == f"images.test:{server.port}"
    assert headers["accept-encoding"] == "identity"


async def test_redirects_are_followed_and_each_hop_is_checked() -> None:
    routes = {
        "/a": Reply(302, headers={"Location": "/b"}),
        "/b": Reply(301, headers={"Location": "http://images.test:{port}/cat.png"}),
        "/cat.png": Reply(body=PNG),
        "/to-private": Reply(302, headers={"Location": "http://10.0.0.1/x.png"}),
        "/to-metadata-name": Reply(302, headers={"Location": "http://meta.test/latest"}),
        "/to-mapped": Reply(307, headers={"Location": "http://[::ffff:127.0.0.2]/x"}),
        "/loop": Reply(302, headers={"Location": "/loop"}),
        "/to-file": Reply(302, headers={"Location": "file:///etc/passwd"}),
    }
    async with image_server(routes) as server:
        location = routes["/b"].headers["Location"]
        routes["/b"].headers["Location"] = location.format(port=server.port)
        resolver = StubResolver({"images.test": ["127.0.0.1"], "meta.test": ["169.254.169.254"]})
        base = f"http://images.test:{server.port}"
        async with fetch_client(resolver, max_redirects=3) as client:
            ok = await ask(client, f"{base}/a")
            private = await ask(client, f"{base}/to-private")
            metadata = await ask(client, f"{base}/to-metadata-name")
            mapped = await ask(client, f"{base}/to-mapped")
            loop = await ask(client, f"{base}/loop")
            scheme = await ask(client, f"{base}/to-file")
            healthy = await ask(client, f"{base}/cat.png")
    assert ok.status_code == 200, ok.text
    for resp in (private, metadata, mapped):
        error_of(resp, 400, "image_url_forbidden")
    error_of(loop, 400, "image_fetch_failed")
    error_of(scheme, 400, "invalid_image_url")
    assert healthy.status_code == 200
    assert [p for p, _ in server.requests].count("/loop") == 4  # first hop + 3 redirects


async def test_slow_drip_hits_the_total_deadline() -> None:
    """One byte every 0.1 s never trips a per-read timeout; the total deadline ends it."""
    async with image_server({"/drip.png": Reply(body=PNG, drip_s=0.1)}) as server:
        resolver = StubResolver({"images.test": ["127.0.0.1"]})
        async with fetch_client(resolver, timeout_s=0.5) as client:
            resp = await ask(client, f"http://images.test:{server.port}/drip.png")
    error_of(resp, 400, "image_fetch_timeout")


async def test_request_deadline_covers_all_fetches_and_fetches_run_in_parallel() -> None:
    routes = {f"/{i}.png": Reply(body=PNG, delay_s=0.3) for i in range(3)}
    routes["/slow.png"] = Reply(body=PNG, delay_s=5.0)
    async with image_server(routes) as server:
        resolver = StubResolver({"images.test": ["127.0.0.1"]})
        base = f"http://images.test:{server.port}"
        async with fetch_client(resolver, timeout_s=5.0, request_timeout_s=1.0) as client:
            ok = await ask(client, *(f"{base}/{i}.png" for i in range(3)))
            assert server.max_active >= 2  # the three fetches overlapped
            slow = await ask(client, f"{base}/0.png", f"{base}/slow.png")
    assert ok.status_code == 200, ok.text
    error_of(slow, 400, "image_fetch_timeout")


async def test_byte_cap_is_enforced_while_streaming() -> None:
    routes = {
        "/endless": Reply(chunked_forever=True),
        "/declared": Reply(body=b"x", headers={"Content-Length": "999999999"}),
        "/gone": Reply(404),
    }
    async with image_server(routes) as server:
        resolver = StubResolver({"images.test": ["127.0.0.1"]})
        base = f"http://images.test:{server.port}"
        async with fetch_client(resolver, limits={"max_image_bytes": 100_000}) as client:
            endless = await ask(client, f"{base}/endless")
            declared = await ask(client, f"{base}/declared")
            gone = await ask(client, f"{base}/gone")
    error_of(endless, 413, "image_too_large")
    error_of(declared, 413, "image_too_large")
    error_of(gone, 400, "image_fetch_failed")


async def test_unresolvable_name_is_400() -> None:
    async with fetch_client(StubResolver({})) as client:
        error_of(await ask(client, "http://nowhere.test/x.png"), 400, "image_fetch_failed")


def test_parse_url_keeps_host_header_and_path() -> None:
    target = parse_url("https://Images.Test:8443/a/b.png?x=1#frag", "p")
    assert (target.host, target.port, target.path) == ("images.test", 8443, "/a/b.png?x=1")
    assert target.host_header == "images.test:8443"
    assert target.url_for("::1") == "https://[::1]:8443/a/b.png?x=1"
