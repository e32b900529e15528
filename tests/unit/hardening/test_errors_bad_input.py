"""Bad request bodies: each gets its status and OpenAI's error shape, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tests.helpers import app_client, make_settings, user

CHAT = "/v1/chat/completions"
SYSTEM = {"role": "system", "content": "be nice"}

P = pytest.param
PARTS_UNTYPED = [{"audio": "x"}]  # unknown part *types* are valid (forwarded); no type is not

# raw body -> 400 invalid_json
RAW_BODIES = [
    P(b'{"messages": [', id="invalid-json"),
    P(b"hello", id="not-json-at-all"),
    P(b"", id="empty-body"),
    P(b'[{"role": "user", "content": "hi"}]', id="json-array"),
    P(b'"hi"', id="json-string"),
]

# JSON body -> 400 invalid_request naming this param
BAD_BODIES = [
    P({"model": "router"}, "messages", id="messages-missing"),
    P({"messages": []}, "messages", id="messages-empty"),
    P({"messages": "hi"}, "messages", id="messages-string"),
    P({"messages": {"role": "user"}}, "messages", id="messages-object"),
    P({"messages": ["hi"]}, "messages.0", id="message-not-object"),
    P({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role", id="unknown-role"),
    P({"messages": [{"content": "hi"}]}, "messages.0.role", id="role-missing"),
    P(
        {"messages": [{"role": "user", "content": PARTS_UNTYPED}]},
        "messages.0.content",
        id="part-without-type",
    ),
    P(
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages.0.content",
        id="text-part-without-text",
    ),
    P({"messages": [{"role": "user", "content": 5}]}, "messages.0.content", id="content-number"),
    P({"messages": [SYSTEM]}, "messages", id="only-system"),
    P({"messages": [{"role": "assistant", "content": "hi"}]}, "messages", id="only-assistant"),
    P({"messages": [SYSTEM | {"content": ""}, user("   ")]}, "messages", id="all-empty-content"),
    P({"messages": [{"role": "user", "content": None}]}, "messages", id="null-content"),
    P({"messages": [{"role": "user", "content": []}]}, "messages", id="empty-parts"),
    P(
        {"messages": [user("hi")], "router": {"colour": "red"}},
        "router.colour",
        id="router-unknown-key",
    ),
    P({"messages": [user("hi")], "router": "fast"}, "router", id="router-not-object"),
    P(
        {"messages": [user("hi")], "router": {"thresholds": {"gpt-5-chat": 7}}},
        "router.thresholds.gpt-5-chat",
        id="router-threshold-out-of-range",
    ),
    P({"messages": [user("hi")], "model": 5}, "model", id="model-not-string"),
    P({"messages": [user("hi")], "stream": {"x": 1}}, "stream", id="stream-not-bool"),
]


def assert_openai_error(resp: httpx.Response, status: int, code: str, param: str | None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] == param
    assert isinstance(error["message"], str) and 0 < len(error["message"]) <= 600


@pytest.mark.parametrize("raw", RAW_BODIES)
async def test_raw_body_errors(raw: bytes) -> None:
    async with app_client() as client:
        resp = await client.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert_openai_error(resp, 400, "invalid_json", None)


@pytest.mark.parametrize("body,param", BAD_BODIES)
async def test_bad_request_bodies(body: Any, param: str) -> None:
    async with app_client() as client:
        resp = await client.post(CHAT, json=body)
    assert_openai_error(resp, 400, "invalid_request", param)


async def test_validation_message_does_not_echo_the_payload() -> None:
    secret = "my-private-prompt-" + "z" * 5000
    body = {"messages": [{"role": "wizard", "content": secret}, {"role": "user", "content": 1}]}
    async with app_client() as client:
        resp = await client.post(CHAT, json=body)
    assert resp.status_code == 400
    assert "my-private-prompt" not in resp.text
    assert len(resp.content) < 1000


async def test_too_many_messages_is_400() -> None:
    async with app_client(make_settings(limits={"max_messages": 3})) as client:
        resp = await client.post(CHAT, json={"messages": [user("hi")] * 4})
    assert_openai_error(resp, 400, "invalid_request", "messages")


LIMIT = 2048


async def test_body_over_limit_with_content_length_is_413() -> None:
    body = orjson.dumps({"messages": [user("x" * (LIMIT + 10))]})
    async with app_client(make_settings(limits={"max_body_bytes": LIMIT})) as client:
        resp = await client.post(CHAT, content=body, headers={"content-type": "application/json"})
        ok = await client.post(CHAT, json={"messages": [user("small")]})
    assert_openai_error(resp, 413, "request_too_large", None)
    assert ok.status_code == 200


async def test_chunked_body_over_limit_is_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(8):
            yield b"x" * 512
        yield b'"}]}'

    async with app_client(make_settings(limits={"max_body_bytes": LIMIT})) as client:
        resp = await client.post(CHAT, content=chunks())
    assert "content-length" not in resp.request.headers
    assert resp.request.headers["transfer-encoding"] == "chunked"
    assert_openai_error(resp, 413, "request_too_large", None)


async def test_chunked_body_under_limit_is_accepted() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"messages": [{"role": "user",'
        yield b' "content": "hello"}]}'

    async with app_client(make_settings(limits={"max_body_bytes": LIMIT})) as client:
        resp = await client.post(CHAT, content=chunks())
    assert resp.status_code == 200
