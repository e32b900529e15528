"""Which model a proxy fallback goes to: the routing config's ``fallback_order``
(``cheapest`` by default, ``strongest``) over the capable models, for the intent strategy
(through the proxy too) and the auto strategy's ranking."""

from __future__ import annotations

from typing import Any

import pytest

from app.metrics import RouterMetrics
from app.settings import Settings
from models.core.conversation import Conversation
from models.core.routing_config import RoutingConfig
from strategies.auto.selection import PolicyParams, fallback_ranking, select
from strategies.base import RouteOptions, StrategyContext
from strategies.intent import strategy as intent_module
from strategies.intent.strategy import IntentResult, IntentStrategy
from tests.helpers import data_url, image_message, png_bytes, user
from tests.unit.proxy.proxy_support import completion, proxy

MODELS = [
    {"name": "big", "cost": 1.0, "base_url": "http://big.test/v1"},
    {"name": "mid", "cost": 0.5, "base_url": "http://mid.test/v1"},
    {"name": "eyes", "cost": 0.3, "vision": True, "base_url": "http://eyes.test/v1"},
    {"name": "eyes-big", "cost": 0.9, "vision": True, "base_url": "http://eyes-big.test/v1"},
    {"name": "small", "cost": 0.1, "base_url": "http://small.test/v1"},
]
INTENTS = [
    {"name": "chat", "description": "small talk", "model": "small"},
    {"name": "hard", "description": "hard questions", "model": "big"},
    {"name": "look", "description": "images", "model": "eyes", "requires": ["image"]},
]


def config(**extra: Any) -> RoutingConfig:
    return RoutingConfig.model_validate({"models": MODELS, "intents": INTENTS, **extra})


class StubClassifier:
    """An intent backend that answers ``StubClassifier.intent`` (no model)."""

    intent = "chat"

    def __init__(self, context: StrategyContext) -> None:
        pass

    async def start(self) -> None:
        pass

    async def classify(self, conversation: Conversation) -> IntentResult:
        return IntentResult(StubClassifier.intent)

    async def aclose(self) -> None:
        pass


@pytest.fixture(autouse=True)
def stub_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    here = f"{__name__}:StubClassifier"
    monkeypatch.setitem(intent_module.BACKENDS, "embedding", here)
    monkeypatch.setattr(StubClassifier, "intent", "chat")


async def ranking(cfg: RoutingConfig, conversation: Conversation, intent: str) -> list[str]:
    StubClassifier.intent = intent
    ctx = StrategyContext(settings=Settings(), config=cfg, metrics=RouterMetrics())
    strategy = IntentStrategy(ctx)
    await strategy.start()
    decision = await strategy.route(conversation, RouteOptions())
    return decision.candidates()


TEXT = Conversation.from_text("hey there")


@pytest.mark.parametrize(
    "order,intent,expected",
    [
        (None, "chat", ["small", "eyes", "mid", "eyes-big", "big"]),  # default: cheapest
        ("cheapest", "hard", ["big", "small", "eyes", "mid", "eyes-big"]),
        ("strongest", "chat", ["small", "big", "eyes-big", "mid", "eyes"]),
    ],
)
async def test_intent_fallbacks_follow_the_configured_order(
    order: str | None, intent: str, expected: list[str]
) -> None:
    cfg = config() if order is None else config(fallback_order=order)
    assert await ranking(cfg, TEXT, intent) == expected


async def test_intent_fallbacks_are_only_capable_models() -> None:
    """A conversation with an image falls back to vision models only."""
    from PIL import Image

    image = Conversation.from_text("what is this?", [Image.new("RGB", (8, 8))])
    assert await ranking(config(), image, "look") == ["eyes", "eyes-big"]
    assert await ranking(config(fallback_order="strongest"), image, "look") == [
        "eyes",
        "eyes-big",
    ]


@pytest.mark.parametrize(
    "order,served", [("cheapest", "eyes"), ("strongest", "big")], ids=["cheapest", "strongest"]
)
async def test_proxy_fallback_for_a_cheap_request(
    monkeypatch: pytest.MonkeyPatch, order: str, served: str
) -> None:
    """Small talk routed to the small model, which is down: by default the next cheapest
    capable model answers, not the frontier one."""
    overrides = {"strategy": "intent"}
    cfg = config(fallback_order=order)
    async with proxy(monkeypatch, config=cfg, settings_overrides=overrides) as (client, mock):
        mock.routes["small"].respond(503)
        for name in ("big", "mid", "eyes", "eyes-big"):
            mock.routes[name].respond(json=completion(f"from {name}"))
        resp = await client.post("/v1/chat/completions", json={"messages": [user("hey")]})
    assert resp.status_code == 200
    assert resp.headers["x-router-model"] == served
    assert resp.headers["x-router-fallback-from"] == "small"
    assert resp.headers["x-router-intent"] == "chat"
    assert resp.json()["choices"][0]["message"]["content"] == f"from {served}"


async def test_proxy_image_fallback_stays_on_vision_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    StubClassifier.intent = "look"
    message = image_message("what is this?", data_url(png_bytes()))
    async with proxy(monkeypatch, config=config(), settings_overrides={"strategy": "intent"}) as (
        client,
        mock,
    ):
        mock.routes["eyes"].respond(503)
        mock.routes["eyes-big"].respond(json=completion("seen"))
        resp = await client.post("/v1/chat/completions", json={"messages": [message]})
    assert resp.headers["x-router-model"] == "eyes-big"
    assert resp.headers["x-router-fallback-from"] == "eyes"
    assert not mock.routes["small"].called and not mock.routes["big"].called


PARAMS = PolicyParams(
    "utility",
    thresholds={"big": 0.5, "mid": 0.5, "small": 0.5, "tiny": 0.5},
    costs={"big": 1.0, "mid": 0.5, "small": 0.2, "tiny": 0.1},
    cost_weight=0.5,
)
PROBS = {"big": 0.9, "mid": 0.6, "small": 0.7, "tiny": 0.3}


def test_auto_cheapest_tries_capable_models_cheapest_first() -> None:
    """After the policy's choice: models reaching their threshold, cheapest first, then
    the others, most probable first."""
    models = list(PROBS)
    choice = select(PROBS, models, PARAMS)
    assert choice.model == "small"  # utility: 0.7 - 0.1 beats 0.9 - 0.5
    ranking = fallback_ranking(PROBS, choice.model, models, PARAMS, "cheapest")
    assert ranking == ["small", "mid", "big", "tiny"]


def test_auto_strongest_tries_the_most_probable_first() -> None:
    models = list(PROBS)
    assert fallback_ranking(PROBS, "small", models, PARAMS, "strongest") == [
        "small",
        "big",
        "mid",
        "tiny",
    ]


def test_auto_cheapest_keeps_the_threshold_cost_ranking() -> None:
    """With the reference policy the default order is the policy's own ranking."""
    params = PolicyParams("threshold_cost", PARAMS.thresholds, PARAMS.costs)
    choice = select(PROBS, list(PROBS), params)
    assert fallback_ranking(PROBS, choice.model, list(PROBS), params, "cheapest") == (
        choice.ranking
    )
