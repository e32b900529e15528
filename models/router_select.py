"""Choose, on validation rows, whether and how far a router deviates from the best single
model ("never worse than the best single model").

Pure numpy. Inputs are out-of-fold (or held-out) predicted probabilities of each
candidate router, the rows' true per-model scores and costs, and the $/1k budgets of the
operating points. Two knobs are chosen:

* shrinkage ``alpha`` toward the per-model prior (training mean success): served
  probabilities are ``alpha * p + (1 - alpha) * prior``; ``alpha = 0`` ignores the prompt,
  so the router degenerates to a fixed model;
* per budget, the utility policy's ``cost_weight`` with the best validation quality within
  the budget.

The router is kept only where a paired bootstrap on the validation rows says it beats the
best single model costing no more than it (probability of a positive gain >= ``confidence``);
otherwise the decision is ``single``: always route to that model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.evaluation import cost_weight_grid, outcome, utility_choices

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
PER_1K = 1000.0
NO_BUDGET = float("inf")


def shrink(probs: np.ndarray, prior: np.ndarray, alpha: float) -> np.ndarray:
    return alpha * probs + (1.0 - alpha) * prior[None, :]  # type: ignore[no-any-return]


def best_single(scores: np.ndarray, costs: np.ndarray, budget: float) -> int | None:
    """Index of the best-quality model whose mean cost fits ``budget`` (ties: cheaper)."""
    q, c = scores.mean(axis=0), costs.mean(axis=0)
    ok = [j for j in range(scores.shape[1]) if c[j] <= budget + 1e-12]
    return max(ok, key=lambda j: (q[j], -c[j])) if ok else None


def gain_confidence(gain: np.ndarray, n: int = 2000, seed: int = 0) -> float:
    """Share of bootstrap resamples of the rows whose mean paired gain is > 0."""
    if len(gain) == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    means = gain[rng.integers(0, len(gain), size=(n, len(gain)))].mean(axis=1)
    return float((means > 0).mean())


def _best_point(
    probs: np.ndarray, scores: np.ndarray, costs: np.ndarray, model_costs: np.ndarray, budget: float
) -> tuple[float, float, float, np.ndarray] | None:
    """(quality, cost, cost_weight, choices) of the best cost_weight within the budget."""
    best: tuple[float, float, float, np.ndarray] | None = None
    for lam in cost_weight_grid(model_costs):
        choices = utility_choices(probs, model_costs, float(lam))
        q, c = outcome(choices, scores, costs)
        if c > budget + 1e-12:
            continue
        if best is None or q > best[0] + 1e-12 or (abs(q - best[0]) <= 1e-12 and c < best[1]):
            best = (q, c, float(lam), choices)
    return best


def choose(
    candidates: Mapping[str, np.ndarray],
    prior: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    model_costs: np.ndarray,
    models: Sequence[str],
    budgets: Sequence[float],
    confidence: float = 0.9,
) -> dict[str, Any]:
    """The decision: which candidate, which alpha, per-budget cost_weight, and whether the
    router is used at all (``mode`` router or single). ``budgets`` in $/1k (empty: none)."""
    levels = [b / PER_1K for b in budgets] or [NO_BUDGET]
    table: list[dict[str, Any]] = []
    for name, probs in candidates.items():
        for alpha in ALPHAS:
            shrunk = shrink(probs, prior, alpha)
            points = [_best_point(shrunk, scores, costs, model_costs, b) for b in levels]
            mean_q = float(np.mean([p[0] if p else 0.0 for p in points]))
            table.append({"candidate": name, "alpha": alpha, "mean_quality": mean_q})
    # best mean validation quality; ties go to less deviation (smaller alpha);
    # confidence <= 0 turns the protection off: the raw router (alpha 1), as trained
    eligible = table if confidence > 0 else [r for r in table if r["alpha"] == 1.0]
    pick = max(eligible, key=lambda r: (round(r["mean_quality"], 9), -r["alpha"]))
    shrunk = shrink(candidates[pick["candidate"]], prior, pick["alpha"])
    rows = np.arange(len(scores))
    by_budget: dict[str, Any] = {}
    for budget, level in zip(budgets or [NO_BUDGET], levels, strict=True):
        point = _best_point(shrunk, scores, costs, model_costs, level)
        single = best_single(scores, costs, level)
        entry: dict[str, Any] = {"router": None, "single": None, "beats_single": False}
        if single is not None:
            entry["single"] = {
                "model": models[single],
                "quality": round(float(scores[:, single].mean()), 4),
                "cost_per_1k": round(float(costs[:, single].mean()) * PER_1K, 4),
            }
        if point is not None:
            q, c, lam, choices = point
            entry["router"] = {
                "cost_weight": lam,
                "quality": round(q, 4),
                "cost_per_1k": round(c * PER_1K, 4),
            }
            if single is None:
                entry["beats_single"], entry["gain_confidence"] = True, 1.0
            else:
                gain = scores[rows, choices] - scores[:, single]
                conf = gain_confidence(gain)
                entry["gain"] = round(float(gain.mean()), 4)
                entry["gain_confidence"] = round(conf, 4)
                entry["beats_single"] = bool(gain.mean() > 0 and conf >= confidence)
        by_budget["none" if budget == NO_BUDGET else f"{budget:g}"] = entry
    primary = list(by_budget.values())[-1]
    use_router = confidence <= 0 or (primary["beats_single"] and pick["alpha"] > 0)
    decision: dict[str, Any] = {
        "mode": "router" if use_router else "single",
        "router": pick["candidate"],
        "alpha": pick["alpha"] if use_router else 0.0,
        "confidence_required": confidence,
        "primary_budget": list(by_budget)[-1],
    }
    if not use_router:
        fallback = primary["single"] or {"model": models[int(np.argmax(scores.mean(axis=0)))]}
        decision["model"] = fallback["model"]
    return {
        "decision": decision,
        "by_budget": by_budget,
        "alternatives": [{**r, "mean_quality": round(r["mean_quality"], 4)} for r in table],
        "n_val": len(scores),
    }
