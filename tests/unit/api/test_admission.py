"""Admission control through the real app: a bounded wait for a slot instead of instant
429s, 429 + retry-after past the queue's deadline or length, refusal before the body is
read, slots held until the response ends (proxied streams), and client disconnects."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from starlette.responses import StreamingResponse

from app.api.schemas import recommendation_stream
from app.api.state import RouterState
from app.server.factory import create_app
from models.core.conversation import Conversation
from strategies.base import RouteOptions, RoutingDecision
from tests.fakes import FakeStrategy
from tests.helpers import make_settings, user, wait_ready

CHAT = "/v1/chat/completions"
BODY = {"messages": [user("hi")]}


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """FakeStrategy.route waits for this event; ``gate.entered`` counts who got in."""
    release = asyncio.Event()
    entered: list[int] = []
    original = FakeStrategy.route

    async def held(
        self: FakeStrategy, conversation: Conversation, options: RouteOptions
    ) -> RoutingDecision:
        entered.append(1)
        await release.wait()
        return await original(self, conversation, options)

    monkeypatch.setattr(FakeStrategy, "route", held)
    release.entered = entered  # type: ignore[attr-defined]
    return release


@asynccontextmanager
async def served(**settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, RouterState]]:
    app = create_app(make_settings(**settings))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await wait_ready(client)
            yield client, app.state.router


async def until(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("condition not reached")


async def test_requests_over_the_limit_wait_for_a_slot(gate: asyncio.Event) -> None:
    limits = {"max_concurrency": 2, "queue_timeout_s": 10}
    async with served(limits=limits) as (client, state):
        tasks = [asyncio.create_task(client.post(CHAT, json=BODY)) for _ in range(4)]
        admission = state.admission
        await until(lambda: admission.queued == 2 and admission.active == 2)
        gate.set()
        answers = await asyncio.gather(*tasks)
        metrics = (await client.get("/metrics")).text
    assert [a.status_code for a in answers] == [200] * 4  # none refused: they waited
    assert admission.active == 0 and admission.queued == 0
    assert "llm_router_admission_wait_seconds_count 4.0" in metrics


async def test_past_the_queue_deadline_extras_get_429_with_retry_after(
    gate: asyncio.Event,
) -> None:
    limits = {"max_concurrency": 2, "queue_timeout_s": 0.05}
    async with served(limits=limits) as (client, state):
        tasks = [asyncio.create_task(client.post(CHAT, json=BODY)) for _ in range(4)]
        await until(lambda: sum(t.done() for t in tasks) == 2)  # the two that queued
        gate.set()
        answers = await asyncio.gather(*tasks)
        metrics = (await client.get("/metrics")).text
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 200, 429, 429]
    for refused in (a for a in answers if a.status_code == 429):
        assert refused.json()["error"]["code"] == "overloaded"
        assert refused.headers["retry-after"]
        assert refused.headers["x-request-id"]
    assert 'llm_router_rejected_total{reason="queue_timeout"} 2.0' in metrics
    assert state.admission.active == 0


async def test_a_full_queue_refuses_at_once(gate: asyncio.Event) -> None:
    limits = {"max_concurrency": 1, "max_queued": 0, "queue_timeout_s": 30}
    async with served(limits=limits) as (client, _):
        first = asyncio.create_task(client.post(CHAT, json=BODY))
        await until(lambda: len(gate.entered) == 1)  # type: ignore[attr-defined]
        refused = await asyncio.wait_for(client.post(CHAT, json=BODY), 5)
        gate.set()
        assert (await first).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert refused.status_code == 429
    assert 'llm_router_rejected_total{reason="queue_full"} 1.0' in metrics


async def test_admission_is_checked_before_the_body_is_read(gate: asyncio.Event) -> None:
    read: list[int] = []
    limits = {"max_concurrency": 1, "queue_timeout_s": 0}

    async def body() -> AsyncIterator[bytes]:
        read.append(1)
        yield b"{not json"

    async with served(limits=limits) as (client, _):
        first = asyncio.create_task(client.post(CHAT, json=BODY))
        await until(lambda: len(gate.entered) == 1)  # type: ignore[attr-defined]
        refused = await client.post(CHAT, content=body())
        gate.set()
        await first
    assert refused.status_code == 429  # refused, not parsed (a parse would say 400)
    assert read == []  # the body was never read


class HeldStreamProxy:
    """Stands in for app.proxy.forward.Proxy: answers with a stream that waits for ``done``."""

    def __init__(self) -> None:
        self.done = asyncio.Event()

    async def forward(self, *args: Any) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            await self.done.wait()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def aclose(self) -> None:
        self.done.set()


async def test_a_proxied_stream_holds_its_slot_until_it_ends() -> None:
    app = create_app(make_settings(limits={"max_concurrency": 1, "queue_timeout_s": 0}))
    proxy = HeldStreamProxy()
    chunks: list[bytes] = []
    first_chunk = asyncio.Event()
    body = orjson.dumps(BODY)
    requested = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requested:
            return requested.pop(0)
        await asyncio.Event().wait()  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            first_chunk.set()

    # httpx's ASGITransport buffers whole responses, so the stream is driven by hand
    async with LifespanManager(app) as manager:
        app.state.router.proxy = proxy
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await wait_ready(client)
            streaming = asyncio.create_task(
                manager.app(asgi_scope(len(body)), receive, send)  # type: ignore[arg-type]
            )
            try:
                await asyncio.wait_for(first_chunk.wait(), 5)
                during = await asyncio.wait_for(client.post(CHAT, json=BODY), 5)
            finally:
                proxy.done.set()
            await asyncio.wait_for(streaming, 5)
            after = await client.post(CHAT, json=BODY)
    assert b"".join(chunks).endswith(b"[DONE]\n\n")
    assert during.status_code == 429  # the stream still holds the only slot
    assert after.status_code == 200  # released when the stream ended
    assert app.state.router.admission.active == 0


def asgi_scope(content_length: int) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CHAT,
        "raw_path": CHAT.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(content_length).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def test_client_disconnect_mid_body_is_499_and_one_log_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = create_app(make_settings())
    sent: list[dict[str, Any]] = []
    messages = [
        {"type": "http.request", "body": b'{"messages": [', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = asgi_scope(9999)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await wait_ready(client)
            await manager.app(scope, receive, send)
            metrics = (await client.get("/metrics")).text
    assert app.state.router.admission.active == 0
    assert 'status="499"' in metrics
    assert 'status="500"' not in metrics
    err = capsys.readouterr().err
    assert err.count("client_disconnected") == 1
    assert "Traceback" not in err and "request_failed" not in err


def test_the_recommendation_stream_is_async() -> None:
    decision = RoutingDecision(model="m", strategy="s", reason="r")
    assert inspect.isasyncgen(recommendation_stream(decision, 0.001))  # no thread per chunk


async def test_admission_is_fifo_and_a_cancelled_waiter_leaks_no_slot() -> None:
    from app.api.admission import Admission
    from app.metrics import RouterMetrics

    admission = Admission(limit=1, max_queued=4, timeout_s=5, metrics=RouterMetrics())
    holder = await admission.acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        slot = await admission.acquire()
        order.append(i)
        slot.release()

    waiters = [asyncio.create_task(wait(i)) for i in range(3)]
    await until(lambda: admission.queued == 3)
    waiters[1].cancel()  # a client that went away while queued
    await until(lambda: admission.queued == 2)
    holder.release()
    holder.release()  # idempotent: one slot, released once
    await asyncio.gather(waiters[0], waiters[2])
    assert order == [0, 2]
    assert admission.active == 0 and admission.queued == 0
