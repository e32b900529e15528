"""Request checks shared by both modes: a manually named model must be able to see the
request's images, ``stream`` is a strict boolean, and per-request ``router`` overrides
must name configured models."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import app_client, data_url, image_message, png_bytes, user
from tests.unit.proxy.proxy_support import proxy

CHAT = "/v1/chat/completions"
VISION = "nvidia/nemotron-nano-12b-v2-vl"
TEXT_ONLY = "gpt-5-chat"
WITH_IMAGE = [image_message("what is this?", data_url(png_bytes()))]


def error_of(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code, error
    return error  # type: ignore[no-any-return]


async def test_recommend_mode_refuses_a_text_only_model_for_an_image_request() -> None:
    async with app_client() as client:
        text_only = await client.post(CHAT, json={"model": TEXT_ONLY, "messages": WITH_IMAGE})
        vision = await client.post(CHAT, json={"model": VISION, "messages": WITH_IMAGE})
        no_image = await client.post(CHAT, json={"model": TEXT_ONLY, "messages": [user("hi")]})
    error = error_of(text_only, 400, "model_not_eligible")
    assert error["param"] == "model"
    assert vision.json()["choices"][0]["message"]["content"] == VISION
    assert no_image.json()["choices"][0]["message"]["content"] == TEXT_ONLY


async def test_proxy_mode_gives_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    async with proxy(monkeypatch) as (client, mock):
        resp = await client.post(CHAT, json={"model": "alpha", "messages": WITH_IMAGE})
    error = error_of(resp, 400, "model_not_eligible")
    assert error["param"] == "model"
    assert not mock.routes["alpha"].called


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "1", None, [], {}])
async def test_stream_must_be_a_json_boolean(value: Any) -> None:
    async with app_client() as client:
        resp = await client.post(CHAT, json={"messages": [user("hi")], "stream": value})
    error = error_of(resp, 400, "invalid_request")
    assert error["param"] == "stream"


@pytest.mark.parametrize("value", [True, False])
async def test_stream_booleans_are_accepted(value: bool) -> None:
    async with app_client() as client:
        resp = await client.post(CHAT, json={"messages": [user("hi")], "stream": value})
    assert resp.status_code == 200


@pytest.mark.parametrize("key", ["costs", "thresholds"])
async def test_router_overrides_naming_unknown_models_are_400(key: str) -> None:
    async with app_client() as client:
        unknown = await client.post(
            CHAT, json={"messages": [user("hi")], "router": {key: {"gpt-5-chta": 0.5}}}
        )
        known = await client.post(
            CHAT, json={"messages": [user("hi")], "router": {key: {TEXT_ONLY: 0.5}}}
        )
        manual = await client.post(
            CHAT,
            json={"model": VISION, "messages": [user("hi")], "router": {key: {"nope": 0.5}}},
        )
    error = error_of(unknown, 400, "unknown_model")
    assert error["param"] == f"router.{key}.gpt-5-chta"
    assert "gpt-5-chta" in error["message"]
    assert known.status_code == 200, known.text
    error_of(manual, 400, "unknown_model")
