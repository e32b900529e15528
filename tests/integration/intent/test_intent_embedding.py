"""IntentStrategy with the real packaged MiniLM behind the real app (one app per module:
loading the encoder takes seconds)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.settings import DEFAULT_CONFIG
from models.core.routing_config import load_routing_config
from tests.helpers import (
    app_client,
    data_url,
    image_message,
    jpeg_bytes,
    make_settings,
    png_bytes,
    user,
)

pytestmark = [pytest.mark.embedding, pytest.mark.asyncio(loop_scope="module")]

CONFIG = load_routing_config(DEFAULT_CONFIG)
CONFIGURED = set(CONFIG.model_names)
INTENTS = {i.name for i in CONFIG.intents}
NANO = "nvidia/nvidia-nemotron-nano-9b-v2"
VL = "nvidia/nemotron-nano-12b-v2-vl"
CHAT = "/v1/chat/completions"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(make_settings(strategy="intent")) as c:
        yield c


async def route(client: httpx.AsyncClient, messages: list[dict[str, Any]]) -> dict[str, Any]:
    resp = await client.post(CHAT, json={"messages": messages})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    router = body["router"]
    assert body["model"] == "intent"
    assert router["strategy"] == "intent"
    assert body["choices"][0]["message"]["content"] == router["model"]
    assert router["model"] in CONFIGURED
    assert router["intent"] in INTENTS
    assert set(router["scores"]) <= INTENTS
    return router


async def test_ready_with_embedding_backend(client: httpx.AsyncClient) -> None:
    resp = await client.get("/ready")
    assert resp.status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'backend="embedding"' in metrics
    assert 'strategy="intent"' in metrics


async def test_greeting_is_chit_chat(client: httpx.AsyncClient) -> None:
    router = await route(client, [user("hello! how are you?")])
    assert router["intent"] == "chit_chat"
    assert router["model"] == NANO
    assert router["reason"] == "intent"
    assert router["scores"]["chit_chat"] == max(router["scores"].values())


async def test_hard_question_goes_to_the_frontier_model(client: httpx.AsyncClient) -> None:
    router = await route(
        client,
        [user("Prove that the square root of 2 is irrational, step by step, with rigour.")],
    )
    assert router["intent"] == "hard_question"
    assert router["model"] == "gpt-5-chat"


async def test_complaint_after_an_answer_is_try_again(client: httpx.AsyncClient) -> None:
    router = await route(
        client,
        [
            user("What is 17 * 23?"),
            {"role": "assistant", "content": "17 * 23 = 381."},
            user("That's wrong, please redo the multiplication."),
        ],
    )
    assert router["intent"] == "try_again"
    assert router["model"] == "gpt-5-chat"


@pytest.mark.parametrize(
    "message",
    [
        image_message("what is in this picture?", data_url(png_bytes(64, 64))),
        image_message("hello", data_url(jpeg_bytes(300, 200), "image/jpeg")),
        image_message("", data_url(png_bytes())),
        image_message("prove that this theorem holds", data_url(png_bytes())),
    ],
    ids=["question", "greeting", "image-only", "hard-with-image"],
)
async def test_image_requests_go_to_a_vision_model(
    client: httpx.AsyncClient, message: dict[str, Any]
) -> None:
    router = await route(client, [message])
    assert router["model"] == VL
    assert router["intent"] == "image_understanding" or router["reason"] == "vision_fallback"


async def test_stream_with_the_real_strategy(client: httpx.AsyncClient) -> None:
    resp = await client.post(CHAT, json={"messages": [user("good morning!")], "stream": True})
    assert resp.status_code == 200
    assert resp.text.rstrip().endswith("data: [DONE]")
    assert NANO in resp.text


async def test_32_concurrent_requests_all_succeed(client: httpx.AsyncClient) -> None:
    prompts = [
        "hi there",
        "Explain the CAP theorem and its trade-offs in depth.",
        "translate 'thank you' to French",
        "tell me a joke",
    ]
    bodies = [{"messages": [user(prompts[i % 4])]} for i in range(32)]
    responses = await asyncio.gather(*(client.post(CHAT, json=b) for b in bodies))
    assert [r.status_code for r in responses] == [200] * 32
    models = [r.json()["choices"][0]["message"]["content"] for r in responses]
    assert set(models) <= CONFIGURED
    # the same prompt gets the same decision however the requests were batched
    for k in range(4):
        assert len({models[i] for i in range(k, 32, 4)}) == 1
