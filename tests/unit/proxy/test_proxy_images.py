"""Proxy mode and images, on a real loopback upstream whose text-only models answer 400
to an image part (as text-only providers do): what each upstream receives."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.helpers import app_client, data_url, image_message, make_settings, png_bytes, user
from tests.upstream_server import UpstreamServer, image_parts

CHAT = "/v1/chat/completions"
PHOTO = data_url(png_bytes(16, 12, (200, 30, 30)))
MARKER = "[image omitted]"


@asynccontextmanager
async def loopback(
    tmp_path: Path, models: list[dict[str, Any]], **proxy: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, UpstreamServer]]:
    """The app in proxy mode (FakeStrategy: the first eligible model, config order) with
    every model on one loopback upstream; its text-only models refuse images."""
    with UpstreamServer("upstream") as upstream:
        for model in models:
            model["base_url"] = upstream.base_url
        upstream.state.text_only.update(m["name"] for m in models if not m.get("vision"))
        path = tmp_path / "routing.yaml"
        path.write_text(yaml.safe_dump({"models": models}))
        settings = make_settings(mode="proxy", config=path, proxy=proxy)
        async with app_client(settings) as client:
            yield client, upstream


def text_first() -> list[dict[str, Any]]:
    return [{"name": "talker", "cost": 0.3}, {"name": "eyes", "cost": 0.5, "vision": True}]


def vision_first() -> list[dict[str, Any]]:
    return [{"name": "eyes", "cost": 0.5, "vision": True}, {"name": "talker", "cost": 0.3}]


def earlier_photo(latest: str = "Thanks! Now write a haiku about autumn") -> list[dict[str, Any]]:
    return [
        image_message("what's in this picture?", PHOTO),
        {"role": "assistant", "content": "A red car."},
        image_message("and these?", PHOTO, PHOTO),
        {"role": "assistant", "content": "Two more red cars."},
        user(latest),
    ]


def with_markers(messages: list[dict[str, Any]], marker: str = MARKER) -> list[dict[str, Any]]:
    """``messages`` with every image part replaced by the marker text part."""
    out = copy.deepcopy(messages)
    for message in out:
        if isinstance(message["content"], list):
            message["content"] = [
                {"type": "text", "text": marker} if p["type"] == "image_url" else p
                for p in message["content"]
            ]
    return out


def received(upstream: UpstreamServer, model: str) -> list[dict[str, Any]]:
    return [r["body"] for r in upstream.state.requests if r["model"] == model]


async def test_text_model_gets_markers_and_nothing_else_changes(tmp_path: Path) -> None:
    async with loopback(tmp_path, text_first()) as (client, upstream):
        request = {
            "model": "router",
            "messages": earlier_photo(),
            "temperature": 0.3,
            "custom_field": {"kept": True},
            "router": {"exclude_models": []},
        }
        resp = await client.post(CHAT, json=request)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-router-model"] == "talker"
    assert resp.headers["x-router-images-omitted"] == "3"
    (body,) = received(upstream, "talker")
    assert image_parts(body) == 0
    expected = {k: v for k, v in request.items() if k != "router"}
    assert body == {**expected, "model": "talker", "messages": with_markers(earlier_photo())}


async def test_fallback_from_the_vision_model_to_a_text_model_strips(tmp_path: Path) -> None:
    async with loopback(tmp_path, vision_first()) as (client, upstream):
        upstream.state.modes["eyes"] = "error:500"
        resp = await client.post(CHAT, json={"messages": earlier_photo()})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-router-model"] == "talker"
    (to_eyes,) = received(upstream, "eyes")
    assert image_parts(to_eyes) == 3  # the vision model got the pictures
    (to_talker,) = received(upstream, "talker")
    assert image_parts(to_talker) == 0
    assert to_talker["messages"] == with_markers(earlier_photo())


async def test_latest_image_never_reaches_a_text_model(tmp_path: Path) -> None:
    async with loopback(tmp_path, vision_first()) as (client, upstream):
        upstream.state.modes["eyes"] = "error:500"
        messages = [*earlier_photo()[:-1], image_message("and this one?", PHOTO)]
        resp = await client.post(CHAT, json={"messages": messages})
        assert resp.status_code == 502  # the only vision model failed; no text fallback
        assert received(upstream, "talker") == []
        # a follow-up that asks about an earlier picture: the same
        resp = await client.post(CHAT, json={"messages": earlier_photo("zoom in on the car")})
        assert resp.status_code == 502 and received(upstream, "talker") == []


async def test_streamed_answer_from_a_text_model_over_earlier_images(tmp_path: Path) -> None:
    async with loopback(tmp_path, text_first()) as (client, upstream):
        resp = await client.post(CHAT, json={"messages": earlier_photo(), "stream": True})
    assert resp.status_code == 200
    events = [e[6:] for e in resp.text.split("\n\n") if e.startswith("data: {")]
    words = [orjson.loads(e)["choices"][0]["delta"].get("content", "") for e in events]
    assert "".join(words) == "upstream says: Thanks! Now write a haiku about autumn"
    (body,) = received(upstream, "talker")
    assert image_parts(body) == 0 and body["stream"] is True


async def test_marker_is_configurable(tmp_path: Path) -> None:
    async with loopback(tmp_path, text_first(), image_marker="(a photo was here)") as (
        client,
        upstream,
    ):
        resp = await client.post(CHAT, json={"messages": earlier_photo()})
    assert resp.status_code == 200
    (body,) = received(upstream, "talker")
    assert body["messages"] == with_markers(earlier_photo(), "(a photo was here)")


async def test_manual_text_model_allowed_for_earlier_images_only(tmp_path: Path) -> None:
    async with loopback(tmp_path, vision_first()) as (client, upstream):
        ok = await client.post(CHAT, json={"model": "talker", "messages": earlier_photo()})
        latest = [*earlier_photo()[:-1], image_message("and this?", PHOTO)]
        refused = await client.post(CHAT, json={"model": "talker", "messages": latest})
    assert ok.status_code == 200 and ok.headers["x-router-reason"] == "manual"
    assert image_parts(received(upstream, "talker")[0]) == 0
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("model_not_eligible", "model")
    assert len(received(upstream, "talker")) == 1  # the refused one never went upstream


async def test_a_text_only_conversation_goes_byte_for_byte(tmp_path: Path) -> None:
    async with loopback(tmp_path, text_first()) as (client, upstream):
        messages = [user("hi"), {"role": "assistant", "content": "hello"}, user("a joke?")]
        resp = await client.post(CHAT, json={"messages": messages})
    assert resp.status_code == 200 and "x-router-images-omitted" not in resp.headers
    assert received(upstream, "talker")[0]["messages"] == messages


@pytest.mark.parametrize("marker", ["", "x" * 201])
def test_marker_setting_is_bounded(marker: str) -> None:
    with pytest.raises(ValueError, match="image_marker"):
        make_settings(proxy={"image_marker": marker})


def test_upstream_refuses_images_for_text_models() -> None:
    """The loopback upstream itself: what these tests rely on."""
    with UpstreamServer("upstream") as upstream:
        upstream.state.text_only.add("talker")
        body = {"model": "talker", "messages": [image_message("hi", PHOTO)]}
        resp = httpx.post(f"{upstream.base_url}/chat/completions", content=orjson.dumps(body))
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "image_not_supported"
        body["model"] = "eyes"
        assert httpx.post(f"{upstream.base_url}/chat/completions", json=body).status_code == 200
