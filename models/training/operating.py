"""Operating points that scale with the data's own costs, and the cost-aware decision
between a router and the best single model.

Operating points. Without explicit ``--budgets`` the budgets are fractions
(:data:`FRACTIONS`: 0.25, 0.5, 0.75 and 1 x) of the mean cost of the best single model
(highest mean score, ties: cheaper) on the training rows, rounded *up* to three significant
digits so the 1 x budget always admits that model. They are recorded in the artifact
(``recommended.operating_points``); each budget's entry in ``recommended.by_budget`` is
keyed by its $/1k value, as explicit budgets are, so ``auto.budget_per_1k`` serves either.

The decision, fixed before any test data is seen, on the evidence
:mod:`models.training.evidence` measures on the validation rows (out-of-fold), with the
same 2,000 paired bootstrap resamples of the rows for both bounds:

* **non-inferior**: the one-sided lower ``confidence`` bound (default 0.9) of the mean
  paired difference ``router score - best single model's score`` is at least ``-margin``
  (:data:`MARGIN`, 0.01 on the 0..1 score scale);
* **saves cost**: the lower ``confidence`` bound of the relative saving ``1 - router cost /
  best single model's cost`` is at least ``min_saving`` (:data:`MIN_SAVING`, 5%);
* **superior**: a paired bootstrap gives P(gain > 0) >= ``confidence`` over the best of
  the single models the budget allows *and* the random mixes of two single models whose
  expected cost is no more than the router's (:func:`frontier_baseline`): mixing models at
  random already reaches every point between two of them, so a router that only mixes
  (a noise router) gains nothing;
* **cheaper**: it is non-inferior to the best single model and saves cost against the
  cheapest single model within ``margin`` of the best one's quality (when a cheaper model
  is as good, the router has to beat its cost, not the best model's).

With several operating points (fractions) each point is tested at the Bonferroni level
``1 - (1 - confidence) / points`` (0.975 for four points at 0.9), so a router that gains
nothing wins at some point with probability at most ``1 - confidence``; with explicit
budgets only the last one is tested, at ``confidence``.

A point *wins* when its blend uses the prompt (alpha > 0 or a task-level prior) and it is
superior or cheaper. Where no point wins (routing neither gains
quality nor saves cost on validation) the artifact is a single model. Which winning point
is served: with explicit budgets, the last one (as before: the router is used only if
that one wins); with fractions, the cheapest winning point whose validation quality is
within ``margin`` of the best winning point's (no paying for less than the margin).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.training.evidence import MARGIN, PER_1K, best_model

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
GLOBAL = "global"


def round_up(value: float, digits: int = 3) -> float:
    """``value`` rounded up to ``digits`` significant digits (0.050123 -> 0.0502)."""
    if value <= 0 or not math.isfinite(value):
        return value
    exponent = math.floor(math.log10(value)) - (digits - 1)
    mantissa = math.ceil(value / 10.0**exponent - 1e-9)
    return float(f"{mantissa}e{exponent}")


def fraction_budgets(
    scores: np.ndarray,
    costs: np.ndarray,
    models: Sequence[str],
    fractions: Sequence[float] = FRACTIONS,
) -> tuple[list[float], dict[str, Any]]:
    """$/1k budgets at ``fractions`` of the best single model's mean cost (``costs`` are
    per prompt), and the record the artifact keeps of them. No budgets when that model
    costs nothing (nothing to scale by)."""
    best = best_model(scores, costs)
    base = float(costs[:, best].mean(dtype=np.float64)) * PER_1K
    record: dict[str, Any] = {
        "basis": "fractions of the best single model's mean cost per 1k prompts",
        "model": models[best],
        "cost_per_1k": round(base, 6),
        "fractions": {},
    }
    if base <= 0:
        return [], record
    budgets: list[float] = []
    for fraction in fractions:
        budget = round_up(fraction * base)
        if budget not in budgets:
            budgets.append(budget)
            record["fractions"][f"{budget:g}"] = float(fraction)
    return budgets, record


def uses_prompt(pick: Mapping[str, Any]) -> bool:
    """Whether a blend depends on the prompt (alpha 0 with the global prior does not)."""
    return float(pick["alpha"]) > 0 or pick["prior"] != GLOBAL


def cost_win(entry: Mapping[str, Any]) -> bool:
    """Non-inferior to the best single model, cheaper than the cost reference."""
    vs = entry.get("vs_best") or {}
    return bool(vs.get("noninferior") and vs.get("saves_cost"))


def mark_wins(by_budget: Mapping[str, dict[str, Any]]) -> None:
    """Record in each entry whether its router point wins over the single model, and how."""
    for entry in by_budget.values():
        won = bool(entry.get("router")) and bool(entry.get("uses_prompt"))
        how = []
        if won and entry.get("beats_single"):
            how.append("superior")
        if won and cost_win(entry):
            how.append("noninferior_cheaper")
        entry["wins"] = how


def served_budget(
    by_budget: Mapping[str, dict[str, Any]], explicit: bool, margin: float, confidence: float
) -> str | None:
    """The budget key the router serves, None when the single model is the answer (see
    the module docstring). ``confidence <= 0``: protection off, the router always serves."""
    keys = list(by_budget)
    if explicit or keys == ["none"]:
        last = by_budget[keys[-1]]
        return keys[-1] if last.get("router") and (confidence <= 0 or last["wins"]) else None
    winners = [
        k for k, e in by_budget.items() if e.get("router") and (confidence <= 0 or e["wins"])
    ]
    if not winners:
        return None
    top = max(float(by_budget[k]["router"]["quality"]) for k in winners)
    near = [k for k in winners if float(by_budget[k]["router"]["quality"]) >= top - margin]
    return min(near, key=lambda k: (by_budget[k]["router"]["cost_per_1k"], keys.index(k)))


def refresh_decision(chosen: dict[str, Any], explicit: bool) -> None:
    """Judge the operating points again after :func:`keep_within_budgets` moved some, and
    serve the budget the rule now picks (the router is dropped if none wins any more).
    Updates ``chosen["decision"]`` in place, recording the budget it served before."""
    decision, by_budget = chosen["decision"], chosen["by_budget"]
    if decision["mode"] != "router":
        return
    mark_wins(by_budget)
    served = served_budget(
        by_budget, explicit, decision.get("margin", MARGIN), decision["confidence_required"]
    )
    if served == decision["primary_budget"]:
        return
    decision["served_before_refit_check"] = decision["primary_budget"]
    if served is not None:
        decision["primary_budget"] = served
        decision["why"] = by_budget[served]["wins"] or ["protection off"]
        return
    last = list(by_budget.values())[-1]
    decision.update(mode="single", prior=GLOBAL, alpha=0.0, primary_budget=list(by_budget)[-1])
    decision["model"] = (last.get("single") or {}).get("model")
    decision.pop("why", None)
