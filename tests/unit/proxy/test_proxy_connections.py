"""Proxy mode against real loopback sockets: stale keep-alive connections, an upstream that
is down, a full connection pool. respx passes 127.0.0.1 through and fails any other host."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpcore
import httpx
import pytest
import respx
from httpcore._backends.auto import AutoBackend

from models.core.routing_config import RoutingConfig
from tests.helpers import app_client, free_port, make_settings, user
from tests.raw_upstream import RawUpstream

CHAT = "/v1/chat/completions"
HI = {"messages": [user("hi")]}


@asynccontextmanager
async def router(*base_urls: str, **proxy: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app in proxy mode with models m0, m1, ... at ``base_urls`` (in routing order)."""
    config = RoutingConfig.model_validate(
        {"models": [{"name": f"m{i}", "base_url": url} for i, url in enumerate(base_urls)]}
    )
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()  # anything else: respx refuses it
        async with app_client(make_settings(mode="proxy", proxy=proxy), config=config) as client:
            yield client


async def test_request_lost_on_stale_keepalive_connection_is_resent() -> None:
    """The upstream closes a pooled connection as the next request arrives: that request
    never reached it, so it is sent again on a new connection (before: a 502)."""
    async with RawUpstream(drop="reused") as up, router(up.base_url) as client:
        first = await client.post(CHAT, json=HI)
        second = await client.post(CHAT, json=HI)
        metrics = (await client.get("/metrics")).text
    assert first.status_code == 200 and second.status_code == 200, second.text
    assert second.headers["x-router-model"] == "m0"
    assert (up.requests, up.answered, up.connections) == (3, 2, 2)
    stale = 'llm_router_upstream_requests_total{model="m0",outcome="stale_connection"} 1.0'
    assert stale in metrics


async def test_fresh_connection_dropped_is_not_resent() -> None:
    """Dropped on a new connection, the request may have been processed: one send only."""
    async with RawUpstream(drop="all") as up, router(up.base_url) as client:
        resp = await client.post(CHAT, json=HI)
    assert resp.status_code == 502
    assert resp.headers["x-router-model"] == "m0"
    assert up.requests == 1


async def test_burst_against_upstream_closing_reused_connections_has_no_502() -> None:
    """Every reused connection fails; bounded burst, concurrency 16: every answer is 200."""
    async with RawUpstream(drop="reused") as up, router(up.base_url) as client:
        for _ in range(3):
            answers = await asyncio.gather(*(client.post(CHAT, json=HI) for _ in range(16)))
            assert [r.status_code for r in answers] == [200] * 16
    assert up.answered == 48


async def test_upstream_down_falls_back_then_502_with_headers() -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    async with RawUpstream() as up, router(down, up.base_url) as client:
        resp = await client.post(CHAT, json=HI)
    assert resp.status_code == 200 and resp.headers["x-router-model"] == "m1"
    assert up.requests == 1
    async with router(down) as client:
        alone = await client.post(CHAT, json=HI)
    assert alone.status_code == 502
    assert alone.json()["error"]["code"] == "upstream_error"
    assert alone.headers["x-router-model"] == "m0"
    assert alone.headers["x-router-strategy"] == "fake"
    assert alone.headers["x-router-intent"] == "fake_intent"


async def test_full_connection_pool_is_503_saturated_without_fallback() -> None:
    async with (
        RawUpstream(delay_s=1.0) as slow,
        RawUpstream() as spare,
        router(slow.base_url, spare.base_url, max_connections=1, pool_timeout_s=0.2) as client,
    ):
        answers = await asyncio.gather(*(client.post(CHAT, json=HI) for _ in range(2)))
        metrics = (await client.get("/metrics")).text
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 503]
    refused = next(r for r in answers if r.status_code == 503)
    assert refused.json()["error"]["code"] == "proxy_saturated"
    assert refused.headers["retry-after"]
    assert refused.headers["x-router-model"] == "m0"
    assert spare.requests == 0  # local saturation is not the upstream's fault
    assert 'llm_router_rejected_total{reason="proxy_saturated"} 1.0' in metrics
    assert 'outcome="timeout"' not in metrics and "fallbacks_total{" not in metrics


async def test_failed_connect_is_retried_on_the_spot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connect that fails once (a transient refusal or reset: nothing was sent) is tried
    again before the request counts as failed; with one candidate that was a 502."""
    calls: list[str] = []
    original = AutoBackend.connect_tcp

    async def flaky(self: AutoBackend, host: str, port: int, **kwargs: Any) -> Any:
        calls.append(host)
        if len(calls) == 1:
            raise httpcore.ConnectError("transient refusal")
        return await original(self, host, port, **kwargs)

    monkeypatch.setattr(AutoBackend, "connect_tcp", flaky)
    async with RawUpstream() as up, router(up.base_url) as client:
        resp = await client.post(CHAT, json=HI)
    assert resp.status_code == 200
    assert len(calls) == 2 and up.requests == 1
