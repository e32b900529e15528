"""Quality/cost metrics: utility choices, baselines, oracle, APGR and CPT as RouteLLM
defines them, and the report's documented keys."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import metrics as ev
from models.evaluation.report import quality_report

WEAK = {"quality": 0.5, "cost": 1.0}
STRONG = {"quality": 1.0, "cost": 11.0}


def test_random_mix_line_has_apgr_one_half_and_cpt_at_the_level() -> None:
    line = [{"quality": 0.5 + 0.5 * x, "cost": 1.0 + 10 * x} for x in np.linspace(0, 1, 101)]
    out = ev.apgr_cpt(ev.pareto(line), WEAK, STRONG)
    assert out["apgr"] == pytest.approx(0.5, abs=0.01)
    assert out["cpt"]["50"]["pct_of_gap"] == pytest.approx(50.0, abs=0.2)
    assert out["cpt"]["80"]["cost"] == pytest.approx(9.0, abs=0.05)


def test_free_strong_quality_recovers_the_whole_gap() -> None:
    out = ev.apgr_cpt([{"quality": 1.0, "cost": 1.0}], WEAK, STRONG)
    assert out["apgr"] == pytest.approx(1.0)
    assert out["cpt"]["50"]["pct_of_gap"] == 0.0


def test_a_router_that_never_improves_has_no_cpt() -> None:
    out = ev.apgr_cpt([{"quality": 0.5, "cost": 5.0}], WEAK, STRONG)
    assert out["apgr"] == pytest.approx(0.0)
    assert out["cpt"] == {"50": None, "80": None}


def test_utility_choices_ties_and_unscored_models() -> None:
    probs = np.array([[0.9, 0.7, 0.6], [0.9, np.nan, 0.1]])
    costs = np.array([1.0, 0.5, 0.3])
    assert ev.utility_choices(probs, costs, 0.0).tolist() == [0, 0]
    # row 0: utilities 0.4, 0.45, 0.45 -> tie, higher p (index 1); row 1: NaN never wins
    assert ev.utility_choices(probs, costs, 0.5).tolist() == [1, 0]
    assert ev.utility_choices(probs, costs, 100.0).tolist() == [2, 2]


def test_baselines_and_oracle_pick_the_cheapest_correct_model() -> None:
    scores = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    costs = np.array([[2.0, 1.0]] * 3)
    base = ev.baselines(scores, costs, ["strong", "weak"])
    assert base["best"] == "strong" and base["cheapest"] == "weak"
    assert base["oracle"] == {"quality": pytest.approx(2 / 3), "cost": pytest.approx(4 / 3)}
    assert base["random"]["quality"] == pytest.approx(0.5)


def test_report_has_the_documented_keys() -> None:
    rng = np.random.default_rng(0)
    scores = (rng.random((50, 3)) > 0.4).astype(float)
    costs = np.tile([5.0, 1.0, 0.1], (50, 1)) / 1000
    probs = rng.random((50, 3))
    report = quality_report(
        ["a", "b", "c"],
        scores,
        costs,
        ["a"] * 25 + ["c"] * 25,
        policy={"name": "utility", "cost_weight": 0.1},
        model_costs=np.array([5.0, 1.0, 0.1]),
        probs=probs,
        latencies_s=[0.01] * 50,
        reasons=["utility"] * 50,
        budgets=[0.35, 2.0],
    )
    for key in (
        "policy",
        "baselines",
        "per_model_auc",
        "curve",
        "frontier",
        "apgr",
        "cpt",
        "cost_to_match_best",
        "latency",
        "best_under_budget",
    ):
        assert key in report
    assert set(report["cpt"]) == {"50", "80"}
    assert {"p50_ms", "p95_ms"} <= set(report["latency"])
    assert report["policy"]["cost_per_1k"] == pytest.approx((25 * 5.0 + 25 * 0.1) / 50, rel=1e-3)
    assert set(report["baselines"]) >= {"single", "random", "oracle", "cheapest", "best"}
    assert set(report["best_under_budget"]) == {"0.35", "2"}
