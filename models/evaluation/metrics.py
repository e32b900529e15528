"""Quality-vs-cost evaluation of a router on data with per-model scores and costs.

Pure numpy. Conventions: ``scores`` [n, m] are per-model quality (0..1), ``costs`` [n, m]
per-row cost of each model (USD per prompt in RouterBench; reported per 1k prompts),
``probs`` [n, m] the router's predicted success probabilities (NaN where a model was not
a candidate). Metrics follow RouteLLM: the *weak* model is the cheapest single model, the
*strong* one the best single model; PGR = (q - q_weak) / (q_strong - q_weak) as a function
of normalised cost x = (c - c_weak) / (c_strong - c_weak); APGR is the area under the best
PGR reachable at each x in [0, 1]; CPT(t) is the smallest x that reaches PGR >= t.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

GRID = 1001


def cost_weight_grid(model_costs: np.ndarray, n: int = 121) -> np.ndarray:
    """0 plus log-spaced weights wide enough to go from 'best p' to 'always cheapest'."""
    positive = model_costs[model_costs > 0]
    scale = float(positive.min()) if positive.size else 1.0
    return np.concatenate([[0.0], np.geomspace(1e-3, 1e3, n - 1) / scale])


def utility_choices(probs: np.ndarray, model_costs: np.ndarray, cost_weight: float) -> np.ndarray:
    """Index of argmax p - cost_weight * cost per row (ties: higher p); NaN p never wins."""
    p = np.where(np.isnan(probs), -np.inf, probs)
    utility = p - cost_weight * model_costs[None, :]
    best = utility.max(axis=1, keepdims=True)
    tied = np.isclose(utility, best, rtol=0.0, atol=1e-12) & np.isfinite(utility)
    return np.where(tied, p, -np.inf).argmax(axis=1)


def outcome(choices: np.ndarray, scores: np.ndarray, costs: np.ndarray) -> tuple[float, float]:
    """Mean quality and mean cost of one choice per row."""
    rows = np.arange(len(choices))
    return float(scores[rows, choices].mean()), float(costs[rows, choices].mean())


def sweep(
    probs: np.ndarray, scores: np.ndarray, costs: np.ndarray, model_costs: np.ndarray
) -> list[dict[str, float]]:
    """The utility policy's (quality, cost) for every cost_weight on the grid."""
    points = []
    for lam in cost_weight_grid(model_costs):
        q, c = outcome(utility_choices(probs, model_costs, float(lam)), scores, costs)
        points.append({"cost_weight": float(lam), "quality": q, "cost": c})
    return points


def pareto(points: Sequence[dict[str, float]]) -> list[dict[str, float]]:
    """Points no other point beats on both quality and cost, by increasing cost."""
    out: list[dict[str, float]] = []
    for p in sorted(points, key=lambda p: (p["cost"], -p["quality"])):
        if not out or p["quality"] > out[-1]["quality"] + 1e-12:
            out.append(p)
    return out


def baselines(scores: np.ndarray, costs: np.ndarray, models: Sequence[str]) -> dict[str, Any]:
    """Each single model, uniform random choice, and the per-prompt oracle (cheapest model
    with the best score)."""
    single = {
        m: {"quality": float(scores[:, j].mean()), "cost": float(costs[:, j].mean())}
        for j, m in enumerate(models)
    }
    top = scores.max(axis=1, keepdims=True)
    oracle = np.where(np.isclose(scores, top), costs, np.inf).argmin(axis=1)
    q, c = outcome(oracle, scores, costs)
    cheapest = min(single, key=lambda m: (single[m]["cost"], -single[m]["quality"]))
    best = max(single, key=lambda m: (single[m]["quality"], -single[m]["cost"]))
    return {
        "single": single,
        "random": {"quality": float(scores.mean()), "cost": float(costs.mean())},
        "oracle": {"quality": q, "cost": c},
        "cheapest": cheapest,
        "best": best,
    }


