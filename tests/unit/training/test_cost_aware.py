"""Cost-aware selection: a router as good as the best single model at a lower cost wins
(issue 21's failing case), operating points scale with the data's costs, and the honest
guard (routing that neither gains quality nor saves cost leaves a single model)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models.training.operating import fraction_budgets, round_up
from models.training.selection import choose

CHEAP, LARGE = 2e-6, 5e-5  # USD per prompt: 0.002 and 0.05 $/1k


def issue_case(n: int = 300, seed: int = 0, scale: float = 1.0) -> dict[str, Any]:
    """Two kinds of prompt. The cheap model is right on every prompt of kind A and wrong
    on kind B; the expensive one right on all of A and ~91% of B (0.955 overall). The
    router's (out-of-fold) predictions know the kind: A to the cheap model keeps the
    expensive model's quality at about half its cost."""
    rng = np.random.default_rng(seed)
    kind_b = np.arange(n) % 2 == 1
    large_right = ~kind_b | (rng.random(n) < 0.91)
    scores = np.stack([~kind_b, large_right], axis=1).astype(np.float32)
    costs = np.tile(np.array([CHEAP, LARGE], np.float32) * scale, (n, 1))
    noise = rng.normal(0, 0.02, size=(n, 2))
    probs = np.clip(np.where(kind_b[:, None], [0.0, 0.91], [1.0, 1.0]) + noise, 0, 1)
    return {"scores": scores, "costs": costs, "probs": probs}


def run(data: dict[str, Any], budgets: list[float], **kw: Any) -> dict[str, Any]:
    scores, costs = data["scores"], data["costs"]
    return choose(
        {"knn-k5": data["probs"]}, scores.mean(axis=0), scores, costs,
        costs.mean(axis=0) * 1000, ["small", "large"], budgets, **kw,
    )  # fmt: skip


def test_the_issues_case_picks_the_router_at_about_half_the_cost() -> None:
    """With RouterBench's $ budgets (far above both models' costs) the old rule kept the
    expensive model: the router's quality gain is 0, so it "did not beat it"."""
    data = issue_case()
    large_q = float(data["scores"][:, 1].mean())
    out = run(data, [0.35, 2.0])
    decision, served = out["decision"], out["by_budget"]["2"]
    assert decision["mode"] == "router" and decision["primary_budget"] == "2"
    assert served["router"]["quality"] == pytest.approx(large_q, abs=1e-4)
    assert served["router"]["cost_per_1k"] == pytest.approx(0.026, abs=0.001)
    assert served["wins"] == ["noninferior_cheaper"] and not served["beats_single"]
    vs = served["vs_best"]
    assert vs["model"] == "large" and vs["noninferior"] and vs["saves_cost"]
    assert vs["quality_diff_lcb"] >= -0.01 and vs["cost_saving_lcb"] >= 0.4


def test_operating_points_are_fractions_of_the_best_models_cost() -> None:
    data = issue_case()
    budgets, record = fraction_budgets(data["scores"], data["costs"], ["small", "large"])
    assert budgets == [0.0125, 0.025, 0.0375, 0.05]
    assert record["model"] == "large" and record["cost_per_1k"] == pytest.approx(0.05)
    assert record["fractions"] == {"0.0125": 0.25, "0.025": 0.5, "0.0375": 0.75, "0.05": 1.0}
    out = run(data, budgets, explicit=False)
    decision = out["decision"]
    # the cheapest winning point within the margin of the best winner's quality
    assert decision["mode"] == "router" and decision["primary_budget"] == "0.0375"
    served = out["by_budget"]["0.0375"]
    assert served["router"]["cost_per_1k"] <= 0.6 * 0.05
    assert served["router"]["quality"] >= float(data["scores"][:, 1].mean()) - 0.02
    # four points that can each win: each tested at the Bonferroni level
    assert decision["confidence_per_point"] == pytest.approx(0.975)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_operating_points_scale_with_the_data(scale: float) -> None:
    """The same data priced 1000x lower or higher: budgets scale, the decision does not."""
    data = issue_case(scale=scale)
    budgets, record = fraction_budgets(data["scores"], data["costs"], ["small", "large"])
    # rounded up to 3 significant digits (float32 costs: the last digit may move up)
    np.testing.assert_allclose(budgets, np.array([0.0125, 0.025, 0.0375, 0.05]) * scale, rtol=0.01)
    assert list(record["fractions"].values()) == [0.25, 0.5, 0.75, 1.0]
    out = run(data, budgets, explicit=False)
    served = out["by_budget"][out["decision"]["primary_budget"]]
    assert out["decision"]["mode"] == "router"
    assert served["router"]["cost_per_1k"] == pytest.approx(0.026 * scale, rel=0.05)


