"""Choose, on validation rows, whether and how far a router deviates from the best single
model ("never worse than the best single model").

Pure numpy. Inputs are out-of-fold (or held-out) predicted probabilities of each
candidate router, the rows' true per-model scores and costs, and the $/1k budgets of the
operating points. Three knobs are chosen:

* the prior: the per-model training mean (``global``), or a task-level prior that depends
  on the prompt (a task head trained on the rows' task field, or k-means clusters; see
  :mod:`models.routers.task_prior`);
* shrinkage ``alpha`` toward it: served probabilities are ``alpha * p + (1 - alpha) *
  prior``; with the global prior ``alpha = 0`` ignores the prompt, so the router
  degenerates to a fixed model, with a task prior to a learned route-by-task table;
* per budget, the utility policy's ``cost_weight`` with the best validation quality within
  the budget.

Cost counts: among blends whose validation quality is within one standard error of the
best, those costing more than ``1 + min_saving`` times the cheapest of them are dropped
before the smallest alpha is taken, so equal quality at a lower cost is preferred. Whether
the router is used at all, and which budget it serves, is decided in
:mod:`models.training.operating`: a point must beat the best single model the budget
allows (P(gain > 0) >= ``confidence``), or be non-inferior to the best single model (within
``margin``) at a lower cost; otherwise the decision is ``single``: always route to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.evaluation.metrics import cost_weight_grid, outcome, utility_choices
from models.training.evidence import (
    MARGIN,
    MIN_SAVING,
    NO_BUDGET,
    PER_1K,
    best_single,
    evidence,
    sig,
    within,
)
from models.training.operating import mark_wins, served_budget, uses_prompt

ALPHAS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
SELECT_GRID = 601  # cost weights tried per budget (finer than eval's sweep: budgets land
# between the coarse grid's points once a task-level prior makes the choices step-like)
GLOBAL = "global"


def shrink(probs: np.ndarray, prior: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha * probs + (1 - alpha) * prior``; ``prior`` is one row per model or per row."""
    prior_rows = prior if prior.ndim == 2 else prior[None, :]
    return alpha * probs + (1.0 - alpha) * prior_rows  # type: ignore[no-any-return]


def _curve(
    probs: np.ndarray, scores: np.ndarray, costs: np.ndarray, model_costs: np.ndarray
) -> list[tuple[float, float, float]]:
    """(quality, cost, cost_weight) of the utility policy at every selection cost_weight."""
    out = []
    for lam in cost_weight_grid(model_costs, SELECT_GRID):
        q, c = outcome(utility_choices(probs, model_costs, float(lam)), scores, costs)
        out.append((q, c, float(lam)))
    return out


def _best_on_curve(
    curve: list[tuple[float, float, float]], budget: float
) -> tuple[float, float, float] | None:
    """The best-quality point within the budget (ties: cheaper)."""
    best: tuple[float, float, float] | None = None
    for q, c, lam in curve:
        if not within(c, budget):
            continue
        if best is None or q > best[0] + 1e-12 or (abs(q - best[0]) <= 1e-12 and c < best[1]):
            best = (q, c, lam)
    return best


def _best_point(
    probs: np.ndarray, scores: np.ndarray, costs: np.ndarray, model_costs: np.ndarray, budget: float
) -> tuple[float, float, float, np.ndarray] | None:
    """(quality, cost, cost_weight, choices) of the best cost_weight within the budget."""
    best = _best_on_curve(_curve(probs, scores, costs, model_costs), budget)
    if best is None:
        return None
    return (*best, utility_choices(probs, model_costs, best[2]))


