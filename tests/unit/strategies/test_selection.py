"""Selection policies (threshold_cost, utility), per-request overrides, candidate rules."""

from __future__ import annotations

import pytest
from PIL import Image

from models.core.conversation import Conversation
from models.core.routing_config import RoutingConfig
from strategies.auto.selection import PolicyParams, policy_params, select
from strategies.base import RouteOptions, eligible_models

COSTS = {"big": 1.0, "vl": 0.5, "small": 0.3}
THRESHOLDS = {"big": 0.5, "vl": 0.65, "small": 0.6}


def params(policy: str = "threshold_cost", cost_weight: float = 0.0, **kw: object) -> PolicyParams:
    return PolicyParams(
        policy,  # type: ignore[arg-type]
        kw.get("thresholds", THRESHOLDS),  # type: ignore[arg-type]
        kw.get("costs", COSTS),  # type: ignore[arg-type]
        cost_weight,
    )


def config(policy: str = "threshold_cost", cost_weight: float = 0.0) -> RoutingConfig:
    return RoutingConfig.model_validate(
        {
            "models": [
                {"name": "big", "cost": 1.0, "threshold": 0.5},
                {"name": "vl", "cost": 0.5, "threshold": 0.65, "vision": True},
                {"name": "small", "cost": 0.3, "threshold": 0.6},
            ],
            "auto": {"policy": policy, "cost_weight": cost_weight},
        }
    )


def test_cheapest_qualified_model_wins() -> None:
    probs = {"big": 0.9, "vl": 0.7, "small": 0.61}
    choice = select(probs, ["big", "vl", "small"], params())
    assert (choice.model, choice.reason) == ("small", "threshold_cost")
    assert choice.ranking == ["small", "vl", "big"]


def test_threshold_is_inclusive_and_per_model() -> None:
    probs = {"big": 0.9, "vl": 0.65, "small": 0.59}
    choice = select(probs, ["big", "vl", "small"], params())
    assert choice.model == "vl"  # exactly at its threshold qualifies; small is below its own
    assert choice.ranking == ["vl", "big", "small"]


def test_cost_ties_go_to_the_higher_probability() -> None:
    costs = {"big": 0.3, "vl": 0.3, "small": 0.3}
    probs = {"big": 0.7, "vl": 0.9, "small": 0.8}
    choice = select(probs, ["big", "vl", "small"], params(costs=costs))
    assert choice.model == "vl"
    assert choice.ranking == ["vl", "small", "big"]


def test_none_qualified_picks_the_most_probable() -> None:
    probs = {"big": 0.2, "vl": 0.4, "small": 0.3}
    choice = select(probs, ["big", "vl", "small"], params())
    assert (choice.model, choice.reason) == ("vl", "none_qualified")
    assert choice.ranking == ["vl", "small", "big"]


def test_utility_trades_probability_against_cost() -> None:
    probs = {"big": 0.9, "vl": 0.7, "small": 0.6}
    assert select(probs, list(probs), params("utility", 0.0)).model == "big"
    # 0.9-0.5=0.4, 0.7-0.25=0.45, 0.6-0.15=0.45 -> tie on utility, higher p wins
    choice = select(probs, list(probs), params("utility", 0.5))
    assert (choice.model, choice.reason) == ("vl", "utility")
    assert choice.ranking == ["vl", "small", "big"]
    assert select(probs, list(probs), params("utility", 10.0)).model == "small"


def test_candidates_restrict_the_choice() -> None:
    probs = {"big": 0.9, "vl": 0.7, "small": 0.61}
    choice = select(probs, ["big", "vl"], params())
    assert choice.model == "vl"
    assert "small" not in choice.ranking


def test_no_candidates_or_missing_probability_is_an_error() -> None:
    with pytest.raises(ValueError, match="no candidate"):
        select({"big": 0.9}, [], params())
    with pytest.raises(ValueError, match="no probability"):
        select({"big": 0.9}, ["big", "small"], params())


def test_request_overrides_replace_config_values() -> None:
    cfg = config("threshold_cost")
    probs = {"big": 0.9, "vl": 0.7, "small": 0.61}
    assert select(probs, cfg.model_names, policy_params(cfg)).model == "small"
    options = RouteOptions(thresholds={"small": 0.95}, costs={"big": 0.1})
    choice = select(probs, cfg.model_names, policy_params(cfg, options))
    assert choice.model == "big"  # small no longer qualifies; big is now the cheapest


def test_cost_weight_override() -> None:
    cfg = config("utility", cost_weight=0.0)
    probs = {"big": 0.9, "vl": 0.7, "small": 0.6}
    assert select(probs, cfg.model_names, policy_params(cfg)).model == "big"
    options = RouteOptions(cost_weight=10.0)
    assert select(probs, cfg.model_names, policy_params(cfg, options)).model == "small"


def test_images_and_exclusions_restrict_candidates() -> None:
    cfg = config()
    image = Image.new("RGB", (4, 4))
    with_image = Conversation.from_text("what is this?", [image])
    text = Conversation.from_text("hi")
    assert eligible_models(cfg, with_image, RouteOptions()) == ["vl"]
    excluded = RouteOptions(exclude_models=frozenset({"small"}))
    assert eligible_models(cfg, text, excluded) == ["big", "vl"]
    probs = {"big": 0.9, "vl": 0.7, "small": 0.61}
    assert select(probs, eligible_models(cfg, text, excluded), policy_params(cfg)).model == "vl"
