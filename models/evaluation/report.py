"""Assemble the quality-vs-cost report (JSON-ready dict) and its PNG plot.

Costs are reported per 1k prompts (``*_per_1k``) in the data's unit (USD for RouterBench).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.core.routing_config import OTHER_INTENT
from models.evaluation import metrics as ev

PER_1K = 1000.0


def _point(q: float, c: float, **extra: Any) -> dict[str, Any]:
    return {"quality": round(q, 4), "cost_per_1k": round(c * PER_1K, 4), **extra}


def _curve_point(p: dict[str, float]) -> dict[str, Any]:
    return _point(p["quality"], p["cost"], cost_weight=round(p["cost_weight"], 6))


def quality_report(
    models: Sequence[str],
    scores: np.ndarray,
    costs: np.ndarray,
    chosen: Sequence[str],
    *,
    policy: dict[str, Any],
    model_costs: np.ndarray,
    probs: np.ndarray | None = None,
    latencies_s: Sequence[float] = (),
    reasons: Sequence[str] = (),
    budgets: Sequence[float] = (),
    tasks: Sequence[str] | None = None,
    budget_weights: dict[str, float] | None = None,
    fixed_model: str | None = None,
    train_task_tables: dict[str, Any] | None = None,
    budget_probs: dict[str, np.ndarray] | None = None,
    budget_alpha: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Everything ``llm-router eval`` reports for quality/cost data.

    ``model_costs`` are the config's per-model costs (what the policy ranks by);
    ``budgets`` are $/1k levels for the (optimistic, test-chosen) best-under-budget points;
    ``budget_weights`` ($/1k budget -> cost_weight chosen on validation at training time)
    give the honest operating points; ``tasks`` (one per row) add the route-by-task
    baseline; ``fixed_model`` is the artifact's single-model fallback, if it chose one;
    ``train_task_tables`` (budget -> {"table": {task: model}}, chosen on the training data
    and recorded in the artifact) add route-by-task chosen on train, applied to these rows.
    ``budget_probs`` (budget -> probabilities served with that budget's own alpha, recorded
    in ``budget_alpha``) replace ``probs`` at that budget's operating point.
    """
    index = {m: j for j, m in enumerate(models)}
    choice = np.array([index[m] for m in chosen])
    q, c = ev.outcome(choice, scores, costs)
    rows = np.arange(len(choice))
    base = ev.baselines(scores, costs, models)
    report: dict[str, Any] = {
        "examples": len(choice),
        "models": list(models),
        "policy": {
            **policy,
            **_point(q, c),
            "quality_ci95": [round(v, 4) for v in ev.bootstrap_ci(scores[rows, choice])],
            "cost_per_1k_ci95": [
                round(v * PER_1K, 4) for v in ev.bootstrap_ci(costs[rows, choice].astype(float))
            ],
            "choices": dict(Counter(chosen).most_common()),
            "reasons": dict(Counter(reasons).most_common()),
        },
        "baselines": {
            "single": {m: _point(v["quality"], v["cost"]) for m, v in base["single"].items()},
            "random": _point(base["random"]["quality"], base["random"]["cost"]),
            "oracle": _point(base["oracle"]["quality"], base["oracle"]["cost"]),
            "cheapest": base["cheapest"],
            "best": base["best"],
        },
        "latency": latency_percentiles(latencies_s),
    }
    points = [{"cost_weight": float("nan"), "quality": q, "cost": c}]
    if probs is not None:
        auc = ev.per_model_auc(scores, probs, models)
        valid = [v for v in auc.values() if v is not None]
        report["per_model_auc"] = {m: None if v is None else round(v, 4) for m, v in auc.items()}
        report["mean_auc"] = round(float(np.mean(valid)), 4) if valid else None
        curve = ev.sweep(probs, scores, costs, model_costs)
        report["curve"] = [_curve_point(p) for p in curve]
        points = curve + points
    report.update(_frontier_summary(points, base))
    report["best_under_budget"] = {f"{b:g}": _best(points, b / PER_1K) for b in budgets}
    report["vs_best_single"] = _vs_single(scores, costs, scores[rows, choice], c, models)
    task_choices: dict[str, np.ndarray] = {}
    if tasks is not None:
        report["route_by_task"], task_choices = _route_by_task(
            tasks, scores, costs, models, budgets, train_task_tables
        )
    if budget_weights:
        report["operating_points"] = _operating_points(
            budget_weights, probs, scores, costs, model_costs, models, fixed_model, task_choices
        )
        points_at = report["operating_points"]
        for budget, own in (budget_probs or {}).items():  # that budget's own alpha
            lam = budget_weights[budget]
            own_choice = ev.utility_choices(own, model_costs, lam)
            points_at[budget] = _operating_point(
                own_choice, lam, scores, costs, models, task_choices, budget
            )
        for budget in points_at:
            if budget_alpha and budget in budget_alpha and fixed_model is None:
                points_at[budget]["alpha"] = budget_alpha[budget]
    return report