def apgr_cpt(
    frontier: Sequence[dict[str, float]], weak: dict[str, float], strong: dict[str, float]
) -> dict[str, Any]:
    """APGR and CPT(50%), CPT(80%) between the weak (cheapest) and strong (best) model."""
    dq, dc = strong["quality"] - weak["quality"], strong["cost"] - weak["cost"]
    if dq <= 0 or dc <= 0:
        return {"apgr": None, "cpt": {"50": None, "80": None}}
    xs = np.array([(p["cost"] - weak["cost"]) / dc for p in frontier] + [0.0])
    pgr = np.array([(p["quality"] - weak["quality"]) / dq for p in frontier] + [0.0])
    grid = np.linspace(0.0, 1.0, GRID)
    reach = np.array([pgr[xs <= x + 1e-12].max() for x in grid])
    cpt: dict[str, Any] = {}
    for level in (0.5, 0.8):
        hit = np.nonzero(reach >= level)[0]
        if hit.size:
            x = float(grid[hit[0]])
            cpt[str(int(level * 100))] = {
                "pct_of_gap": round(100 * x, 2),
                "cost": weak["cost"] + x * dc,
            }
        else:
            cpt[str(int(level * 100))] = None
    return {"apgr": float(np.trapezoid(reach, grid)), "cpt": cpt}


def cost_to_match(frontier: Sequence[dict[str, float]], quality: float) -> float | None:
    """Cheapest frontier cost reaching ``quality`` (None if never)."""
    costs = [p["cost"] for p in frontier if p["quality"] >= quality - 1e-12]
    return min(costs) if costs else None


def best_under_budget(points: Sequence[dict[str, float]], budget: float) -> dict[str, float] | None:
    """The best-quality point costing at most ``budget`` (chosen on this data: optimistic)."""
    ok = [p for p in points if p["cost"] <= budget + 1e-12]
    return max(ok, key=lambda p: (p["quality"], -p["cost"])) if ok else None


def bootstrap_ci(values: np.ndarray, n: int = 1000, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the mean."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def per_model_auc(scores: np.ndarray, probs: np.ndarray, models: Sequence[str]) -> dict[str, Any]:
    """ROC AUC of each model's probability against its score >= 0.5."""
    from sklearn.metrics import roc_auc_score

    out: dict[str, float | None] = {}
    for j, m in enumerate(models):
        ok = ~np.isnan(probs[:, j])
        y = scores[ok, j] >= 0.5
        good = 0 < y.sum() < len(y)
        out[m] = float(roc_auc_score(y, probs[ok, j])) if good else None
    return out


def route_by_task(
    tasks: Sequence[str], scores: np.ndarray, costs: np.ndarray, n: int = 121
) -> list[dict[str, Any]]:
    """The lookup-table router: each task goes to the model maximising its mean quality -
    cost_weight * mean cost, for every cost_weight on a grid (chosen on this data, so an
    optimistic baseline)."""
    names = sorted(set(tasks))
    task_of = np.array([names.index(t) for t in tasks])
    mean_q = np.stack([scores[task_of == k].mean(axis=0) for k in range(len(names))])
    mean_c = np.stack([costs[task_of == k].mean(axis=0) for k in range(len(names))])
    points = []
    for lam in cost_weight_grid(costs.mean(axis=0), n):
        pick = (mean_q - lam * mean_c).argmax(axis=1)
        q, c = outcome(pick[task_of], scores, costs)
        table = {names[k]: int(pick[k]) for k in range(len(names))}
        points.append({"cost_weight": float(lam), "quality": q, "cost": c, "table": table})
    return points


def paired_gain_ci(a: np.ndarray, b: np.ndarray, n: int = 1000, seed: int = 0) -> list[float]:
    """95% bootstrap interval of mean(a - b) over the same rows (paired)."""
    return bootstrap_ci(np.asarray(a, dtype=np.float64) - np.asarray(b), n, seed)
