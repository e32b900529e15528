"""One structured `route_decided` event per request, carrying the request id and no
prompt text unless ROUTER_LOG_PROMPTS turns it on."""

from __future__ import annotations

import json

import pytest

from tests.helpers import app_client, make_settings, user

SECRET = "my confidential prompt 8d1f"


def events(err: str) -> list[dict]:
    out = []
    for line in err.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


async def test_route_decided_event_without_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    async with app_client(make_settings(log_format="json")) as client:
        resp = await client.post(
            "/v1/chat/completions",
            json={"messages": [user(SECRET)]},
            headers={"x-request-id": "rid-77"},
        )
    assert resp.status_code == 200
    err = capsys.readouterr().err
    decided = [e for e in events(err) if e.get("event") == "route_decided"]
    assert len(decided) == 1
    event = decided[0]
    assert event["request_id"] == "rid-77"
    assert event["strategy"] == "fake"
    assert event["model"] == "gpt-5-chat"
    assert event["reason"] == "fake"
    assert isinstance(event["latency_s"], float)
    assert SECRET not in err


async def test_prompts_are_logged_only_when_enabled(capsys: pytest.CaptureFixture[str]) -> None:
    async with app_client(make_settings(log_format="json", log_prompts=True)) as client:
        resp = await client.post("/v1/chat/completions", json={"messages": [user(SECRET)]})
    assert resp.status_code == 200
    decided = [e for e in events(capsys.readouterr().err) if e.get("event") == "route_decided"]
    assert len(decided) == 1
    assert SECRET in decided[0]["prompt"]
    assert decided[0]["request_id"] == resp.headers["x-request-id"]