def _table(
    candidates: Mapping[str, np.ndarray],
    priors: Mapping[str, np.ndarray],
    scores: np.ndarray,
    costs: np.ndarray,
    model_costs: np.ndarray,
    levels: Sequence[float],
) -> list[dict[str, Any]]:
    """Every (candidate, prior, alpha) with its mean validation quality over the budgets
    (and, per validation row, its score averaged over the budgets' operating points).
    alpha 1 ignores the prior and alpha 0 the candidate, so those are listed once."""
    first = next(iter(candidates))
    rows: list[dict[str, Any]] = []
    index = np.arange(len(scores))
    for name, probs in candidates.items():
        for prior_name, prior in priors.items():
            for alpha in ALPHAS:
                if (alpha == 1.0 and prior_name != GLOBAL) or (alpha == 0.0 and name != first):
                    continue
                shrunk = shrink(probs, prior, alpha)
                curve = _curve(shrunk, scores, costs, model_costs)
                points = [_best_on_curve(curve, b) for b in levels]
                per_budget = [
                    scores[index, utility_choices(shrunk, model_costs, point[2])]
                    if point is not None
                    else np.zeros(len(scores))
                    for point in points
                ]
                per_row = np.mean(per_budget, axis=0)
                spent = [point[1] if point is not None else 0.0 for point in points]
                rows.append(
                    {
                        "candidate": name,
                        "prior": prior_name,
                        "alpha": alpha,
                        "mean_quality": float(per_row.mean()),
                        "budget_quality": [float(v.mean()) for v in per_budget],
                        "mean_cost": float(np.mean(spent)),
                        "budget_cost": [float(c) for c in spent],
                        "_per_row": per_row,
                        "_per_budget": per_budget,
                    }
                )
    return rows


PER_BUDGET = ("alpha", "prior_alpha", "all")


def _budget_view(table: list[dict[str, Any]], i: int) -> list[dict[str, Any]]:
    """The table judged at the i-th budget alone."""
    return [
        {
            **r,
            "mean_quality": r["budget_quality"][i],
            "mean_cost": r["budget_cost"][i],
            "_per_row": r["_per_budget"][i],
        }
        for r in table
    ]


def _same_blend(r: dict[str, Any], pick: dict[str, Any], per_budget: str) -> bool:
    """May a per-budget pick use row ``r`` given the one-for-all ``pick``? ``alpha``: the
    same router and prior, only alpha varies (alpha 0 is the prior alone, alpha 1 the router
    alone); ``prior_alpha``: the same router; ``all``: anything."""
    same_router = r["candidate"] == pick["candidate"] or r["alpha"] == 0.0
    if per_budget == "all":
        return True
    if per_budget == "prior_alpha":
        return same_router
    same_prior = r["prior"] == pick["prior"] or r["alpha"] == 1.0
    return same_router and same_prior


def _pick(table: list[dict[str, Any]], rule: str, min_saving: float = MIN_SAVING) -> dict[str, Any]:
    """``max``: the best mean validation quality (ties: smaller alpha, then the global
    prior). ``one_se``: the smallest alpha (the least trust in per-prompt predictions)
    within one standard error of the paired difference to that best: picking the max of
    many near-equal noisy alternatives overfits the validation rows. Among those, blends
    costing more than ``1 + min_saving`` times the cheapest are left out first: at equal
    quality the cheaper blend wins."""
    best = max(
        table, key=lambda r: (round(r["mean_quality"], 9), -r["alpha"], r["prior"] == GLOBAL)
    )
    if rule == "max":
        return best
    n = len(best["_per_row"])

    def close(r: dict[str, Any]) -> bool:
        diff = best["_per_row"] - r["_per_row"]
        se = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        return bool(r["mean_quality"] >= best["mean_quality"] - se - 1e-12)

    near = [r for r in table if close(r)]
    cheapest = min(r.get("mean_cost", 0.0) for r in near)
    limit = cheapest * (1.0 + min_saving) + 1e-12
    affordable = [r for r in near if r.get("mean_cost", 0.0) <= limit]
    return min(affordable, key=lambda r: (r["alpha"], -r["mean_quality"]))


def _pick_for_all(
    eligible: list[dict[str, Any]], rule: str, per_budget: str | None, min_saving: float
) -> dict[str, Any]:
    """The one-for-all pick. With per-budget picks, an alpha-0 pick (the prior alone) is
    given the best router with this prior, for the budgets that do blend one in."""
    pick = _pick(eligible, rule, min_saving)
    if per_budget is not None and pick["alpha"] == 0.0:
        # alpha 0 ignores the router, which is listed as the first candidate: let the
        # budgets that do use a router use the best one with this prior
        blends = [
            r
            for r in eligible
            if r["alpha"] > 0 and (r["prior"] == pick["prior"] or r["alpha"] == 1.0)
        ]
        if blends:
            best = max(blends, key=lambda r: round(r["mean_quality"], 9))
            pick = {**pick, "candidate": best["candidate"]}
    return pick


