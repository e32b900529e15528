"""The evidence a router operating point is judged on, measured on validation rows:
superiority over the single models (and their random mixes) the budget allows,
non-inferiority to the best single model, and the cost saving. Pure numpy; the rules
that use it are in :mod:`models.training.operating`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MARGIN = 0.01
MIN_SAVING = 0.05
RESAMPLES = 2000
PER_1K = 1000.0
NO_BUDGET = float("inf")


def sig(value: float, digits: int = 6) -> float:
    """``value`` to ``digits`` significant digits (costs span many orders of magnitude)."""
    return float(f"{value:.{digits}g}")


def within(cost: float, budget: float) -> bool:
    """``cost <= budget`` up to float noise (costs arrive as float32 from the data)."""
    return bool(cost <= budget * (1.0 + 1e-9) + 1e-15)


def best_model(scores: np.ndarray, costs: np.ndarray) -> int:
    """The best single model: highest mean score, ties cheaper."""
    q, c = scores.mean(axis=0, dtype=np.float64), costs.mean(axis=0, dtype=np.float64)
    return max(range(scores.shape[1]), key=lambda j: (q[j], -c[j]))


def best_single(scores: np.ndarray, costs: np.ndarray, budget: float) -> int | None:
    """Index of the best-quality model whose mean cost fits ``budget`` (ties: cheaper)."""
    q, c = scores.mean(axis=0, dtype=np.float64), costs.mean(axis=0, dtype=np.float64)
    ok = [j for j in range(scores.shape[1]) if within(c[j], budget)]
    return max(ok, key=lambda j: (q[j], -c[j])) if ok else None


def cost_reference(scores: np.ndarray, costs: np.ndarray, margin: float) -> int:
    """The cheapest single model whose mean score is within ``margin`` of the best one's
    (the best model itself when no cheaper one is that good)."""
    q, c = scores.mean(axis=0, dtype=np.float64), costs.mean(axis=0, dtype=np.float64)
    top = float(q.max())
    near = [j for j in range(scores.shape[1]) if q[j] >= top - margin - 1e-12]
    return min(near, key=lambda j: (c[j], -q[j]))


def frontier_baseline(
    scores: np.ndarray,
    costs: np.ndarray,
    models: Sequence[str],
    budget: float,
    cost: float,
) -> tuple[str, np.ndarray] | None:
    """What a router point costing ``cost`` (per prompt, within ``budget``) must beat: the
    best of the single models within the budget and the random mixes of two models
    (share ``w`` of the rows to the cheaper one) whose expected cost is ``cost``; as
    (description, expected score per row). None when nothing is that cheap."""
    q, c = scores.mean(axis=0, dtype=np.float64), costs.mean(axis=0, dtype=np.float64)
    options: list[tuple[float, str, np.ndarray]] = [
        (float(q[j]), models[j], scores[:, j]) for j in range(len(models)) if within(c[j], budget)
    ]
    for a in range(len(models)):
        for b in range(len(models)):
            if not c[a] <= cost < c[b]:
                continue
            w = float((c[b] - cost) / (c[b] - c[a]))
            rows = w * scores[:, a] + (1.0 - w) * scores[:, b]
            name = f"mix {w:.2f} {models[a]} + {1 - w:.2f} {models[b]}"
            options.append((float(rows.mean()), name, rows))
    if not options:
        return None
    _, name, rows = max(options, key=lambda o: o[0])
    return name, rows


def _resample_means(values: np.ndarray, n: int, seed: int) -> np.ndarray:
    """[n, columns] means of ``values`` [rows, columns] over bootstrap resamples of the
    rows, in chunks so the index matrix stays small."""
    rng = np.random.default_rng(seed)
    rows = len(values)
    chunk = max(1, 2_000_000 // max(rows, 1))
    out = []
    for start in range(0, n, chunk):
        idx = rng.integers(0, rows, size=(min(chunk, n - start), rows))
        out.append(values[idx].mean(axis=1))
    return np.concatenate(out)


def compare_with_best(
    router_scores: np.ndarray,
    router_costs: np.ndarray,
    best_scores: np.ndarray,
    reference_costs: np.ndarray,
    *,
    margin: float = MARGIN,
    min_saving: float = MIN_SAVING,
    confidence: float = 0.9,
    n: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """A router point's non-inferiority in quality to the best single model and its cost
    saving against the cost reference (:func:`cost_reference`), per validation row
    (paired bootstrap: the same resamples for both, one-sided ``confidence`` bounds)."""
    diff = np.asarray(router_scores, np.float64) - np.asarray(best_scores, np.float64)
    pair = np.stack(
        [diff, np.asarray(router_costs, np.float64), np.asarray(reference_costs, np.float64)], 1
    )
    means = _resample_means(pair, n, seed)
    tail = 1.0 - min(max(confidence, 0.0), 1.0)
    single_mean = float(pair[:, 2].mean())
    if single_mean > 0:
        saving = 1.0 - float(pair[:, 1].mean()) / single_mean
        with np.errstate(divide="ignore", invalid="ignore"):
            savings = 1.0 - means[:, 1] / means[:, 2]
        saving_lcb = float(np.quantile(np.nan_to_num(savings, nan=0.0), tail))
    else:
        saving = saving_lcb = 0.0
    diff_lcb = float(np.quantile(means[:, 0], tail))
    return {
        "quality_diff": round(float(diff.mean()), 4),
        "quality_diff_lcb": round(diff_lcb, 4),
        "cost_saving": round(saving, 4),
        "cost_saving_lcb": round(saving_lcb, 4),
        "noninferior": bool(diff_lcb >= -margin - 1e-12),
        "saves_cost": bool(saving_lcb >= min_saving - 1e-12),
    }


def gain_confidence(gain: np.ndarray, n: int = 2000, seed: int = 0) -> float:
    """Share of bootstrap resamples of the rows whose mean paired gain is > 0."""
    if len(gain) == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    means = gain[rng.integers(0, len(gain), size=(n, len(gain)))].mean(axis=1)
    return float((means > 0).mean())


def against_baseline(
    entry: dict[str, Any],
    point: tuple[float, float, float, np.ndarray] | None,
    scores: np.ndarray,
    costs: np.ndarray,
    models: Sequence[str],
    level: float,
    confidence: float,
) -> None:
    """Record the router's operating point and whether it beats the best single model the
    budget allows and every random mix of single models costing no more than it (paired
    bootstrap on the validation rows; :func:`models.training.operating.frontier_baseline`)."""
    if point is None:
        return
    q, c, lam, choices = point
    entry["router"] = {
        "cost_weight": lam,
        "quality": round(q, 4),
        "cost_per_1k": sig(c * PER_1K),
    }
    baseline = frontier_baseline(scores, costs, models, level, c)
    if baseline is None:
        entry["beats_single"], entry["gain_confidence"] = True, 1.0
        return
    name, base_rows = baseline
    gain = scores[np.arange(len(scores)), choices] - base_rows
    conf = gain_confidence(gain)
    entry["baseline"] = {"name": name, "quality": round(float(base_rows.mean()), 4)}
    entry["gain"] = round(float(gain.mean()), 4)
    entry["gain_confidence"] = round(conf, 4)
    entry["beats_single"] = bool(gain.mean() > 0 and conf >= confidence)


def evidence(
    entry: dict[str, Any],
    point: tuple[float, float, float, np.ndarray] | None,
    scores: np.ndarray,
    costs: np.ndarray,
    models: Sequence[str],
    level: float,
    settings: Mapping[str, Any],
) -> None:
    """The router point's tests: superiority over the single-model baseline within the
    budget, non-inferiority to and saving against the best single model."""
    against_baseline(entry, point, scores, costs, models, level, settings["point_confidence"])
    best = best_single(scores, costs, NO_BUDGET)
    if point is None or best is None:
        return
    rows = np.arange(len(scores))
    ref = cost_reference(scores, costs, settings["margin"])
    entry["vs_best"] = {
        "model": models[best],
        "cost_reference": models[ref],
        **compare_with_best(
            scores[rows, point[3]],
            costs[rows, point[3]],
            scores[:, best],
            costs[:, ref],
            margin=settings["margin"],
            min_saving=settings["min_saving"],
            confidence=settings["point_confidence"],
        ),
    }
