"""Proxy mode: what is re-sent to another model and what is not, local saturation, and
rate limits passed through (respx upstreams)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from models.core.routing_config import ModelConfig
from tests.helpers import user
from tests.unit.proxy.proxy_support import completion, opted_in, proxy

CHAT = "/v1/chat/completions"
HI = {"messages": [user("hi")]}
AFTER_SEND = {
    "read_timeout": (httpx.ReadTimeout("slow answer"), 504, "upstream_timeout"),
    "read_error": (httpx.ReadError("reset"), 502, "upstream_error"),
    "protocol_error": (httpx.RemoteProtocolError("peer closed"), 502, "upstream_error"),
}


@pytest.mark.parametrize("kind", list(AFTER_SEND))
async def test_failure_after_send_is_not_resent(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The first model may have finished (and billed) the answer: no second model."""
    failure, status, code = AFTER_SEND[kind]
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].mock(side_effect=[failure])
        mock.routes["beta"].respond(json=completion("from beta"))
        resp = await client.post(CHAT, json=HI)
        metrics = (await client.get("/metrics")).text
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
    assert "not re-sent" in resp.json()["error"]["message"]
    assert not mock.routes["beta"].called
    assert resp.headers["x-router-model"] == "alpha"
    assert resp.headers["x-router-strategy"] == "fake"
    assert resp.headers["x-router-intent"] == "fake_intent"
    assert "llm_router_upstream_fallbacks_total{" not in metrics


@pytest.mark.parametrize("kind", list(AFTER_SEND))
async def test_failure_after_send_falls_back_when_opted_in(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    async with proxy(monkeypatch, config=opted_in("alpha")) as (client, mock):
        mock.routes["alpha"].mock(side_effect=[AFTER_SEND[kind][0]])
        mock.routes["beta"].respond(json=completion("from beta"))
        resp = await client.post(CHAT, json=HI)
    assert resp.status_code == 200
    assert resp.headers["x-router-model"] == "beta"


def test_retry_on_timeout_must_be_a_boolean() -> None:
    assert ModelConfig(name="m", retry_on_timeout=True).retry_on_timeout
    with pytest.raises(ValidationError, match="retry_on_timeout"):
        ModelConfig.model_validate({"name": "m", "retry_on_timeout": "sometimes"})


async def test_pool_timeout_is_local_saturation(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].mock(side_effect=httpx.PoolTimeout("no free connection"))
        mock.routes["beta"].respond(json=completion("from beta"))
        resp = await client.post(CHAT, json=HI)
        metrics = (await client.get("/metrics")).text
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "proxy_saturated"
    assert resp.headers["retry-after"]
    assert resp.headers["x-router-model"] == "alpha"
    assert not mock.routes["beta"].called
    assert 'llm_router_rejected_total{reason="proxy_saturated"} 1.0' in metrics
    assert 'llm_router_upstream_requests_total{model="alpha"' not in metrics


RATE_LIMITED = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rl"}}


async def test_429_on_only_candidate_is_passed_through(monkeypatch: pytest.MonkeyPatch) -> None:
    headers = {"retry-after": "17", "x-ratelimit-remaining-requests": "0"}
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["beta"].respond(429, json=RATE_LIMITED, headers=headers)
        for stream in (False, True):
            resp = await client.post(CHAT, json={"model": "beta", **HI, "stream": stream})
            assert resp.status_code == 429
            assert resp.json() == RATE_LIMITED
            assert resp.headers["retry-after"] == "17"
            assert resp.headers["x-ratelimit-remaining-requests"] == "0"
            assert resp.headers["x-router-model"] == "beta"
            assert resp.headers["x-router-strategy"] == "fake"


async def test_all_candidates_rate_limited_is_429(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch, max_attempts=2) as (client, mock):
        mock.routes["alpha"].respond(429, json=RATE_LIMITED, headers={"retry-after": "30"})
        mock.routes["beta"].respond(429, text="", headers={"retry-after": "2"})
        resp = await client.post(CHAT, json=HI)
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "2"  # the last one tried
    assert resp.headers["x-router-model"] == "beta"
    assert resp.json()["error"]["type"] == "rate_limit_error"  # empty upstream body: ours
    assert mock.routes["alpha"].called and mock.routes["beta"].called


async def test_rate_limit_and_server_error_is_502(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch, max_attempts=2) as (client, mock):
        mock.routes["alpha"].respond(429, json=RATE_LIMITED, headers={"retry-after": "30"})
        mock.routes["beta"].respond(500, text="boom")
        resp = await client.post(CHAT, json=HI)
    assert resp.status_code == 502
    assert "alpha: HTTP 429" in resp.json()["error"]["message"]
    assert resp.headers["x-router-model"] == "beta"
