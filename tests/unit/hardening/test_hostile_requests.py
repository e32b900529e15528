"""Hostile non-image request inputs: each gets its status and OpenAI error code (or is
accepted, where accepting is the documented behaviour), and the server stays healthy.
Image inputs are covered by tests/unit/hardening/test_errors_images.py."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.helpers import app_client, make_settings, user

CHAT = "/v1/chat/completions"
JSON = "application/json"
LIMIT = 64 * 1024
MODELS = ["gpt-5-chat", "nvidia/nemotron-nano-12b-v2-vl", "nvidia/nvidia-nemotron-nano-9b-v2"]
P = pytest.param


def body(**extra: Any) -> bytes:
    return orjson.dumps({"messages": [user("hi")], **extra})


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


OK = (200, None)
INVALID_JSON = (400, "invalid_json")
INVALID = (400, "invalid_request")
UNKNOWN_MODEL = (400, "unknown_model")

# (raw body, content-type, (status, error code))
CASES = [
    P(b'{"messages": [', JSON, INVALID_JSON, id="invalid-json"),
    P(b"[" + body() + b"]", JSON, INVALID_JSON, id="json-array-body"),
    P(b"null", JSON, INVALID_JSON, id="json-null-body"),
    P(b'{"messages": []}', JSON, INVALID, id="empty-messages"),
    P(b'{"messages": [{"role": "wizard", "content": "hi"}]}', JSON, INVALID, id="wrong-role"),
    P(b'{"messages": [{"role": null, "content": "hi"}]}', JSON, INVALID, id="null-role"),
    P(
        b'{"messages": [{"role": "user", "content": {"text": "hi"}}]}',
        JSON,
        INVALID,
        id="content-object",
    ),
    P(b'{"messages": [{"role": "user", "content": 42}]}', JSON, INVALID, id="content-number"),
    P(body(model="gpt-99"), JSON, (404, "model_not_found"), id="unknown-model"),
    P(body(model="m" * 30_000), JSON, (404, "model_not_found"), id="huge-model-name"),
    P(body(pad="x" * (LIMIT + 1)), JSON, (413, "request_too_large"), id="huge-body"),
    P(nested(20_000), JSON, INVALID_JSON, id="deeply-nested-json"),
    P(body()[:-1] + b',"extra":' + nested(2000) + b"}", JSON, INVALID_JSON, id="deep-extra-field"),
    P(body()[:-1] + b',"extra":' + nested(500) + b"}", JSON, OK, id="nested-extra-field-kept"),
    P(
        b'{"messages": [{"role": "user", "content": ' + nested(500) + b"}]}",
        JSON,
        INVALID,
        id="deeply-nested-content",
    ),
    P(orjson.dumps({"messages": [user("x" * 60_000)]}), JSON, OK, id="very-long-string"),
    P(orjson.dumps({"messages": [user("a\u0000b")]}), JSON, OK, id="escaped-null-byte"),
    P(body() + b"\x00", JSON, INVALID_JSON, id="raw-null-byte"),
    P(b"\xff\xfe" + body(), JSON, INVALID_JSON, id="non-utf8-bytes"),
    P(
        b'{"messages": [{"role": "user", "content": "\xff"}]}',
        JSON,
        INVALID_JSON,
        id="non-utf8-in-string",
    ),
    P(
        b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
        JSON,
        INVALID_JSON,
        id="lone-surrogate",
    ),
    P(body()[:-1] + b',"n": ' + b"9" * 5000 + b"}", JSON, INVALID_JSON, id="huge-integer"),
    P(body()[:-1] + b',"temperature": NaN}', JSON, INVALID_JSON, id="nan-literal"),
    P(b"messages=hi", "application/x-www-form-urlencoded", INVALID_JSON, id="form-body"),
    # the body is read as JSON whatever the content-type says (as OpenAI's SDKs send it)
    P(body(), "text/plain", OK, id="json-as-text-plain"),
    P(body(), "", OK, id="no-content-type"),
    # sampling parameters are the upstream model's business: not validated by the router
    P(body(n=-5, temperature=99), JSON, OK, id="sampling-params-out-of-range"),
    P(body(router="fast"), JSON, INVALID, id="router-not-object"),
    P(body(router={"colour": "red"}), JSON, INVALID, id="router-unknown-key"),
    P(body(router={"cost_weight": -1}), JSON, INVALID, id="router-negative-cost-weight"),
    P(body(router={"thresholds": {"gpt-5-chat": 2}}), JSON, INVALID, id="router-threshold-gt-1"),
    P(body(router={"costs": {"gpt-5-chat": -1}}), JSON, INVALID, id="router-negative-cost"),
    P(body(router={"exclude_models": "gpt-5-chat"}), JSON, INVALID, id="router-exclude-not-list"),
    P(body(router={"exclude_models": MODELS}), JSON, (400, "no_model"), id="router-exclude-all"),
    # a model name that is not configured is a typo, not a no-op (code unknown_model)
    P(
        body(router={"exclude_models": ["nope"]}),
        JSON,
        UNKNOWN_MODEL,
        id="router-exclude-unknown-model",
    ),
    P(
        body(router={"thresholds": {"nope": 0.5}}),
        JSON,
        UNKNOWN_MODEL,
        id="router-threshold-unknown-model",
    ),
    P(
        body(router={"costs": {"nope": 0.5}}),
        JSON,
        UNKNOWN_MODEL,
        id="router-cost-unknown-model",
    ),
    P(
        body(stream="yes"),
        JSON,
        INVALID,
        id="stream-not-a-boolean",
    ),
]


@pytest.mark.parametrize("raw,ctype,expected", CASES)
async def test_hostile_request(raw: bytes, ctype: str, expected: tuple[int, str | None]) -> None:
    status, code = expected
    settings = make_settings(limits={"max_body_bytes": LIMIT})
    async with app_client(settings) as client:
        headers = {"content-type": ctype} if ctype else {}
        resp = await client.post(CHAT, content=raw, headers=headers)
        health = await client.get("/health")
        after = await client.post(CHAT, json={"messages": [user("still there?")]})
    assert resp.status_code == status, resp.text[:300]
    if code is not None:
        assert resp.headers["content-type"].startswith(JSON)
        error = resp.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == code
        assert len(error["message"]) <= 600
    else:
        assert resp.json()["choices"][0]["message"]["content"] in MODELS
    assert health.status_code == 200
    assert after.status_code == 200


@pytest.mark.parametrize(
    "method,path,expected",
    [
        P("GET", CHAT, (405, "method_not_allowed"), id="get-chat"),
        P("PUT", CHAT, (405, "method_not_allowed"), id="put-chat"),
        P("DELETE", "/v1/models", (405, "method_not_allowed"), id="delete-models"),
        P("GET", "/v1/nope", (404, "not_found"), id="unknown-path"),
        P("GET", "/v1/chat/completions/%00", (404, "not_found"), id="null-in-path"),
    ],
)
async def test_wrong_method_or_path(method: str, path: str, expected: tuple[int, str]) -> None:
    async with app_client() as client:
        resp = await client.request(method, path)
    assert (resp.status_code, resp.json()["error"]["code"]) == expected
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    "authorization",
    [
        P(b"", id="missing"),
        P(b"Basic c2VjcmV0", id="basic-scheme"),
        P(b"Bearer " + b"k" * 8000, id="huge-token"),
        P(b"Bearer \xff\xfe\xc3", id="non-ascii-token"),
        P(b"Bearer secret\x00", id="null-in-token"),
    ],
)
async def test_hostile_authorization_is_401(authorization: bytes) -> None:
    async with app_client(make_settings(api_keys=["secret"])) as client:
        headers = {"authorization": authorization} if authorization else {}
        resp = await client.post(CHAT, json={"messages": [user("hi")]}, headers=headers)
        ok = await client.post(
            CHAT, json={"messages": [user("hi")]}, headers={"authorization": "Bearer secret"}
        )
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "invalid_api_key"
    assert ok.status_code == 200
