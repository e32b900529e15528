"""Recommend mode through the real HTTP stack with the FakeStrategy: response shapes,
streaming, manual routing, exclusions, the vision rule and GET /v1/models."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from app.settings import DEFAULT_CONFIG
from models.core.routing_config import load_routing_config
from tests.helpers import app_client, data_url, image_message, png_bytes, user

CONFIGURED = load_routing_config(DEFAULT_CONFIG).model_names
VISION = "nvidia/nemotron-nano-12b-v2-vl"


def assert_openai_error(resp: httpx.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


async def chat(client: httpx.AsyncClient, path: str = "/v1/chat/completions", **body: Any):
    body.setdefault("messages", [user("hello there")])
    return await client.post(path, json=body)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/sfc_router/chat/completions"])
async def test_recommendation_shape(path: str) -> None:
    async with app_client() as client:
        resp = await chat(client, path)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "fake"  # the strategy name, like the reference router
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "gpt-5-chat"}
    assert choice["finish_reason"] == "stop"
    router = body["router"]
    assert {"strategy", "model", "intent", "reason", "scores", "latency_ms"} <= set(router)
    assert router["strategy"] == "fake"
    assert router["model"] == choice["message"]["content"]
    assert router["intent"] == "fake_intent"
    assert router["reason"] == "fake"
    assert set(router["scores"]) == set(CONFIGURED)
    assert isinstance(router["latency_ms"], float) and router["latency_ms"] >= 0


def parse_sse(text: str) -> tuple[list[dict], list[str]]:
    """The JSON chunks of an SSE body and its raw data payloads, in order."""
    assert text.endswith("\n\n")
    payloads = []
    for event in text.strip("\n").split("\n\n"):
        lines = event.split("\n")
        assert len(lines) == 1 and lines[0].startswith("data: "), event
        payloads.append(lines[0].removeprefix("data: "))
    chunks = [orjson.loads(p) for p in payloads if p != "[DONE]"]
    return chunks, payloads


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/sfc_router/chat/completions"])
async def test_stream_is_valid_sse_of_chunks_ending_in_done(path: str) -> None:
    async with app_client() as client:
        resp = await chat(client, path, stream=True)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    chunks, payloads = parse_sse(resp.text)
    assert payloads[-1] == "[DONE]" and payloads.count("[DONE]") == 1
    assert len(chunks) >= 2
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert {c["model"] for c in chunks} == {"fake"}
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert content == "gpt-5-chat"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


async def test_stream_with_bad_input_answers_a_json_error_not_a_stream() -> None:
    async with app_client() as client:
        resp = await client.post("/v1/chat/completions", json={"messages": [], "stream": True})
    assert_openai_error(resp, 400)


@pytest.mark.parametrize("model", CONFIGURED)
async def test_configured_model_name_bypasses_routing(model: str) -> None:
    async with app_client() as client:
        resp = await chat(client, model=model)
    assert resp.status_code == 200
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == model
    assert body["router"]["reason"] == "manual"
    assert body["router"]["model"] == model


@pytest.mark.parametrize("model", [None, "router", "auto", "ROUTER", ""])
async def test_router_aliases_and_absent_model_route(model: str | None) -> None:
    body: dict[str, Any] = {} if model is None else {"model": model}
    async with app_client() as client:
        resp = await chat(client, **body)
    assert resp.status_code == 200
    assert resp.json()["router"]["reason"] == "fake"


async def test_unknown_model_is_404_model_not_found() -> None:
    async with app_client() as client:
        resp = await chat(client, model="gpt-99-turbo")
    error = assert_openai_error(resp, 404, "model_not_found")
    assert error["param"] == "model"
    assert error["type"] == "invalid_request_error"
    assert "gpt-99-turbo" in error["message"]


async def test_exclude_models_is_honoured() -> None:
    async with app_client() as client:
        resp = await chat(client, router={"exclude_models": ["gpt-5-chat"]})
    assert resp.status_code == 200
    router = resp.json()["router"]
    assert router["model"] != "gpt-5-chat"
    assert router["model"] in CONFIGURED
    assert "gpt-5-chat" not in router["scores"]


async def test_exclude_unknown_model_is_400_naming_the_field() -> None:
    async with app_client() as client:
        resp = await chat(client, router={"exclude_models": ["nope"]})
    error = assert_openai_error(resp, 400)
    assert error["param"] == "router.exclude_models"


async def test_excluding_every_model_is_400() -> None:
    async with app_client() as client:
        resp = await chat(client, router={"exclude_models": CONFIGURED})
    assert_openai_error(resp, 400, "no_model")


async def test_image_request_only_gets_vision_models() -> None:
    message = image_message("what is this?", data_url(png_bytes()))
    async with app_client() as client:
        resp = await chat(client, messages=[message])
    assert resp.status_code == 200
    router = resp.json()["router"]
    assert router["model"] == VISION
    assert set(router["scores"]) == {VISION}  # the FakeStrategy scores eligible models


async def test_image_request_with_every_vision_model_excluded_is_400() -> None:
    message = image_message("what is this?", data_url(png_bytes()))
    async with app_client() as client:
        resp = await chat(client, messages=[message], router={"exclude_models": [VISION]})
    assert_openai_error(resp, 400, "no_model")


async def test_models_lists_the_configured_models() -> None:
    async with app_client() as client:
        resp = await client.get("/v1/models")
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == CONFIGURED
    assert {m["object"] for m in body["data"]} == {"model"}


async def test_health_is_200() -> None:
    async with app_client() as client:
        resp = await client.get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


async def test_unknown_path_and_wrong_method_use_openai_error_shape() -> None:
    async with app_client() as client:
        missing = await client.get("/v1/nothing-here")
        wrong = await client.get("/v1/chat/completions")
    assert_openai_error(missing, 404)
    assert_openai_error(wrong, 405)
