"""Readiness, start failure, request ids and overload, through the real app."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from models.core.conversation import Conversation
from strategies.base import RouteOptions, RoutingDecision
from tests.fakes import FakeStrategy
from tests.helpers import app_client, make_settings, user, wait_ready

CHAT = "/v1/chat/completions"


def assert_openai_error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    return str(error["message"])


async def test_ready_is_503_until_start_completes_then_200() -> None:
    FakeStrategy.start_gate = asyncio.Event()
    async with app_client(ready=False) as client:
        loading = await client.get("/ready")
        early_chat = await client.post(CHAT, json={"messages": [user("hi")]})
        health = await client.get("/health")
        FakeStrategy.start_gate.set()
        await wait_ready(client, timeout=5)
        ready = await client.get("/ready")
        later_chat = await client.post(CHAT, json={"messages": [user("hi")]})
    assert "loading" in assert_openai_error(loading, 503, "not_ready")
    assert loading.headers["retry-after"]
    assert_openai_error(early_chat, 503, "not_ready")
    assert health.status_code == 200  # liveness does not wait for the strategy
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert later_chat.status_code == 200


async def test_start_failure_keeps_ready_503_and_calls_on_fatal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    FakeStrategy.fail_start = "weights file is missing at /srv/models/w.bin"
    fatal: list[str] = []
    async with app_client(ready=False, on_fatal=fatal.append) as client:
        for _ in range(500):
            if fatal:
                break
            await asyncio.sleep(0.01)
        ready = await client.get("/ready")
        chat = await client.post(CHAT, json={"messages": [user("hi")]})
    assert len(fatal) == 1
    assert "weights file is missing" in fatal[0]
    # unauthenticated callers get a generic message; the detail (paths) is in the log
    message = assert_openai_error(ready, 503, "not_ready")
    assert "failed to start" in message
    assert "/srv/models" not in ready.text and "weights" not in ready.text
    assert "weights file is missing at /srv/models/w.bin" in capsys.readouterr().err
    assert_openai_error(chat, 503, "not_ready")


async def test_request_id_is_echoed_when_given() -> None:
    async with app_client() as client:
        ok = await client.post(
            CHAT, json={"messages": [user("hi")]}, headers={"x-request-id": "req-42.a"}
        )
        bad = await client.post(CHAT, content=b"{", headers={"x-request-id": "req-43"})
    assert ok.headers["x-request-id"] == "req-42.a"
    assert bad.status_code == 400
    assert bad.headers["x-request-id"] == "req-43"


@pytest.mark.parametrize("given", [None, "has spaces in it", "x" * 500, "id;<script>"])
async def test_request_id_is_generated_when_absent_or_unusable(given: str | None) -> None:
    headers = {} if given is None else {"x-request-id": given}
    async with app_client() as client:
        first = await client.post(CHAT, json={"messages": [user("hi")]}, headers=headers)
        second = await client.get("/health", headers=headers)
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(ids) and ids[0] != ids[1]
    assert given not in ids


async def test_max_concurrency_reached_answers_429(monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    original = FakeStrategy.route

    async def held(
        self: FakeStrategy, conversation: Conversation, options: RouteOptions
    ) -> RoutingDecision:
        entered.set()
        await release.wait()
        return await original(self, conversation, options)

    monkeypatch.setattr(FakeStrategy, "route", held)
    body = {"messages": [user("hi")]}
    async with app_client(
        make_settings(limits={"max_concurrency": 1, "queue_timeout_s": 0.05})
    ) as client:
        first = asyncio.create_task(client.post(CHAT, json=body))
        await asyncio.wait_for(entered.wait(), 5)
        rejected = await client.post(CHAT, json=body)
        release.set()
        admitted = await first
        after = await client.post(CHAT, json=body)
    message = assert_openai_error(rejected, 429, "overloaded")
    assert rejected.json()["error"]["type"] == "rate_limit_error"
    assert rejected.headers["retry-after"]
    assert "retry" in message
    assert admitted.status_code == 200
    assert after.status_code == 200  # the slot is freed once the first request is done
