"""The HTTP service with the vLLM intent backend on a tiny Qwen3 (real engine, in-process).

One app for the module: 50 concurrent requests all succeed, the official ``openai``
client works against it (plain and streaming), and the decision (and, with
ROUTER_INTENT__VLLM_METRICS, vLLM's own stats) shows up in metrics.
Run in ``.venv-vllm``: ``make test-vllm``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from app.settings import DEFAULT_CONFIG
from models.core.routing_config import load_routing_config
from tests.helpers import (
    app_client,
    data_url,
    image_message,
    make_settings,
    png_bytes,
    user,
    wait_ready,
)
from tests.tiny_models import build_tiny_qwen3

pytestmark = [pytest.mark.vllm, pytest.mark.asyncio(loop_scope="module")]

CONFIG = load_routing_config(DEFAULT_CONFIG)
MODELS = set(CONFIG.model_names)
VISION = {m.name for m in CONFIG.models if m.vision}
INTENTS = {intent.name for intent in CONFIG.intents}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    model = build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3-http"))
    settings = make_settings(
        strategy="intent",
        intent={
            "backend": "vllm",
            "model": str(model),
            "max_model_len": 2048,
            "timeout_s": 120,
            "vllm_metrics": True,
        },
    )
    async with app_client(settings, ready=False) as client:
        # the engine core is a spawned process that imports vLLM again: on a busy shared
        # 2-core machine that alone can take minutes
        await wait_ready(client, timeout=400)
        yield client


def request_body(i: int) -> dict[str, object]:
    """A mix of one-turn, multi-turn, system-prompted and image requests."""
    image = data_url(png_bytes(16, 16))
    kinds: list[list[dict[str, object]]] = [
        [user(f"hello number {i}")],
        [user("what is 2+2?"), {"role": "assistant", "content": "5"}, user("wrong, try again")],
        [{"role": "system", "content": "Be terse."}, user(f"prove lemma {i} carefully")],
        [image_message(f"what is in this photo #{i}?", image)],
    ]
    return {"model": "router", "messages": kinds[i % len(kinds)]}


async def test_fifty_concurrent_requests_all_succeed(client: httpx.AsyncClient) -> None:
    bodies = [request_body(i) for i in range(50)]
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=body) for body in bodies)
    )
    assert [r.status_code for r in responses] == [200] * 50
    for body, resp in zip(bodies, responses, strict=True):
        data = resp.json()
        router = data["router"]
        assert data["model"] == "intent" and router["strategy"] == "intent"
        assert data["choices"][0]["message"]["content"] == router["model"] in MODELS
        assert router["intent"] in INTENTS and router["reason"] in {"intent", "vision_fallback"}
        assert router["detail"]["backend"] == "vllm"
        if "image_url" in str(body["messages"]):
            assert router["model"] in VISION


async def test_official_openai_client(client: httpx.AsyncClient) -> None:
    from openai import AsyncOpenAI

    openai = AsyncOpenAI(base_url="http://router.test/v1", api_key="unused", http_client=client)
    completion = await openai.chat.completions.create(
        model="router", messages=[{"role": "user", "content": "hi there!"}]
    )
    assert completion.object == "chat.completion" and completion.model == "intent"
    assert completion.choices[0].message.content in MODELS
    assert (completion.model_extra or {})["router"]["intent"] in INTENTS

    stream = await openai.chat.completions.create(
        model="router",
        messages=[{"role": "user", "content": "explain quicksort in depth"}],
        stream=True,
    )
    content = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert content in MODELS


async def test_decisions_are_counted_with_their_intent(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/chat/completions", json=request_body(0))
    intent = resp.json()["router"]["intent"]
    metrics = (await client.get("/metrics")).text
    assert 'backend="vllm"' in metrics
    assert any(
        line.startswith("llm_router_decisions_total") and f'intent="{intent}"' in line
        for line in metrics.splitlines()
    )
    assert (await client.get("/ready")).status_code == 200


async def test_vllm_own_metrics_are_exported_when_enabled(client: httpx.AsyncClient) -> None:
    await client.post("/v1/chat/completions", json=request_body(1))
    lines = (await client.get("/metrics")).text.splitlines()
    prompt_tokens = [ln for ln in lines if ln.startswith("vllm:prompt_tokens_total")]
    assert prompt_tokens and float(prompt_tokens[0].split()[-1]) > 0
