"""Move a trained router's operating point to a target the user states, on prompts of
their own: the utility policy's ``cost_weight`` (``argmax p - cost_weight * cost``) at
which

* ``share``: a share ``S`` of the prompts goes to a strong model ``M`` (no labels needed);
* ``budget``: the expected cost is at most ``USD`` per 1k prompts, at the best quality
  within it. Cost is the rows' own ``costs`` (USD per prompt) when every row has them,
  else the routing config's ``cost`` of the chosen model (per 1k requests; what ``train
  --write-config`` writes is the data's mean USD per 1k prompts). Quality is the rows'
  mean score when they have ``scores``, else the router's own estimate (the mean served
  probability of the chosen model);
* ``quality``: the cheapest point whose quality on the labelled rows is at least ``Q`` x
  the best single model's there.

Pure numpy: the probabilities are the served ones (the strategy's own scoring), so the
choices here are the choices serving makes with the written cost_weight. Among the
weights that reach the same best outcome the middle one (in log scale) is taken, so that
new prompts near a decision boundary do not all fall on one side of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from models.evaluation.metrics import bootstrap_ci, utility_choices

GRID = 2001
SHARE_TOLERANCE = 0.1  # how far a reachable share may be from the target
EXACT_SHARE = 0.01  # nearer than this counts as the target itself
PER_1K = 1000.0

Kind = Literal["share", "budget", "quality"]


class CalibrationError(ValueError):
    """The target cannot be reached with this router on these prompts (a usage error of
    the offline command, never raised while serving)."""


@dataclass(frozen=True, slots=True)
class Target:
    """One calibration target: ``share`` (``model`` gets ``value`` of the prompts),
    ``budget`` ($/1k) or ``quality`` (fraction of the best single model's quality)."""

    kind: Kind
    value: float
    model: str | None = None


def weight_grid(model_costs: np.ndarray, n: int = GRID) -> np.ndarray:
    """0 plus log-spaced weights from 'the most probable model' to 'the cheapest'."""
    spread = np.ptp(model_costs) if len(model_costs) else 0.0
    scale = float(spread) if spread > 0 else 1.0
    return np.concatenate([[0.0], np.geomspace(1e-5, 1e5, n - 1) / scale])


def _middle(best: np.ndarray) -> int:
    """The middle index of the first run of True in ``best``."""
    start = int(np.argmax(best))
    end = start
    while end + 1 < len(best) and best[end + 1]:
        end += 1
    return (start + end) // 2


@dataclass(slots=True)
class _Sweep:
    """Per cost_weight: choices and their outcomes on the rows."""

    weights: np.ndarray
    shares: np.ndarray  # [grid, models]
    cost: np.ndarray  # expected $/1k (or config cost units)
    quality: np.ndarray  # mean score, or the router's own estimate
    labelled: bool


def _sweep(
    probs: np.ndarray,
    model_costs: np.ndarray,
    scores: np.ndarray | None,
    costs: np.ndarray | None,
) -> _Sweep:
    weights = weight_grid(model_costs)
    rows = np.arange(len(probs))
    unit = costs * PER_1K if costs is not None else np.tile(model_costs, (len(probs), 1))
    value = scores if scores is not None else np.nan_to_num(probs, nan=0.0)
    shares = np.zeros((len(weights), probs.shape[1]))
    cost, quality = np.zeros(len(weights)), np.zeros(len(weights))
    for i, w in enumerate(weights):
        choice = utility_choices(probs, model_costs, float(w))
        shares[i] = np.bincount(choice, minlength=probs.shape[1]) / len(choice)
        cost[i], quality[i] = unit[rows, choice].mean(), value[rows, choice].mean()
    return _Sweep(weights, shares, cost, quality, scores is not None)


def _pick_share(sweep: _Sweep, target: Target, index: int) -> tuple[int, str | None]:
    """The point whose share for the strong model is the target's. A router moves prompts
    in groups, so the exact share may fall between two reachable ones: then the nearest
    share *at or below* the target (the target read as "at most"), or failing that the
    nearest above, within SHARE_TOLERANCE, with a note saying so; further off is an error
    naming the reachable shares around the target."""
    share = sweep.shares[:, index]
    gap = np.abs(share - target.value)
    if gap.min() <= EXACT_SHARE:
        return _middle(gap <= gap.min() + 1e-12), None
    below = share[share <= target.value]
    above = share[share >= target.value]
    near = [f"{part.max() if part is below else part.min():.0%}" for part in (below, above)
            if part.size]  # fmt: skip
    for part, pick in ((below, np.max), (above, np.min)):
        if part.size and abs(float(pick(part)) - target.value) <= SHARE_TOLERANCE:
            chosen = float(pick(part))
            note = (
                f"a {target.value:.0%} share for {target.model} falls between the shares this "
                f"router reaches on these prompts ({' and '.join(near)}): calibrated to "
                f"{chosen:.1%}"
            )
            return _middle(np.abs(share - chosen) <= 1e-12), note
    raise CalibrationError(
        f"a {target.value:.0%} share for {target.model} is out of reach with this router "
        f"on these prompts (nearest shares: {' and '.join(near)})"
    )


def _pick_budget(sweep: _Sweep, target: Target) -> int:
    ok = sweep.cost <= target.value + 1e-12
    if not ok.any():
        raise CalibrationError(
            f"a budget of {target.value:g}/1k is below the cheapest point ({sweep.cost.min():.4g}"
            "/1k: every prompt to the cheapest model)"
        )
    best_q = sweep.quality[ok].max()
    top = ok & (sweep.quality >= best_q - 1e-12)
    cheapest = sweep.cost[top].min()
    return _middle(top & (sweep.cost <= cheapest + 1e-12))


def _pick_quality(sweep: _Sweep, floor: float, best_q: float, target: Target) -> int:
    ok = sweep.quality >= floor - 1e-12
    if not ok.any():
        raise CalibrationError(
            f"a quality floor of {target.value:g} x the best single model's ({best_q:.3f}) is "
            f"out of reach: the router reaches at most {sweep.quality.max() / best_q:.3f} x"
        )
    cheapest = sweep.cost[ok].min()
    return _middle(ok & (sweep.cost <= cheapest + 1e-12))


def calibrate(
    probs: np.ndarray,
    model_costs: np.ndarray,
    models: Sequence[str],
    target: Target,
    scores: np.ndarray | None = None,
    costs: np.ndarray | None = None,
) -> dict[str, Any]:
    """The cost_weight that meets ``target`` on these rows and what it does there.

    ``probs`` [n, m] are the served probabilities (NaN: the model is not eligible for that
    row), ``model_costs`` the routing config's costs, ``scores``/``costs`` [n, m] the rows'
    labels when they have them (USD per prompt for costs)."""
    if target.kind == "quality" and scores is None:
        raise CalibrationError("--quality-floor needs labelled rows (per-model 'scores')")
    if target.kind == "share" and target.model not in models:
        raise CalibrationError(f"unknown strong model {target.model!r} (router models: "
                               f"{', '.join(models)})")  # fmt: skip
    sweep = _sweep(probs, model_costs, scores, costs)
    best: dict[str, Any] | None = None
    if scores is not None:
        q = scores.mean(axis=0)
        c = (costs * PER_1K if costs is not None else np.tile(model_costs, (len(q), 1))).mean(0)
        j = max(range(len(models)), key=lambda k: (q[k], -c[k]))
        best = {"model": models[j], "quality": round(float(q[j]), 4), "cost_per_1k": float(c[j])}
    note = None
    if target.kind == "share":
        i, note = _pick_share(sweep, target, list(models).index(str(target.model)))
    elif target.kind == "budget":
        i = _pick_budget(sweep, target)
    else:
        assert best is not None
        best_q = float(best["quality"])
        i = _pick_quality(sweep, target.value * best_q, best_q, target)
    out = _result(sweep, i, probs, model_costs, models, target, scores, costs, best)
    if note is not None:
        out["note"] = note
    return out


def _result(
    sweep: _Sweep,
    i: int,
    probs: np.ndarray,
    model_costs: np.ndarray,
    models: Sequence[str],
    target: Target,
    scores: np.ndarray | None,
    costs: np.ndarray | None,
    best: dict[str, Any] | None,
) -> dict[str, Any]:
    choice = utility_choices(probs, model_costs, float(sweep.weights[i]))
    rows = np.arange(len(choice))
    shares = {}
    for j, m in enumerate(models):
        hit = (choice == j).astype(np.float64)
        lo, hi = bootstrap_ci(hit)
        shares[m] = {"share": round(float(hit.mean()), 4), "ci95": [round(lo, 4), round(hi, 4)]}
    per_row_cost = costs[rows, choice] * PER_1K if costs is not None else model_costs[choice]
    out: dict[str, Any] = {
        "target": {"kind": target.kind, "value": target.value, "model": target.model},
        "cost_weight": float(sweep.weights[i]),
        "n_prompts": len(choice),
        "shares": shares,
        "cost_per_1k": round(float(per_row_cost.mean()), 6),
        "cost_source": "row costs" if costs is not None else "config costs",
        "cost_per_1k_ci95": [round(v, 6) for v in bootstrap_ci(per_row_cost.astype(float))],
    }
    if scores is not None:
        got = scores[rows, choice].astype(np.float64)
        out["quality"] = round(float(got.mean()), 4)
        out["quality_ci95"] = [round(v, 4) for v in bootstrap_ci(got)]
        out["best_single"] = best
    else:
        known = np.nan_to_num(probs, nan=0.0)[rows, choice]
        out["predicted_quality"] = round(float(known.mean()), 4)
    return out
