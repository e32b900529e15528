"""Proxy mode, non-streaming: pass-through, keys, 4xx, fallbacks, vision, manual, headers."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import httpx
import orjson
import pytest

from models.core.routing_config import RoutingConfig
from tests.helpers import data_url, image_message, png_bytes, user
from tests.unit.proxy.proxy_support import ALPHA_KEY, CONFIG, completion, proxy

CHAT = "/v1/chat/completions"


def sent(route: Any, i: int = 0) -> dict[str, Any]:
    return orjson.loads(route.calls[i].request.content)  # type: ignore[no-any-return]


async def test_body_and_response_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch) as (client, mock):
        answer = {**completion("hi there", "alpha-upstream"), "vendor_extra": {"a": 1}}
        mock.routes["alpha"].respond(201, json=answer, headers={"x-ratelimit-limit": "7"})
        request = {
            "model": "router",
            "messages": [user("hi")],
            "temperature": 0.2,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "router": {"exclude_models": []},
            "custom_field": [1, 2],
        }
        resp = await client.post(CHAT, json=request)
    assert resp.status_code == 201
    assert resp.json() == answer
    assert resp.headers["x-ratelimit-limit"] == "7"
    body = sent(mock.routes["alpha"])
    assert body == {
        **{k: v for k, v in request.items() if k != "router"},
        "model": "alpha-upstream",
    }


async def test_api_key_from_env_and_model_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].respond(json=completion())
        resp = await client.post(
            CHAT,
            json={"messages": [user("hi")]},
            headers={"authorization": "Bearer client-token", "x-request-id": "req-42"},
        )
    assert resp.status_code == 200
    upstream = mock.routes["alpha"].calls[0].request.headers
    assert upstream["authorization"] == f"Bearer {ALPHA_KEY}"  # not the client's token
    assert upstream["x-tenant"] == "t1"
    assert upstream["x-request-id"] == "req-42"


async def test_missing_key_skips_model(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch, key=None) as (client, mock):
        mock.routes["beta"].respond(json=completion("from beta"))
        resp = await client.post(CHAT, json={"messages": [user("hi")]})
        metrics = (await client.get("/metrics")).text
    assert resp.status_code == 200 and resp.headers["x-router-model"] == "beta"
    assert not mock.routes["alpha"].called
    assert (
        'llm_router_upstream_fallbacks_total{from_model="alpha",reason="unusable",to_model="beta"}'
        in metrics
    )
    only_alpha = RoutingConfig.model_validate({"models": [CONFIG.models[0].model_dump()]})
    async with proxy(monkeypatch, config=only_alpha, key=None) as (client, mock):
        resp = await client.post(CHAT, json={"messages": [user("hi")]})
    assert resp.status_code == 502
    assert "alpha: API key env var ALPHA_KEY is not set" in resp.json()["error"]["message"]
    assert not mock.routes["alpha"].called


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_returned_as_is(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    error = {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "x", "code": "nope"}
    }
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].respond(status, json=error)
        resp = await client.post(CHAT, json={"messages": [user("hi")]})
    assert resp.status_code == status
    assert resp.json() == error
    assert resp.headers["x-router-model"] == "alpha"
    assert not mock.routes["beta"].called


# the upstream provably did no work (no connection) or answered with an error: fall back
FAILURES = {
    "connect_error": httpx.ConnectError("refused"),
    "connect_timeout": httpx.ConnectTimeout("slow connect"),
    "429": httpx.Response(429, json={"error": {"message": "slow down"}}),
    "500": httpx.Response(500, text="boom"),
    "503": httpx.Response(503, json={"error": {"message": "overloaded"}}),
}
REASONS = {"connect_error": "connect_error", "connect_timeout": "connect_timeout"}


@pytest.mark.parametrize("kind", list(FAILURES))
async def test_fallback_on_each_failure_kind(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].mock(side_effect=[FAILURES[kind]])
        mock.routes["beta"].respond(json=completion("from beta"))
        resp = await client.post(CHAT, json={"messages": [user("hi")]})
        metrics = (await client.get("/metrics")).text
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "from beta"
    assert resp.headers["x-router-model"] == "beta"
    assert sent(mock.routes["beta"])["model"] == "beta"
    reason = REASONS.get(kind, "429" if kind == "429" else "5xx")
    line = f'{{from_model="alpha",reason="{reason}",to_model="beta"}} 1.0'
    assert "llm_router_upstream_fallbacks_total" + line in metrics


async def test_all_failing_is_502_naming_models(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch, max_attempts=2) as (client, mock):
        mock.routes["alpha"].respond(500)
        mock.routes["beta"].mock(side_effect=httpx.ConnectError("refused"))
        resp = await client.post(CHAT, json={"messages": [user("hi")]})
    assert resp.status_code == 502
    error = resp.json()["error"]
    assert error["type"] == "upstream_error"
    assert "alpha: HTTP 500" in error["message"] and "beta: connection error" in error["message"]
    assert ALPHA_KEY not in resp.text
    assert not mock.routes["seer"].called  # max_attempts=2
    assert resp.headers["x-router-strategy"] == "fake"


async def test_last_failure_timeout_is_504(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch, max_attempts=2) as (client, mock):
        mock.routes["alpha"].respond(503)
        mock.routes["beta"].mock(side_effect=httpx.ReadTimeout("slow"))
        resp = await client.post(CHAT, json={"messages": [user("hi")]})
    assert resp.status_code == 504
    assert resp.json()["error"]["code"] == "upstream_timeout"


async def test_total_time_budget_stops_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=completion())

    async with proxy(monkeypatch, total_timeout_s=0.2) as (client, mock):
        mock.routes["alpha"].mock(side_effect=stall)
        resp = await client.post(CHAT, json={"messages": [user("hi")]})
    assert resp.status_code == 504
    assert "total_timeout_s" in resp.json()["error"]["message"]
    assert not mock.routes["beta"].called


async def test_images_only_go_to_vision_models(monkeypatch: pytest.MonkeyPatch) -> None:
    message = image_message("what is this?", data_url(png_bytes()))
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["seer"].respond(503)
        mock.routes["seer2"].respond(503)
        resp = await client.post(CHAT, json={"messages": [message]})
        assert resp.status_code == 502
        assert mock.routes["seer"].called and mock.routes["seer2"].called
        assert not mock.routes["alpha"].called and not mock.routes["beta"].called
        manual = await client.post(CHAT, json={"model": "alpha", "messages": [message]})
    assert manual.status_code == 400
    assert manual.json()["error"]["code"] == "model_not_eligible"
    assert not mock.routes["alpha"].called


async def test_manual_routing_goes_to_named_model_without_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["beta"].respond(json=completion("beta here"))
        resp = await client.post(CHAT, json={"model": "beta", "messages": [user("hi")]})
        assert resp.headers["x-router-model"] == "beta"
        assert sent(mock.routes["beta"])["model"] == "beta"
        mock.routes["seer"].respond(500)
        failed = await client.post(CHAT, json={"model": "seer", "messages": [user("hi")]})
    assert failed.status_code == 502
    assert mock.routes["seer"].call_count == 1 and not mock.routes["alpha"].called


async def test_headers_on_proxied_response(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].respond(json=completion(), headers={"x-request-id": "up-1"})
        resp = await client.post(
            CHAT, json={"messages": [user("hi")]}, headers={"x-request-id": "abc-1"}
        )
    assert resp.headers["x-router-model"] == "alpha"
    assert resp.headers["x-router-strategy"] == "fake"
    assert resp.headers["x-router-intent"] == "fake_intent"
    assert resp.headers["x-request-id"] == "abc-1"
    assert resp.headers["x-upstream-request-id"] == "up-1"


async def test_metrics_after_traffic(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].mock(side_effect=[httpx.Response(500), httpx.ConnectError("x")])
        mock.routes["beta"].respond(json=completion())
        for _ in range(2):
            assert (await client.post(CHAT, json={"messages": [user("hi")]})).status_code == 200
        text = (await client.get("/metrics")).text
    for line in (
        'llm_router_upstream_requests_total{model="alpha",outcome="5xx"} 1.0',
        'llm_router_upstream_requests_total{model="alpha",outcome="connect_error"} 1.0',
        'llm_router_upstream_requests_total{model="beta",outcome="2xx"} 2.0',
        'llm_router_upstream_fallbacks_total{from_model="alpha",reason="5xx",to_model="beta"} 1.0',
        'llm_router_upstream_fallbacks_total{from_model="alpha",reason="connect_error",'
        'to_model="beta"} 1.0',
        'llm_router_upstream_ttfb_seconds_count{model="beta"} 2.0',
        'llm_router_upstream_duration_seconds_count{model="beta"} 2.0',
        "llm_router_proxy_overhead_seconds_count 2.0",
    ):
        assert line in text, line


async def test_upstream_cookies_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """One client serves every user: a cookie set for one request must not ride on the next."""
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].respond(json=completion(), headers={"set-cookie": "session=u1"})
        for _ in range(2):
            await client.post(CHAT, json={"messages": [user("hi")]})
    assert all("cookie" not in call.request.headers for call in mock.routes["alpha"].calls)


async def test_compressed_answer_passed_through_undecoded(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = orjson.dumps(completion("zipped"))
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].respond(
            content=gzip.compress(raw),
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        )
        resp = await client.post(
            CHAT, json={"messages": [user("hi")]}, headers={"accept-encoding": "gzip"}
        )
        plain = await client.post(
            CHAT, json={"messages": [user("hi")]}, headers={"accept-encoding": ""}
        )
    assert resp.headers["content-encoding"] == "gzip"
    assert resp.json()["choices"][0]["message"]["content"] == "zipped"  # httpx decodes it
    assert mock.routes["alpha"].calls[0].request.headers["accept-encoding"] == "gzip"
    assert plain.status_code == 200
    assert mock.routes["alpha"].calls[1].request.headers["accept-encoding"] in ("", "identity")
