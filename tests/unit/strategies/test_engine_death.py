"""A dead vLLM engine (fake) through the real app: logged once, counted, /ready 503, and
the process asked to exit (``on_fatal``) unless ROUTER_INTENT__EXIT_ON_ENGINE_DEATH=false."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from strategies.intent import vllm as intent_vllm
from strategies.settings import IntentSettings
from tests.helpers import app_client, make_settings, user
from tests.unit.strategies.test_intent_vllm import FakeEngine

CHAT = "/v1/chat/completions"


def settings(**intent: Any) -> Any:
    return make_settings(
        strategy="intent",
        log_format="json",
        intent={"backend": "vllm", "model": "/fake", "health_interval_s": 0, **intent},
    )


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine(answer="chit_chat")

    async def factory(settings: IntentSettings) -> FakeEngine:
        return fake

    monkeypatch.setattr(intent_vllm, "default_engine_factory", factory)
    return fake


def deaths(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith('llm_router_engine_deaths_total{backend="vllm"}'):
            return float(line.split()[-1])
    return 0.0


def dead_events(err: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [e for e in events if e.get("event") == "engine_dead"]


async def chat(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(CHAT, json={"messages": [user("hello")]})


async def test_engine_death_on_a_request_is_fatal_once(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    fatal: list[str] = []
    async with app_client(settings(), on_fatal=fatal.append) as client:
        assert (await client.get("/ready")).status_code == 200
        engine.dead = True
        first, second = await chat(client), await chat(client)
        ready = await client.get("/ready")
        metrics = (await client.get("/metrics")).text
    # the request that met the dead engine still gets the fallback; later ones a 503
    assert first.status_code == 200 and first.json()["router"]["reason"] == "fallback"
    assert second.status_code == 503
    assert ready.status_code == 503 and "engine died" in ready.json()["error"]["message"]
    assert deaths(metrics) == 1.0
    assert "llm_router_ready 0.0" in metrics
    assert len(fatal) == 1 and "engine core died" in fatal[0]
    (event,) = dead_events(capsys.readouterr().err)
    assert event["backend"] == "vllm" and event["exit"] is True


async def test_health_check_sees_a_death_without_traffic(engine: FakeEngine) -> None:
    fatal: list[str] = []
    async with app_client(settings(health_interval_s=0.01), on_fatal=fatal.append) as client:
        assert (await client.get("/ready")).status_code == 200
        engine.dead = True
        for _ in range(200):
            if fatal:
                break
            await asyncio.sleep(0.01)
        ready = await client.get("/ready")
        metrics = (await client.get("/metrics")).text
    assert len(fatal) == 1 and ready.status_code == 503 and deaths(metrics) == 1.0


async def test_no_exit_when_disabled_but_still_unready(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    fatal: list[str] = []
    async with app_client(settings(exit_on_engine_death=False), on_fatal=fatal.append) as client:
        engine.dead = True
        await chat(client)
        ready = await client.get("/ready")
    assert fatal == [] and ready.status_code == 503
    assert "unhealthy" in ready.json()["error"]["message"]  # not "loading"
    (event,) = dead_events(capsys.readouterr().err)
    assert event["exit"] is False


async def test_a_failed_request_is_not_a_death(engine: FakeEngine) -> None:
    from models.inference.vllm_engine import EngineRequestError

    fatal: list[str] = []
    async with app_client(settings(), on_fatal=fatal.append) as client:
        engine.error = EngineRequestError("one bad request")
        resp = await chat(client)
        engine.error = None
        ready = await client.get("/ready")
    assert resp.json()["router"]["reason"] == "fallback"
    assert ready.status_code == 200 and fatal == []
