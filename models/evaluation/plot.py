"""PNG plot of a quality-vs-cost report: the router's frontier, its operating point(s),
single models, route-by-task, random mix and the oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
    by_task = report.get("route_by_task", {}).get("frontier")
    if by_task:
        ax.plot(
            [p["cost_per_1k"] for p in by_task],
            [p["quality"] for p in by_task],
            "-.",
            color="green",
            label="route-by-task (chosen on this data)",
        )
    on_train = report.get("route_by_task", {}).get("chosen_on_train") or {}
    if on_train:
        ax.scatter(
            [p["cost_per_1k"] for p in on_train.values()],
            [p["quality"] for p in on_train.values()],
            marker="x",
            s=60,
            color="green",
            zorder=6,
            label="route-by-task (tables chosen on train)",
        )
    ops = report.get("operating_points") or {}
    if ops:
        ax.scatter(
            [p["cost_per_1k"] for p in ops.values()],
            [p["quality"] for p in ops.values()],
            marker="^",
            s=60,
            color="purple",
            zorder=6,
            label="router at validation-chosen cost_weight",
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