def _frontier_summary(points: list[dict[str, float]], base: dict[str, Any]) -> dict[str, Any]:
    """The quality-cost frontier of the evaluated points and RouteLLM's summaries of it
    against the cheapest and the best single model: APGR, CPT(50%/80%), cost to match."""
    weak, strong = base["single"][base["cheapest"]], base["single"][base["best"]]
    frontier = ev.pareto(points)
    summary = ev.apgr_cpt(frontier, weak, strong)
    cpt = {
        k: None if v is None else {"pct_of_gap": v["pct_of_gap"], **_point(0, v["cost"])}
        for k, v in summary["cpt"].items()
    }
    for v in cpt.values():
        if v is not None:
            v.pop("quality")
    match = ev.cost_to_match(frontier, strong["quality"])
    return {
        "frontier": [_point(p["quality"], p["cost"]) for p in frontier],
        "apgr": None if summary["apgr"] is None else round(summary["apgr"], 4),
        "cpt": cpt,
        "cost_to_match_best": (
            None
            if match is None
            else {
                "cost_per_1k": round(match * PER_1K, 4),
                "saving_pct": round(100 * (1 - match / strong["cost"]), 2),
            }
        ),
    }


def _route_by_task(
    tasks: Sequence[str],
    scores: np.ndarray,
    costs: np.ndarray,
    models: Sequence[str],
    budgets: Sequence[float],
    train_task_tables: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The route-by-task baseline on these rows (chosen on them: optimistic) and, when the
    artifact recorded them, the tables chosen on train applied here (with their choices)."""
    by_task = ev.pareto(ev.route_by_task(tasks, scores, costs))
    out: dict[str, Any] = {
        "frontier": [_point(p["quality"], p["cost"]) for p in by_task],
        "best_under_budget": {f"{b:g}": _best(by_task, b / PER_1K) for b in budgets},
    }
    task_choices: dict[str, np.ndarray] = {}
    if train_task_tables:
        out["chosen_on_train"], task_choices = _apply_task_tables(
            train_task_tables, tasks, scores, costs, models
        )
    return out, task_choices


def _vs_single(
    scores: np.ndarray, costs: np.ndarray, got: np.ndarray, cost: float, models: Sequence[str]
) -> dict[str, Any] | None:
    """The best single model costing no more than the router, and the paired gain."""
    mean_c = costs.mean(axis=0)
    ok = [j for j in range(scores.shape[1]) if mean_c[j] <= cost + 1e-12]
    if not ok:
        return None
    j = max(ok, key=lambda k: (scores[:, k].mean(), -mean_c[k]))
    return {
        "model": models[j],
        **_point(float(scores[:, j].mean()), float(mean_c[j])),
        "gain": round(float((got - scores[:, j]).mean()), 4),
        "gain_ci95": [round(v, 4) for v in ev.paired_gain_ci(got, scores[:, j])],
    }


def _operating_points(
    budget_weights: dict[str, float],
    probs: np.ndarray | None,
    scores: np.ndarray,
    costs: np.ndarray,
    model_costs: np.ndarray,
    models: Sequence[str],
    fixed_model: str | None,
    task_choices: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Per budget, the router at the cost_weight chosen on validation (no test tuning),
    with its paired gain over route-by-task chosen on train (``task_choices``) if given."""
    out: dict[str, Any] = {}
    for budget, lam in budget_weights.items():
        if fixed_model is not None:
            choice = np.full(len(scores), list(models).index(fixed_model))
        elif probs is not None:
            choice = ev.utility_choices(probs, model_costs, lam)
        else:
            continue
        out[budget] = _operating_point(choice, lam, scores, costs, models, task_choices, budget)
    return out


def _operating_point(
    choice: np.ndarray,
    lam: float,
    scores: np.ndarray,
    costs: np.ndarray,
    models: Sequence[str],
    task_choices: dict[str, np.ndarray] | None,
    budget: str,
) -> dict[str, Any]:
    """One budget's choices: quality and cost with intervals, the paired gains."""
    rows = np.arange(len(scores))
    q, c = ev.outcome(choice, scores, costs)
    got = scores[rows, choice]
    out: dict[str, Any] = {
        **_point(q, c, cost_weight=lam),
        "quality_ci95": [round(v, 4) for v in ev.bootstrap_ci(got)],
        "cost_per_1k_ci95": [
            round(v * PER_1K, 4) for v in ev.bootstrap_ci(costs[rows, choice].astype(float))
        ],
        "vs_best_single": _vs_single(scores, costs, got, c, models),
    }
    if task_choices and budget in task_choices:
        base = scores[rows, task_choices[budget]]
        out["vs_route_by_task_train"] = {
            "gain": round(float((got - base).mean()), 4),
            "gain_ci95": [round(v, 4) for v in ev.paired_gain_ci(got, base)],
        }
    return out


def _apply_task_tables(
    tables: dict[str, Any],
    tasks: Sequence[str],
    scores: np.ndarray,
    costs: np.ndarray,
    models: Sequence[str],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Route-by-task with each budget's table chosen on the training data (a task the
    table does not know leaves that budget out): the report entries and the choices."""
    index = {m: j for j, m in enumerate(models)}
    rows = np.arange(len(tasks))
    out: dict[str, Any] = {}
    choices: dict[str, np.ndarray] = {}
    for budget, entry in tables.items():
        table = entry.get("table", {})
        if any(t not in table or table[t] not in index for t in tasks):
            continue
        choice = np.array([index[table[t]] for t in tasks])
        choices[budget] = choice
        q, c = ev.outcome(choice, scores, costs)
        out[budget] = {
            **_point(q, c),
            "quality_ci95": [round(v, 4) for v in ev.bootstrap_ci(scores[rows, choice])],
            "table": dict(table),
        }
    return out, choices


def _best(points: Sequence[dict[str, float]], budget: float) -> dict[str, Any] | None:
    p = ev.best_under_budget(points, budget)
    return None if p is None else _point(p["quality"], p["cost"], cost_weight=p["cost_weight"])


def latency_percentiles(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 of latencies in seconds, as milliseconds (zeros when there are none)."""
    if not latencies_s:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    arr = np.asarray(latencies_s) * 1000.0
    return {f"p{p}_ms": round(float(np.percentile(arr, p)), 3) for p in (50, 95, 99)}


def intent_report(
    gold: list[str], predicted: list[str], models_gold: list[str], models_pred: list[str]
) -> dict[str, Any]:
    """Accuracy, per-intent precision/recall/F1, in-scope accuracy and out-of-scope
    (``other``) recall, confusion matrix, model-level accuracy."""
    labels = sorted(set(gold) | set(predicted))
    pairs = Counter(zip(gold, predicted, strict=True))
    per_intent = {}
    for label in labels:
        tp = pairs[(label, label)]
        pred_n = sum(1 for p in predicted if p == label)
        gold_n = sum(1 for g in gold if g == label)
        precision = tp / pred_n if pred_n else 0.0
        recall = tp / gold_n if gold_n else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_intent[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": gold_n,
        }
    n = len(gold)
    hits = [g == p for g, p in zip(gold, predicted, strict=True)]
    in_scope = [h for g, h in zip(gold, hits, strict=True) if g != OTHER_INTENT]
    out_scope = [h for g, h in zip(gold, hits, strict=True) if g == OTHER_INTENT]
    return {
        "examples": n,
        "accuracy": round(sum(hits) / n, 4),
        "accuracy_ci95": [round(v, 4) for v in ev.bootstrap_ci(np.asarray(hits, float))],
        "in_scope_accuracy": round(sum(in_scope) / len(in_scope), 4) if in_scope else None,
        "out_of_scope_recall": round(sum(out_scope) / len(out_scope), 4) if out_scope else None,
        "model_accuracy": round(
            sum(g == p for g, p in zip(models_gold, models_pred, strict=True)) / n, 4
        ),
        "per_intent": per_intent,
        "labels": labels,
        "confusion": {g: {p: pairs[(g, p)] for p in labels} for g in labels},
    }
