"""Validation predictions of candidate routers (MLP, kNN at several k) and of the priors
they may be shrunk toward (global, task head, k-means clusters), and the final fit.

Small data (< ``CV_ROWS`` rows) is cross-validated (out-of-fold predictions for every row);
larger data uses one seeded held-out split. The chosen candidate is then refitted on all
rows (the MLP keeps an internal split for early stopping).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from torch import nn

from models.routers.knn import KNNRouter, knn_probabilities, unit
from models.routers.task_prior import cluster_ks, fit_prior, prior_probabilities, usable_tasks
from models.training.fit_mlp import TrainConfig, predict, split_indices, targets, train_router

CV_ROWS = 2000
CV_FOLDS = 5
KNN_KS = (5, 10, 20, 50, 100)


def folds_of(n: int, folds: int, val_fraction: float, seed: int) -> list[np.ndarray]:
    """Validation index sets: ``folds`` (0 = auto: CV_FOLDS below CV_ROWS rows, else one
    held-out split) disjoint sets."""
    if folds == 0:
        folds = CV_FOLDS if n < CV_ROWS else 1
    if folds <= 1:
        return [split_indices(n, val_fraction, seed)[1]]
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, min(folds, n))]


def validation_predictions(
    x: np.ndarray,
    scores: np.ndarray,
    models: Sequence[str],
    kinds: Sequence[str],
    cfg: TrainConfig,
    val_sets: list[np.ndarray],
    ks: Sequence[int] = KNN_KS,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(validation row indices, {candidate name: probabilities on those rows})."""
    rows = np.concatenate(val_sets)
    y = targets(scores, cfg)
    out: dict[str, np.ndarray] = {}
    if "knn" in kinds:
        z = unit(x)
        sims = z[rows] @ z.T
        for start, part in _offsets(val_sets):
            sims[start : start + len(part), part] = -np.inf  # never see your own fold
        for k in ks:
            if k < len(x):
                out[f"knn-k{k}"] = knn_probabilities(sims, y, k)
    if "mlp" in kinds:
        preds = []
        for part in val_sets:
            train = np.setdiff1d(np.arange(len(x)), part)
            result = train_router(x[train], scores[train], models, cfg)
            preds.append(predict(result.model, x[part]))
        out["mlp"] = np.concatenate(preds)
    return rows, out


def prior_names(n: int, tasks: Sequence[str] | None, kinds: Sequence[str]) -> list[str]:
    """The priors worth comparing: "global" always; "task" when every row has one of two or
    more tasks; "cluster-k<k>" for the k that leave enough rows per cluster."""
    names = ["global"]
    if "task" in kinds and usable_tasks(tasks):
        names.append("task")
    if "cluster" in kinds:
        names += [f"cluster-k{k}" for k in cluster_ks(n)]
    return names


def validation_priors(
    x: np.ndarray,
    scores: np.ndarray,
    tasks: Sequence[str] | None,
    names: Sequence[str],
    cfg: TrainConfig,
    val_sets: list[np.ndarray],
) -> dict[str, np.ndarray]:
    """{prior name: its prediction on the validation rows}, each fitted without the rows'
    own fold (the global prior is the training folds' mean score)."""
    y = targets(scores, cfg)
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for part in val_sets:
        train = np.setdiff1d(np.arange(len(x)), part)
        for name in names:
            if name == "global":
                out[name].append(np.tile(y[train].mean(axis=0), (len(part), 1)))
                continue
            fold_tasks = None if tasks is None else [tasks[i] for i in train]
            prior = fit_prior(name, x[train], y[train], fold_tasks, cfg.seed)
            out[name].append(prior_probabilities(prior, x[part]))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def _offsets(parts: list[np.ndarray]) -> list[tuple[int, np.ndarray]]:
    starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
    return [(int(s), p) for s, p in zip(starts, parts, strict=True)]


def fit_final(
    candidate: str, x: np.ndarray, scores: np.ndarray, models: Sequence[str], cfg: TrainConfig
) -> tuple[nn.Module, dict[str, object]]:
    """The chosen candidate trained on all rows, and its training metrics."""
    if candidate.startswith("knn-k"):
        k = int(candidate.removeprefix("knn-k"))
        return KNNRouter.fit(x, targets(scores, cfg), k), {"n_memory": len(x), "k": k}
    result = train_router(x, scores, models, replace(cfg))
    return result.model, dict(result.metrics)
