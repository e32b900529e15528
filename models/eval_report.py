"""Assemble the quality-vs-cost report (JSON-ready dict) and its PNG plot.

Costs are reported per 1k prompts (``*_per_1k``) in the data's unit (USD for RouterBench).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models import evaluation as ev

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
) -> dict[str, Any]:
    """Everything ``llm-router eval`` reports for quality/cost data.

    ``model_costs`` are the config's per-model costs (what the policy ranks by);
    ``budgets`` are $/1k levels for the (optimistic, test-chosen) best-under-budget points.
    """
    index = {m: j for j, m in enumerate(models)}
    choice = np.array([index[m] for m in chosen])
    q, c = ev.outcome(choice, scores, costs)
    rows = np.arange(len(choice))
    base = ev.baselines(scores, costs, models)
    weak, strong = base["single"][base["cheapest"]], base["single"][base["best"]]
    report: dict[str, Any] = {
        "examples": len(choice),
        "models": list(models),
        "policy": {
            **policy,
            **_point(q, c),
            "quality_ci95": [round(v, 4) for v in ev.bootstrap_ci(scores[rows, choice])],
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
    frontier = ev.pareto(points)
    report["frontier"] = [_point(p["quality"], p["cost"]) for p in frontier]
    summary = ev.apgr_cpt(frontier, weak, strong)
    report["apgr"] = None if summary["apgr"] is None else round(summary["apgr"], 4)
    report["cpt"] = {
        k: None if v is None else {"pct_of_gap": v["pct_of_gap"], **_point(0, v["cost"])}
        for k, v in summary["cpt"].items()
    }
    for v in report["cpt"].values():
        if v is not None:
            v.pop("quality")
    match = ev.cost_to_match(frontier, strong["quality"])
    report["cost_to_match_best"] = (
        None
        if match is None
        else {
            "cost_per_1k": round(match * PER_1K, 4),
            "saving_pct": round(100 * (1 - match / strong["cost"]), 2),
        }
    )
    report["best_under_budget"] = {f"{b:g}": _best(points, b / PER_1K) for b in budgets}
    return report


def _best(points: Sequence[dict[str, float]], budget: float) -> dict[str, Any] | None:
    p = ev.best_under_budget(points, budget)
    return None if p is None else _point(p["quality"], p["cost"], cost_weight=p["cost_weight"])


def latency_percentiles(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 of latencies in seconds, as milliseconds (zeros when there are none)."""
    if not latencies_s:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    arr = np.asarray(latencies_s) * 1000.0
    return {f"p{p}_ms": round(float(np.percentile(arr, p)), 3) for p in (50, 95, 99)}


def plot_report(report: dict[str, Any], path: Path | str, title: str = "") -> Path:
    """Quality vs $/1k: the router's frontier, its operating point, single models, random,
    oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    base = report["baselines"]
    if report.get("curve"):
        front = report["frontier"]
        ax.plot(
            [p["cost_per_1k"] for p in front],
            [p["quality"] for p in front],
            "-o",
            ms=3,
            label="router (cost_weight sweep, frontier)",
        )
    for name, p in base["single"].items():
        ax.scatter(p["cost_per_1k"], p["quality"], marker="s", color="grey")
        ax.annotate(
            name.split("/")[-1],
            (p["cost_per_1k"], p["quality"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    weak, strong = base["single"][base["cheapest"]], base["single"][base["best"]]
    ax.plot(
        [weak["cost_per_1k"], strong["cost_per_1k"]],
        [weak["quality"], strong["quality"]],
        "--",
        color="grey",
        label="random mix cheapest/best",
    )
    ax.scatter(
        base["oracle"]["cost_per_1k"],
        base["oracle"]["quality"],
        marker="*",
        s=160,
        color="gold",
        edgecolor="k",
        label="oracle",
        zorder=5,
    )
    pol = report["policy"]
    ax.scatter(
        pol["cost_per_1k"],
        pol["quality"],
        marker="D",
        s=60,
        color="red",
        zorder=6,
        label=f"configured policy ({pol.get('name', '')})",
    )
    ax.set_xscale("log")
    ax.set_xlabel("cost per 1k prompts (log)")
    ax.set_ylabel("quality")
    apgr = report.get("apgr")
    ax.set_title(title or f"quality vs cost (APGR {apgr if apgr is not None else 'n/a'})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
