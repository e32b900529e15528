"""Session stickiness (strategies/sessions.py): the bounded TTL store and the policies."""

from __future__ import annotations

import pytest
from PIL import Image

from models.core.conversation import Conversation, Turn
from models.core.routing_config import RoutingConfig
from strategies.base import RouteOptions, RoutingDecision
from strategies.sessions import SessionRouter, SessionStore
from strategies.settings import SessionSettings

CONFIG = RoutingConfig.model_validate(
    {
        "models": [
            {"name": "big", "cost": 1.0},
            {"name": "small", "cost": 0.2},
            {"name": "mid", "cost": 0.6},
            {"name": "vl", "cost": 0.5, "vision": True},
        ]
    }
)
TEXT = Conversation.from_text("hi")
EARLIER_IMAGE = Conversation(
    turns=(
        Turn("user", "what is this? [image]", (Image.new("RGB", (4, 4)),)),
        Turn("assistant", "a cat"),
        Turn("user", "tell me a joke"),
    )
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fresh(model: str, needs_vision: bool = False, reason: str = "intent") -> RoutingDecision:
    ranking = [model, *(m for m in ("big", "mid", "vl", "small") if m != model)]
    if needs_vision:
        ranking = ["vl"]
    return RoutingDecision(
        model=model, strategy="intent", reason=reason, ranking=ranking, needs_vision=needs_vision
    )


def router(policy: str, clock: Clock | None = None, **kw: float) -> SessionRouter:
    settings = SessionSettings.model_validate({"policy": policy, **kw})
    return SessionRouter(settings, CONFIG, clock or Clock())


def turn(
    r: SessionRouter,
    decision: RoutingDecision,
    options: RouteOptions | None = None,
    conversation: Conversation = TEXT,
) -> tuple[str, str]:
    out = r.apply("s1", decision, options or RouteOptions(), conversation)
    return out.model, out.reason


def test_store_forgets_after_ttl_and_least_recently_used_first() -> None:
    clock = Clock()
    store = SessionStore(max_sessions=2, ttl_s=10.0, clock=clock)
    store.put("a", "big")
    clock.now += 5
    store.put("b", "small")
    assert store.get("a") == "big" and len(store) == 2
    clock.now += 6  # a: 11 s after its last write, b: 6 s
    assert store.get("a") is None and store.get("b") == "small" and len(store) == 1
    store.put("b", "mid")  # a write slides the TTL
    clock.now += 9
    assert store.get("b") == "mid"
    store.put("c", "vl")
    store.put("d", "big")  # over max_sessions: the least recently written (b) goes
    assert store.get("b") is None and store.get("c") == "vl" and store.get("d") == "big"
    assert len(store) == 2


def test_off_changes_nothing_and_remembers_nothing() -> None:
    r = router("off")
    assert turn(r, fresh("big")) == ("big", "intent")
    assert turn(r, fresh("small")) == ("small", "intent")
    assert len(r.store) == 0


def test_sticky_keeps_the_model_while_it_can_answer() -> None:
    r = router("sticky")
    assert turn(r, fresh("big")) == ("big", "intent")  # first turn: the strategy's choice
    decision = r.apply("s1", fresh("small"), RouteOptions(), TEXT)
    assert (decision.model, decision.reason) == ("big", "sticky")
    assert decision.ranking[0] == "big" and "small" in decision.ranking
    assert decision.detail["session"] == {"policy": "sticky", "previous": "big", "routed": "small"}
    # a turn that needs to see an image: the text model cannot answer; the session moves
    assert turn(r, fresh("vl", needs_vision=True, reason="image_reference")) == (
        "vl",
        "image_reference",
    )
    assert turn(r, fresh("big")) == ("vl", "sticky")  # and stays on the vision model
    # a model the request excludes cannot be kept
    assert turn(r, fresh("small"), RouteOptions(exclude_models=frozenset({"vl"}))) == (
        "small",
        "intent",
    )


def test_sticky_text_model_over_earlier_images_strips_them() -> None:
    r = router("sticky")
    turn(r, fresh("big"))
    decision = r.apply("s1", fresh("vl"), RouteOptions(), EARLIER_IMAGE)
    assert (decision.model, decision.reason, decision.strip_images) == ("big", "sticky", True)


def test_upgrade_only_moves_up_and_never_back_down() -> None:
    r = router("upgrade_only")
    assert turn(r, fresh("small")) == ("small", "intent")
    assert turn(r, fresh("mid")) == ("mid", "upgrade")  # stronger: higher cost
    assert turn(r, fresh("small")) == ("mid", "sticky")  # never back down
    assert turn(r, fresh("mid")) == ("mid", "intent")  # same model: nothing to say
    # vision needed: to the vision model even though it costs less (0.5 < 0.6)
    assert turn(r, fresh("vl", needs_vision=True)) == ("vl", "upgrade")
    assert turn(r, fresh("small")) == ("vl", "sticky")
    assert turn(r, fresh("big")) == ("big", "upgrade")
    assert turn(r, fresh("vl")) == ("big", "sticky")


def test_sessions_are_separate_and_expire() -> None:
    clock = Clock()
    r = router("sticky", clock, ttl_s=60.0)
    r.apply("a", fresh("big"), RouteOptions(), TEXT)
    other = r.apply("b", fresh("small"), RouteOptions(), TEXT)
    assert (other.model, other.reason) == ("small", "intent")
    clock.now += 61
    again = r.apply("a", fresh("small"), RouteOptions(), TEXT)
    assert (again.model, again.reason) == ("small", "intent")  # forgotten: routed afresh
    assert again.detail["session"]["previous"] is None


def test_a_model_gone_from_the_config_is_not_kept() -> None:
    r = router("sticky")
    r.store.put("s1", "retired-model")
    assert turn(r, fresh("small")) == ("small", "intent")


@pytest.mark.parametrize(
    "bad", [{"policy": "always"}, {"max_sessions": 0}, {"ttl_s": 0}, {"ttl_s": -1}]
)
def test_settings_reject_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SessionSettings.model_validate(bad)
