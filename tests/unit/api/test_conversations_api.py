"""Recommend mode for conversations with images and sessions: the ``router`` object's
``needs_vision`` / ``strip_images``, manual models, session ids (header and body), the
stickiness policies over HTTP, and the reasons in ``llm_router_decisions_total``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import app_client, data_url, image_message, make_settings, png_bytes, user
from tests.unit.api.test_metrics import scrape, value

CHAT = "/v1/chat/completions"
SCRIPTED = "tests.fakes:ScriptedStrategy"
STRONG, SMALL = "gpt-5-chat", "nvidia/nvidia-nemotron-nano-9b-v2"
VISION = "nvidia/nemotron-nano-12b-v2-vl"
PHOTO = data_url(png_bytes(8, 8))


def earlier_photo(latest: str) -> list[dict[str, Any]]:
    return [
        image_message("what's in this picture?", PHOTO),
        {"role": "assistant", "content": "A red car."},
        user(latest),
    ]


async def test_router_object_says_when_to_strip_images() -> None:
    async with app_client(make_settings(strategy=SCRIPTED)) as client:
        text = await client.post(CHAT, json={"messages": earlier_photo(f"use:{SMALL} a joke")})
        vision = await client.post(CHAT, json={"messages": earlier_photo(f"use:{VISION} hm")})
        plain = await client.post(CHAT, json={"messages": [user("hi")]})
    assert text.json()["router"]["strip_images"] is True
    assert text.json()["router"]["model"] == SMALL
    assert vision.json()["router"]["strip_images"] is False
    assert plain.json()["router"]["strip_images"] is False
    assert plain.json()["router"]["needs_vision"] is False


async def test_manual_text_model_for_earlier_images_but_not_for_latest() -> None:
    async with app_client() as client:
        ok = await client.post(CHAT, json={"model": SMALL, "messages": earlier_photo("a joke")})
        latest = [*earlier_photo("x")[:-1], image_message("and this?", PHOTO)]
        refused = await client.post(CHAT, json={"model": SMALL, "messages": latest})
        seen = await client.post(CHAT, json={"model": VISION, "messages": latest})
    router = ok.json()["router"]
    assert ok.status_code == 200
    assert (router["model"], router["reason"], router["strip_images"]) == (SMALL, "manual", True)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "model_not_eligible",
        "model",
        "invalid_request_error",
    )
    assert "latest message" in error["message"]
    assert seen.status_code == 200 and seen.json()["router"]["needs_vision"] is True


def sticky(policy: str = "sticky", **sessions: Any) -> Any:
    return make_settings(strategy=SCRIPTED, sessions={"policy": policy, **sessions})


async def route(client: Any, text: str, **kw: Any) -> dict[str, Any]:
    headers = kw.pop("headers", {})
    body: dict[str, Any] = {"messages": [user(text)], **kw}
    resp = await client.post(CHAT, json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["router"]  # type: ignore[no-any-return]


async def test_sticky_session_by_header_and_by_body() -> None:
    async with app_client(sticky()) as client:
        header = {"x-session-id": "conv-1"}
        assert (await route(client, f"use:{STRONG}", headers=header))["model"] == STRONG
        kept = await route(client, f"use:{SMALL} thanks!", headers=header)
        assert (kept["model"], kept["reason"]) == (STRONG, "sticky")
        assert kept["detail"]["session"] == {
            "policy": "sticky",
            "previous": STRONG,
            "routed": SMALL,
        }
        # the body's router.session_id names the same kind of session (and wins)
        first = await route(client, f"use:{SMALL}", router={"session_id": "conv-2"}, headers=header)
        assert (first["model"], first["reason"]) == (SMALL, "fake")
        again = await route(client, f"use:{STRONG}", router={"session_id": "conv-2"})
        assert (again["model"], again["reason"]) == (SMALL, "sticky")
        # no session id: routed afresh
        assert (await route(client, f"use:{SMALL}"))["reason"] == "fake"
        found = await scrape(client)
    assert value(found, "llm_router_decisions_total", reason="sticky", model=STRONG) == 1
    assert value(found, "llm_router_decisions_total", reason="sticky", model=SMALL) == 1


async def test_upgrade_only_over_http_and_reasons_in_metrics() -> None:
    async with app_client(sticky("upgrade_only")) as client:
        h = {"x-session-id": "s"}
        assert (await route(client, f"use:{SMALL} hi", headers=h))["model"] == SMALL
        up = await route(client, f"use:{STRONG} prove it", headers=h)
        assert (up["model"], up["reason"]) == (STRONG, "upgrade")
        down = await route(client, f"use:{SMALL} thanks", headers=h)
        assert (down["model"], down["reason"]) == (STRONG, "sticky")
        found = await scrape(client)
    assert value(found, "llm_router_decisions_total", reason="upgrade", model=STRONG) == 1
    assert value(found, "llm_router_decisions_total", reason="sticky", model=STRONG) == 1


async def test_sessions_are_scoped_by_api_key() -> None:
    settings = sticky()
    settings.api_keys = ["key-a", "key-b"]
    async with app_client(settings) as client:
        a = {"x-session-id": "same", "authorization": "Bearer key-a"}
        b = {"x-session-id": "same", "authorization": "Bearer key-b"}
        await route(client, f"use:{STRONG}", headers=a)
        other = await route(client, f"use:{SMALL}", headers=b)
        assert (other["model"], other["reason"]) == (SMALL, "fake")  # not client a's session


async def test_policy_off_accepts_and_ignores_session_ids() -> None:
    async with app_client(make_settings(strategy=SCRIPTED)) as client:
        h = {"x-session-id": "s"}
        await route(client, f"use:{STRONG}", headers=h)
        assert (await route(client, f"use:{SMALL}", headers=h))["model"] == SMALL


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "tab\there", "é"])
async def test_bad_session_ids_are_a_400(bad: str) -> None:
    async with app_client(sticky()) as client:
        in_body = await client.post(
            CHAT, json={"messages": [user("hi")], "router": {"session_id": bad}}
        )
        assert in_body.status_code == 400
        assert in_body.json()["error"]["param"] == "router.session_id"
        if bad.isascii() and "\t" not in bad:  # headers carry printable ASCII only
            in_header = await client.post(
                CHAT, json={"messages": [user("hi")]}, headers={"x-session-id": bad}
            )
            assert in_header.status_code == 400
            error = in_header.json()["error"]
            assert (error["code"], error["param"]) == ("invalid_session_id", "x-session-id")
            assert set(error) == {"message", "type", "param", "code"}