def test_rounding_up_keeps_the_best_model_inside_its_own_budget() -> None:
    assert round_up(0.050123) == 0.0502 and round_up(5.022008) == 5.03
    assert round_up(0.0375) == 0.0375 and round_up(1234.5) == 1240.0
    costs = np.tile([1e-6, 5.0123e-5], (10, 1))
    budgets, _ = fraction_budgets(np.tile([0.5, 0.9], (10, 1)), costs, ["a", "b"])
    assert budgets[-1] >= 5.0123e-2


def test_no_budgets_when_the_best_model_is_free() -> None:
    budgets, record = fraction_budgets(np.tile([0.9, 0.5], (4, 1)), np.zeros((4, 2)), ["a", "b"])
    assert budgets == [] and record["model"] == "a"


def _noise(n: int, q: tuple[float, float], cost: tuple[float, float], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    scores = np.stack([rng.random(n) < q[0], rng.random(n) < q[1]], axis=1).astype(np.float32)
    costs = np.tile(np.array(cost, np.float32), (n, 1))
    return {"scores": scores, "costs": costs, "probs": rng.random((n, 2))}


@pytest.mark.parametrize(
    ("q", "cost"),
    [
        ((0.68, 0.64), (1e-3, 1e-3)),  # equal costs: nothing to save, nothing to gain
        ((0.60, 0.90), (1e-4, 1e-3)),  # a noise router only mixes the two models at random
        ((0.895, 0.90), (1e-4, 1e-3)),  # the cheap model is as good: mixing saves less
    ],
)
def test_routing_that_neither_gains_nor_saves_leaves_a_single_model(
    q: tuple[float, float], cost: tuple[float, float]
) -> None:
    data = _noise(600, q, cost, seed=5)
    budgets, _ = fraction_budgets(data["scores"], data["costs"], ["small", "large"])
    for explicit, points in ((False, budgets), (True, [2.0])):
        out = run(data, points, explicit=explicit)
        assert out["decision"]["mode"] == "single", (explicit, out["by_budget"])
        means = data["scores"].mean(axis=0)  # the sample's best model (ties: cheaper)
        assert out["decision"]["model"] == ("small" if means[0] >= means[1] else "large")
        assert all(not e["wins"] for e in out["by_budget"].values())


def test_equal_quality_at_equal_cost_is_no_reason_to_route() -> None:
    """A router that knows everything but where both models are right on the same rows
    at the same cost: no gain, no saving, single model."""
    n = 400
    right = (np.arange(n) % 3 != 0).astype(np.float32)
    data = {
        "scores": np.stack([right, right], axis=1),
        "costs": np.full((n, 2), 1e-3, np.float32),
        "probs": np.stack([right, right], axis=1).astype(np.float64),
    }
    out = run(data, [0.5, 1.0], explicit=False)
    assert out["decision"]["mode"] == "single"


def test_a_router_that_saves_too_little_is_not_used() -> None:
    """Non-inferior but the saving's lower bound is under min_saving (here 60%)."""
    out = run(issue_case(), [0.35, 2.0], min_saving=0.6)
    assert out["decision"]["mode"] == "single" and out["decision"]["model"] == "large"
    assert out["by_budget"]["2"]["vs_best"]["noninferior"]
    assert not out["by_budget"]["2"]["vs_best"]["saves_cost"]


def test_a_cheaper_router_that_loses_more_than_the_margin_is_a_trade_off() -> None:
    """The cheap model is right on only 90% of A: sending A there gives 0.873 vs 0.923 at
    half the cost. Not non-inferior, so at the 1x budget alone it does not win; among the
    fractions it beats every single model and random mix at its cost (a trade-off the
    artifact serves, as RouterBench's artifacts always have)."""
    data = issue_case()
    kind_a = np.arange(len(data["scores"])) % 2 == 0
    data["scores"][kind_a & (np.arange(len(kind_a)) % 20 == 0), 0] = 0.0
    data["probs"][kind_a, 0] = 0.9
    out = run(data, [0.05])
    assert out["decision"]["mode"] == "single" and out["decision"]["model"] == "large"
    assert out["by_budget"]["0.05"]["wins"] == []
    budgets, _ = fraction_budgets(data["scores"], data["costs"], ["small", "large"])
    out = run(data, budgets, explicit=False)
    served = out["by_budget"][out["decision"]["primary_budget"]]
    assert out["decision"]["mode"] == "router" and served["wins"] == ["superior"]
    scores = data["scores"]
    by_kind = (scores[kind_a, 0].sum() + scores[~kind_a, 1].sum()) / len(scores)
    assert served["router"]["quality"] == pytest.approx(by_kind, abs=1e-4)
    assert not served["vs_best"]["noninferior"]


def _point(q: float, c: float, win: bool = True) -> dict[str, Any]:
    return {
        "router": {"cost_weight": 0.1, "quality": q, "cost_per_1k": c},
        "single": {"model": "large", "quality": 0.88, "cost_per_1k": 5.0},
        "beats_single": win,
        "uses_prompt": True,
        "vs_best": {"noninferior": False, "saves_cost": True},
        "wins": ["superior"] if win else [],
    }


def test_the_served_point_is_judged_again_after_the_refit_check() -> None:
    """Validation served 2 (within the margin of 3's quality, cheaper). The refit check
    moved 2 to a cheaper, worse point: now 3 is served, and the record says what moved."""
    from models.training.operating import refresh_decision

    decision = {"mode": "router", "alpha": 0.1, "prior": "cluster-k4", "margin": 0.01,
                "confidence_required": 0.9, "primary_budget": "2", "why": ["superior"]}  # fmt: skip
    by_budget = {"1": _point(0.80, 0.9), "2": _point(0.84, 1.6), "3": _point(0.865, 2.6)}
    chosen = {"decision": decision, "by_budget": by_budget}
    refresh_decision(chosen, explicit=False)
    assert decision["primary_budget"] == "3" and decision["served_before_refit_check"] == "2"
    # no winner left after the check: the honest answer is the single model
    for entry in by_budget.values():
        entry["beats_single"] = False
    refresh_decision(chosen, explicit=False)
    assert decision["mode"] == "single" and decision["model"] == "large"
    assert decision["alpha"] == 0.0 and decision["prior"] == "global"


def test_float32_costs_keep_the_best_model_inside_its_own_budget() -> None:
    """Costs arrive as float32: their column mean can land a hair above the budget made
    from them (5.000013e-05 vs 5e-05 here), which used to leave the best model out of the
    1x budget and judged the router against a weaker baseline there."""
    n = 400
    costs = np.tile(np.array([CHEAP, LARGE], np.float32), (n, 1))
    assert float(costs.mean(axis=0)[1]) > LARGE  # the float32 noise this is about
    rng = np.random.default_rng(2)
    scores = np.stack([rng.random(n) < 0.5, rng.random(n) < 0.95], axis=1).astype(np.float32)
    budgets, _ = fraction_budgets(scores, costs, ["small", "large"])
    assert budgets[-1] == 0.05
    out = run({"scores": scores, "costs": costs, "probs": rng.random((n, 2))}, budgets,
              explicit=False)  # fmt: skip
    assert out["by_budget"]["0.05"]["single"]["model"] == "large"
