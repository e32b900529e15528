"""Reloading the routing config (SIGHUP): the new config serves once it is ready, requests
in flight finish on the old strategy, and a broken config leaves the old one serving."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import structlog
from asgi_lifespan import LifespanManager

from app.server.factory import create_app
from app.settings import Settings
from models.core.conversation import Conversation
from strategies.base import RouteOptions, RoutingDecision
from tests.fakes import FakeStrategy
from tests.helpers import make_settings, wait_ready

CHAT = "/v1/chat/completions"
BODY = {"model": "router", "messages": [{"role": "user", "content": "hello"}]}
GATED = "tests.unit.server.test_reload:GatedStrategy"


class GatedStrategy(FakeStrategy):
    """FakeStrategy whose route() waits on ``gate`` while it is set to an Event; every
    instance is kept so a test can see which one answered and whether it was closed."""

    gate: ClassVar[asyncio.Event | None] = None
    entered: ClassVar[asyncio.Event | None] = None
    instances: ClassVar[list[GatedStrategy]] = []

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.closed = False
        GatedStrategy.instances.append(self)

    async def route(self, conversation: Conversation, options: RouteOptions) -> RoutingDecision:
        gate = GatedStrategy.gate  # the gate in place when this call entered
        if gate is not None:
            assert GatedStrategy.entered is not None
            GatedStrategy.entered.set()
            await gate.wait()
        return await super().route(conversation, options)

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


@pytest.fixture(autouse=True)
def _reset() -> Any:
    GatedStrategy.gate = GatedStrategy.entered = None
    GatedStrategy.instances = []
    FakeStrategy.fail_start = None
    yield
    FakeStrategy.fail_start = None


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app in-process and a client; also the app, whose ``state.reloader`` reloads."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await wait_ready(client)
            yield client, app


def write_config(path: Path, *models: str) -> Path:
    lines = "".join(f"  - name: {m}\n" for m in models)
    path.write_text("models:\n" + lines)
    return path


def counter(text: str, result: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'llm_router_config_reloads_total{{result="{result}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def routed(client: Any) -> str:
    resp = await client.post(CHAT, json=BODY)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["router"]["model"])


async def test_a_reload_serves_the_new_config_and_closes_the_old_strategy(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "routing.yaml", "alpha", "beta")
    async with served(make_settings(config=str(config), strategy=GATED)) as (client, app):
        assert await routed(client) == "alpha"
        write_config(config, "beta", "alpha", "gamma")
        assert await app.state.reloader.reload() is True
        assert await routed(client) == "beta"
        models = (await client.get("/v1/models")).json()["data"]
        assert [m["id"] for m in models] == ["beta", "alpha", "gamma"]
        old, new = GatedStrategy.instances
        for _ in range(100):  # closed once idle (it is, at once)
            if old.closed:
                break
            await asyncio.sleep(0.01)
        assert old.closed and not new.closed
        metrics = (await client.get("/metrics")).text
        assert counter(metrics, "success") == 1
        assert counter(metrics, "error") == 0


@pytest.mark.parametrize(
    "broken",
    [
        "models: [\n",  # not YAML
        "models:\n  - name: a\n    cost: -1\n",  # does not validate
        "models:\n  - name: a\n    input_price_per_1m: 1\n",  # half a price
        "models: []\n",
    ],
)
async def test_a_config_that_does_not_validate_leaves_the_old_one_serving(
    tmp_path: Path, broken: str
) -> None:
    config = write_config(tmp_path / "routing.yaml", "alpha", "beta")
    async with served(make_settings(config=str(config))) as (client, app):
        strategy = app.state.router.strategy
        config.write_text(broken)
        with structlog.testing.capture_logs() as logs:
            assert await app.state.reloader.reload() is False
        assert app.state.router.strategy is strategy
        assert await routed(client) == "alpha"
        assert (await client.get("/ready")).status_code == 200
        failed = [e for e in logs if e["event"] == "config_reload_failed"]
        assert failed and failed[0]["kind"] == "invalid_config"
        assert "routing.yaml" in failed[0]["error"]
        metrics = (await client.get("/metrics")).text
        assert counter(metrics, "error") == 1 and counter(metrics, "success") == 0


async def test_a_strategy_that_fails_to_start_leaves_the_old_one_serving(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "routing.yaml", "alpha")
    async with served(make_settings(config=str(config), strategy=GATED)) as (client, app):
        write_config(config, "beta")
        FakeStrategy.fail_start = "artifact is corrupt"
        with structlog.testing.capture_logs() as logs:
            assert await app.state.reloader.reload() is False
        FakeStrategy.fail_start = None
        assert await routed(client) == "alpha"
        old, failed = GatedStrategy.instances
        assert failed.closed and not old.closed  # the one that failed was released
        (event,) = [e for e in logs if e["event"] == "config_reload_failed"]
        assert event["kind"] == "strategy_error" and "artifact is corrupt" in event["error"]


async def test_requests_in_flight_finish_on_the_old_strategy(tmp_path: Path) -> None:
    config = write_config(tmp_path / "routing.yaml", "alpha", "beta")
    async with served(make_settings(config=str(config), strategy=GATED)) as (client, app):
        gate = GatedStrategy.gate = asyncio.Event()
        GatedStrategy.entered = asyncio.Event()
        held = asyncio.create_task(client.post(CHAT, json=BODY))
        await asyncio.wait_for(GatedStrategy.entered.wait(), 10)
        GatedStrategy.gate = None  # later requests pass; the held one waits on ``gate``
        write_config(config, "beta", "alpha")
        assert await app.state.reloader.reload() is True
        assert await routed(client) == "beta"
        old, new = GatedStrategy.instances
        await asyncio.sleep(0.2)
        assert not old.closed  # a request is still routing on it
        gate.set()
        resp = await held
        assert resp.status_code == 200
        assert resp.json()["router"]["model"] == "alpha"  # the old strategy answered it
        for _ in range(200):
            if old.closed:
                break
            await asyncio.sleep(0.01)
        assert old.closed and not new.closed