def _decision(
    pick: dict[str, Any],
    by_budget: dict[str, Any],
    served: str | None,
    models: Sequence[str],
    scores: np.ndarray,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Router (serving budget ``served``) or single model (``served`` None)."""
    use_router = served is not None
    decision: dict[str, Any] = {
        "mode": "router" if use_router else "single",
        "router": pick["candidate"],
        "prior": pick["prior"] if use_router else GLOBAL,
        "alpha": pick["alpha"] if use_router else 0.0,
        "confidence_required": settings["confidence"],
        "confidence_per_point": round(settings["point_confidence"], 6),
        "margin": settings["margin"],
        "min_saving": settings["min_saving"],
        "primary_budget": served if use_router else list(by_budget)[-1],
    }
    if served is not None:
        decision["why"] = by_budget[served]["wins"] or ["protection off"]
    else:
        last = list(by_budget.values())[-1]
        fallback = last["single"] or {"model": models[int(np.argmax(scores.mean(axis=0)))]}
        decision["model"] = fallback["model"]
    return decision


def _entry(
    own: dict[str, Any],
    shrunk: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    model_costs: np.ndarray,
    level: float,
    models: Sequence[str],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """One budget's evidence: the router's best point within it, the best single model it
    allows (superiority) and the best single model overall (non-inferiority, saving)."""
    entry: dict[str, Any] = {"router": None, "single": None, "beats_single": False}
    single = best_single(scores, costs, level)
    if single is not None:
        entry["single"] = {
            "model": models[single],
            "quality": round(float(scores[:, single].mean()), 4),
            "cost_per_1k": sig(float(costs[:, single].mean()) * PER_1K),
        }
    point = _best_point(shrunk, scores, costs, model_costs, level)
    evidence(entry, point, scores, costs, models, level, settings)
    entry["uses_prompt"] = uses_prompt(own)
    return entry


def choose(
    candidates: Mapping[str, np.ndarray],
    prior: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    model_costs: np.ndarray,
    models: Sequence[str],
    budgets: Sequence[float],
    confidence: float = 0.9,
    priors: Mapping[str, np.ndarray] | None = None,
    rule: str = "one_se",
    per_budget: str | None = None,
    *,
    explicit: bool = True,
    margin: float = MARGIN,
    min_saving: float = MIN_SAVING,
) -> dict[str, Any]:
    """The decision: which candidate, which prior (``global``: the per-model mean ``prior``;
    others: per-row predictions in ``priors``, e.g. a task head or clusters), which alpha,
    per-budget cost_weight, and whether the router is used at all (``mode`` router or
    single) and at which budget (``primary_budget``). ``budgets`` in $/1k (empty: none);
    ``explicit``: they are the user's (the last one decides and serves) rather than
    operating points scaled to the data's costs (:mod:`models.training.operating`);
    ``rule`` see :func:`_pick`.

    ``per_budget`` (None, or one of PER_BUDGET) also picks, with the same rule on that
    budget's validation quality alone, each budget's own blend (``by_budget[b]["pick"]``):
    ``alpha`` varies only alpha (the router and prior of the one-for-all pick stay),
    ``prior_alpha`` the prior and alpha, ``all`` the router too."""
    if per_budget is not None and per_budget not in PER_BUDGET:
        raise ValueError(f"per_budget must be one of {PER_BUDGET}, not {per_budget!r}")
    scores, costs = np.asarray(scores, np.float64), np.asarray(costs, np.float64)
    # with several operating points that can each win, each is tested at a Bonferroni
    # level so the family keeps ``confidence``; explicit budgets: only the last decides
    tested = 1 if explicit or not budgets else len(budgets)
    settings = {
        "confidence": confidence,
        "point_confidence": 1.0 - (1.0 - confidence) / tested if confidence > 0 else 0.0,
        "margin": margin,
        "min_saving": min_saving,
    }
    levels = [b / PER_1K for b in budgets] or [NO_BUDGET]
    all_priors = {GLOBAL: prior, **(priors or {})}
    table = _table(candidates, all_priors, scores, costs, model_costs, levels)
    # confidence <= 0 turns the protection off: the raw router (alpha 1), as trained
    eligible = table if confidence > 0 else [r for r in table if r["alpha"] == 1.0]
    pick = _pick_for_all(eligible, rule, per_budget, min_saving)
    by_budget: dict[str, Any] = {}
    for i, (budget, level) in enumerate(zip(budgets or [NO_BUDGET], levels, strict=True)):
        own = pick
        if per_budget is not None:
            view = [r for r in _budget_view(eligible, i) if _same_blend(r, pick, per_budget)]
            own = _pick(view, rule, min_saving)
            if own["alpha"] == 0.0 and per_budget != "all":  # the router it would blend in
                own = {**own, "candidate": pick["candidate"]}
        shrunk = shrink(candidates[own["candidate"]], all_priors[own["prior"]], own["alpha"])
        entry = _entry(own, shrunk, scores, costs, model_costs, level, models, settings)
        if per_budget is not None:
            entry["pick"] = {
                "router": own["candidate"],
                "prior": own["prior"],
                "alpha": own["alpha"],
                "validation_quality": round(own["mean_quality"], 4),
            }
        by_budget["none" if budget == NO_BUDGET else f"{budget:g}"] = entry
    mark_wins(by_budget)
    served = served_budget(by_budget, explicit, margin, confidence)
    return {
        "decision": _decision(pick, by_budget, served, models, scores, settings),
        "by_budget": by_budget,
        "selection_rule": rule,
        "alternatives": [
            {
                **{k: v for k, v in r.items() if not k.startswith("_")},
                "mean_quality": round(r["mean_quality"], 4),
                "budget_quality": [round(q, 4) for q in r["budget_quality"]],
                "mean_cost": sig(r["mean_cost"] * PER_1K),
                "budget_cost": [sig(c * PER_1K) for c in r["budget_cost"]],
            }
            for r in table
        ],
        "n_val": len(scores),
    }


def keep_within_budgets(
    by_budget: dict[str, Any],
    candidates: Mapping[str, np.ndarray],
    prior_rows: np.ndarray,
    decision: Mapping[str, Any],
    scores: np.ndarray,
    costs: np.ndarray,
    model_costs: np.ndarray,
    models: Sequence[str] | None = None,
) -> None:
    """Re-check each budget's operating point against the *refitted* prior.

    Validation chose each budget's cost_weight with priors fitted inside the folds. The
    prior refitted on every row can move where a group of prompts switches model (with
    alpha 0 whole clusters switch together), so the served router may spend more than the
    budget even on the rows it was chosen on. Here the served blend is rebuilt from the
    same out-of-fold router predictions and the refitted prior's ``prior_rows``; a budget
    whose cost now exceeds it moves to the best cost_weight within it (never the other
    way: points within budget keep what validation chose). Each entry records the check
    as ``refit_check``; with ``models``, a moved point's evidence (superiority,
    non-inferiority, saving) is measured again for the point it moved to, so that
    :func:`refresh_decision` judges what will be served. Updates ``by_budget`` in place."""
    settings = {
        "point_confidence": decision.get("confidence_per_point", decision["confidence_required"]),
        "margin": decision.get("margin", MARGIN),
        "min_saving": decision.get("min_saving", MIN_SAVING),
    }
    for name, entry in by_budget.items():
        router = entry.get("router")
        if not router or name == "none":
            continue
        level = float(name) / PER_1K
        pick = entry.get("pick") or {}
        alpha = float(pick.get("alpha", decision["alpha"]))
        base = candidates[pick.get("router", decision["router"])]
        shrunk = shrink(base, prior_rows, alpha)
        lam = float(router["cost_weight"])
        q, c = outcome(utility_choices(shrunk, model_costs, lam), scores, costs)
        check: dict[str, Any] = {"quality": round(q, 4), "cost_per_1k": sig(c * PER_1K)}
        if not within(c, level):
            best = _best_on_curve(_curve(shrunk, scores, costs, model_costs), level)
            if best is not None:
                check["moved_cost_weight_from"] = lam
                router.update(
                    cost_weight=best[2],
                    quality=round(best[0], 4),
                    cost_per_1k=sig(best[1] * PER_1K),
                )
                if models is not None:
                    point = (*best, utility_choices(shrunk, model_costs, best[2]))
                    evidence(entry, point, scores, costs, models, level, settings)
        entry["refit_check"] = check
