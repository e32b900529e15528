"""Proxy mode, ``stream: true``: SSE relayed as sent, fallback only before the first byte."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.helpers import user
from tests.unit.proxy.proxy_support import SSE, opted_in, proxy, sse

CHAT = "/v1/chat/completions"
STREAM = {"messages": [user("hi")], "stream": True, "stream_options": {"include_usage": True}}


async def test_stream_relayed_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].mock(return_value=sse())
        async with client.stream("POST", CHAT, json=STREAM) as resp:
            received = [chunk async for chunk in resp.aiter_raw()]
        metrics = (await client.get("/metrics")).text
    assert resp.status_code == 200
    assert b"".join(received) == b"".join(SSE)
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["x-router-model"] == "alpha"
    assert resp.headers["x-router-strategy"] == "fake"
    assert resp.headers["cache-control"] == "no-cache"
    body = orjson.loads(mock.routes["alpha"].calls[0].request.content)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert 'llm_router_upstream_duration_seconds_count{model="alpha"} 1.0' in metrics


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503),
        httpx.Response(429),
        httpx.ConnectError("refused"),
    ],
    ids=["503", "429", "connect"],
)
async def test_stream_falls_back_before_first_byte(
    monkeypatch: pytest.MonkeyPatch, failure: object
) -> None:
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].mock(side_effect=[failure])
        mock.routes["beta"].mock(return_value=sse())
        resp = await client.post(CHAT, json=STREAM)
    assert resp.status_code == 200
    assert resp.content == b"".join(SSE)
    assert resp.headers["x-router-model"] == "beta"


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("slow"), sse([], fail=httpx.ReadError("reset"))],
    ids=["read-timeout", "broken-before-first-chunk"],
)
async def test_stream_not_resent_once_upstream_had_it(
    monkeypatch: pytest.MonkeyPatch, failure: object
) -> None:
    """The request reached the upstream (it may be generating, and billing): no fallback
    unless the model opts in with retry_on_timeout."""
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].mock(side_effect=[failure])
        mock.routes["beta"].mock(return_value=sse())
        resp = await client.post(CHAT, json=STREAM)
    assert resp.status_code in (502, 504)
    assert resp.headers["x-router-model"] == "alpha"
    assert not mock.routes["beta"].called
    config = opted_in("alpha")
    async with proxy(monkeypatch, config=config) as (client, mock):
        mock.routes["alpha"].mock(side_effect=[failure])
        mock.routes["beta"].mock(return_value=sse())
        resp = await client.post(CHAT, json=STREAM)
    assert resp.status_code == 200
    assert resp.headers["x-router-model"] == "beta"
    assert resp.content == b"".join(SSE)


async def test_no_retry_after_first_streamed_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].mock(return_value=sse(SSE[:1], fail=httpx.ReadError("reset")))
        mock.routes["beta"].mock(return_value=sse())
        # the relay leaves the body unfinished so the server aborts the connection; the
        # in-process ASGI transport reports that as an incomplete response
        with pytest.raises(AssertionError):
            await client.post(CHAT, json=STREAM)
        metrics = (await client.get("/metrics")).text
    assert mock.routes["alpha"].call_count == 1
    assert not mock.routes["beta"].called
    assert "llm_router_upstream_fallbacks_total{" not in metrics


async def test_stream_client_error_returned_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    error = {
        "error": {
            "message": "context too long",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    async with proxy(monkeypatch) as (client, mock):
        mock.routes["alpha"].respond(400, json=error)
        resp = await client.post(CHAT, json=STREAM)
    assert resp.status_code == 400
    assert resp.json() == error
    assert resp.headers["content-type"] == "application/json"
    assert not mock.routes["beta"].called
