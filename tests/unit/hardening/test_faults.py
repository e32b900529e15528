"""Faults through the real app: a full encoder queue is 429 with retry-after for every
strategy, a batcher closed at shutdown is 503, a hanging or failing classifier follows the
failure policy, one bad item fails only itself, and an unexpected error is a 500 in
OpenAI's shape that still carries the request id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

import strategies.intent.strategy
from app.api.state import RouterState
from app.server.factory import create_app
from tests.fakes import FakeStrategy, Faults
from tests.helpers import make_settings, user, wait_ready

CHAT = "/v1/chat/completions"
STRATEGIES = {
    "intent": {"strategy": "intent"},
    "auto": {"strategy": "tests.fakes:FakeAutoStrategy", "auto": {"artifact": "/unused"}},
}
FALLBACK_MODEL = "nvidia/nvidia-nemotron-nano-9b-v2"  # the default config's 'other' model


@pytest.fixture(autouse=True)
def fake_intent_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        strategies.intent.strategy.BACKENDS, "embedding", "tests.fakes:FakeIntentClassifier"
    )


@asynccontextmanager
async def started(**settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = create_app(make_settings(**settings))
    try:
        async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await wait_ready(client, timeout=20)
                yield client, app
    finally:
        Faults.gate.set()  # never leave a batch thread parked


def post(client: httpx.AsyncClient, text: str = "hi") -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(client.post(CHAT, json={"messages": [user(text)]}))


def error_code(resp: httpx.Response) -> str:
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return str(error["code"])


async def until(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("condition not reached")


@pytest.mark.parametrize("kind", list(STRATEGIES))
async def test_full_encoder_queue_is_429_with_retry_after(kind: str) -> None:
    tiny = {"max_size": 1, "window_ms": 0, "queue_size": 1}
    async with started(**STRATEGIES[kind], batch=tiny) as (client, _):
        Faults.gate.clear()
        held = post(client)  # in the batch function
        await asyncio.sleep(0.1)
        queued = post(client)  # the one queue place
        await asyncio.sleep(0.1)
        refused = await client.post(CHAT, json={"messages": [user("hi")]})
        Faults.gate.set()
        answers = await asyncio.gather(held, queued)
    assert refused.status_code == 429, refused.text  # not a silent 200 with the fallback
    assert error_code(refused) == "overloaded"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.headers["retry-after"]
    assert [a.status_code for a in answers] == [200, 200]
    assert all(a.json()["router"]["reason"] != "fallback" for a in answers)


@pytest.mark.parametrize("kind", list(STRATEGIES))
async def test_batcher_closed_during_shutdown_is_503(kind: str) -> None:
    async with started(**STRATEGIES[kind]) as (client, app):
        Faults.gate.clear()
        pending = post(client)
        await asyncio.sleep(0.1)  # the request is in the encoder
        state: RouterState = app.state.router
        assert state.strategy is not None
        await state.strategy.aclose()  # what the lifespan does at shutdown
        resp = await asyncio.wait_for(pending, 5)  # resolved, not left hanging
    assert resp.status_code == 503, resp.text
    assert error_code(resp) == "shutting_down"
    assert resp.headers["retry-after"]


@pytest.mark.parametrize("kind", list(STRATEGIES))
@pytest.mark.parametrize("policy", ["fallback", "error"])
async def test_hanging_classifier_follows_the_failure_policy(kind: str, policy: str) -> None:
    section = "intent" if kind == "intent" else "auto"
    settings = {**STRATEGIES[kind]}
    settings[section] = {**settings.get(section, {}), "timeout_s": 0.1, "on_error": policy}
    async with started(**settings) as (client, _):
        Faults.gate.clear()
        resp = await client.post(CHAT, json={"messages": [user("hi")]})
        metrics = (await client.get("/metrics")).text
    if policy == "fallback":
        assert resp.status_code == 200, resp.text
        assert resp.json()["router"]["reason"] == "fallback"
        assert resp.json()["router"]["model"] == FALLBACK_MODEL
    else:
        assert resp.status_code == 503, resp.text
        assert error_code(resp) == "unavailable"
    assert f'llm_router_strategy_errors_total{{kind="timeout",strategy="{kind}"}} 1.0' in metrics


@pytest.mark.parametrize("kind", list(STRATEGIES))
@pytest.mark.parametrize("policy", ["fallback", "error"])
async def test_a_bad_item_fails_only_its_own_request(kind: str, policy: str) -> None:
    section = "intent" if kind == "intent" else "auto"
    settings = {**STRATEGIES[kind], "batch": {"max_size": 8, "window_ms": 50}}
    settings[section] = {**settings.get(section, {}), "on_error": policy}
    async with started(**settings) as (client, _):
        Faults.gate.clear()  # let all three join one batch
        tasks = [post(client, "hello"), post(client, f"{Faults.POISON} pill"), post(client, "hey")]
        await asyncio.sleep(0.2)
        Faults.gate.set()
        good1, bad, good2 = await asyncio.gather(*tasks)
    for good in (good1, good2):
        assert good.status_code == 200, good.text
        assert good.json()["router"]["reason"] != "fallback"
    if policy == "fallback":
        assert bad.status_code == 200 and bad.json()["router"]["reason"] == "fallback"
    else:
        assert bad.status_code == 503 and error_code(bad) == "unavailable"


async def test_unexpected_error_is_500_with_request_id_and_the_service_lives_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(*args: object) -> None:
        raise KeyError("/srv/secret/path.bin")

    monkeypatch.setattr(FakeStrategy, "route", broken)
    async with started() as (client, _):
        resp = await client.post(
            CHAT, json={"messages": [user("hi")]}, headers={"x-request-id": "req-500"}
        )
        health = await client.get("/health")
        metrics = (await client.get("/metrics")).text
    assert resp.status_code == 500
    assert resp.json()["error"]["type"] == "server_error"
    assert resp.json()["error"]["message"] == "internal error"
    assert "/srv/secret" not in resp.text
    assert resp.headers["x-request-id"] == "req-500"
    assert health.status_code == 200
    assert 'status="500"' in metrics
    err = capsys.readouterr().err
    assert err.count("Traceback") == 1  # logged once, with the request id
    assert '"request_id": "req-500"' in err
