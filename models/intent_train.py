"""Fit an intent head on labelled texts: softmax regression over sentence embeddings.

The regularisation strength and the ``other`` threshold are chosen on a stratified
validation split of the labelled rows (accuracy counting out-of-scope rows, whose gold
label is ``other``); the head is then refitted on every row. The routing config's
descriptions and examples are always part of the training rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.intent_head import IntentHead

OTHER = "other"
C_GRID = (8.0, 32.0)


@dataclass(slots=True)
class FitResult:
    head: IntentHead
    metrics: dict[str, object]


def fit_softmax(x: np.ndarray, labels: Sequence[str], c: float, seed: int = 0) -> IntentHead:
    """Multinomial logistic regression with sklearn's objective (``c`` * summed cross-
    entropy + half the squared weights), solved full-batch with torch L-BFGS (seconds on
    10k rows, where sklearn's lbfgs took minutes here). One class only -> constant."""
    import torch
    from torch.nn import functional as F

    names = sorted(set(labels))
    if len(names) == 1:
        return IntentHead(names, np.zeros((1, x.shape[1]), np.float32), np.zeros(1, np.float32))
    torch.manual_seed(seed)
    index = {name: i for i, name in enumerate(names)}
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    yt = torch.tensor([index[label] for label in labels])
    weight = torch.zeros(len(names), x.shape[1], requires_grad=True)
    bias = torch.zeros(len(names), requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=100, history_size=10, line_search_fn="strong_wolfe"
    )
    penalty = 1.0 / (2.0 * c * len(xt))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xt @ weight.T + bias, yt) + penalty * (weight**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return IntentHead(names, weight.detach().numpy().copy(), bias.detach().numpy().copy())


def decide(head: IntentHead, x: np.ndarray, threshold: float) -> list[str]:
    probs = head.probabilities(x)
    top = probs.argmax(axis=1)
    return [OTHER if p[j] < threshold else head.labels[j] for p, j in zip(probs, top, strict=True)]


def best_threshold(
    head: IntentHead, x: np.ndarray, gold: Sequence[str], oos_share: float | None = None
) -> tuple[float, float]:
    """(threshold, accuracy): the threshold on the top probability that maximises accuracy
    (out-of-scope rows count: their gold label is ``other``); ties take the lowest.
    ``oos_share`` reweights out-of-scope rows to that share of the total (the share
    expected in traffic, when validation has a different mix); None = as in ``gold``."""
    if OTHER not in gold:
        return 0.0, _accuracy(decide(head, x, 0.0), gold)
    weights = _weights(gold, oos_share)
    top = head.probabilities(x).max(axis=1)
    candidates = np.unique(np.concatenate([[0.0], top + 1e-6]))
    best = (0.0, -1.0)
    for t in candidates:
        acc = _accuracy(decide(head, x, float(t)), gold, weights)
        if acc > best[1] + 1e-12:
            best = (float(t), acc)
    return best


def _weights(gold: Sequence[str], oos_share: float | None) -> np.ndarray:
    oos = np.array([g == OTHER for g in gold])
    if oos_share is None or oos.all() or not oos.any():
        return np.ones(len(gold))
    return np.where(oos, oos_share / oos.sum(), (1.0 - oos_share) / (~oos).sum())


def _accuracy(pred: Sequence[str], gold: Sequence[str], weights: np.ndarray | None = None) -> float:
    if not gold:
        return 0.0
    hits = np.array([p == g for p, g in zip(pred, gold, strict=True)], dtype=float)
    return float(np.average(hits, weights=weights))


def stratified_split(
    labels: Sequence[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices; every label with >= 2 rows puts about ``fraction`` in val."""
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for label in sorted(set(labels)):
        rows = np.flatnonzero(np.asarray(labels) == label)
        if len(rows) < 2:
            continue
        n_val = max(1, round(len(rows) * fraction))
        val += list(rng.permutation(rows)[: min(n_val, len(rows) - 1)])
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def fit_intents(
    x: np.ndarray,
    labels: Sequence[str],
    x_config: np.ndarray,
    config_labels: Sequence[str],
    val_fraction: float = 0.2,
    seed: int = 0,
    c_grid: Sequence[float] = C_GRID,
    validation: tuple[np.ndarray, Sequence[str]] | None = None,
    oos_share: float | None = None,
) -> FitResult:
    """Choose C and the threshold on validation (a stratified split of the rows, or the
    given ``validation`` set), then refit on every row."""
    y = np.asarray(labels)
    if validation is not None:
        x = np.concatenate([x, validation[0]])
        y = np.asarray([*labels, *validation[1]])
        train = np.arange(len(labels))
        val = np.arange(len(labels), len(y))
    else:
        train, val = stratified_split(labels, val_fraction, seed)

    held_out = {v.tobytes() for v in x[val]}
    keep = np.array([v.tobytes() not in held_out for v in x_config], dtype=bool)

    def rows(idx: np.ndarray, all_config: bool = True) -> tuple[np.ndarray, list[str]]:
        """Training rows: labelled rows plus the config's examples (minus any that
        duplicate a validation row, which would leak it into the fit)."""
        mask = np.ones(len(x_config), bool) if all_config else keep
        labels_c = [label for label, k in zip(config_labels, mask, strict=True) if k]
        return np.concatenate([x[idx], x_config[mask]]), [*y[idx], *labels_c]

    trials: list[dict[str, Any]] = []
    if len(val):
        xt, yt = rows(train, all_config=False)
        for c in c_grid:
            head = fit_softmax(xt, yt, c, seed)
            t, acc = best_threshold(head, x[val], list(y[val]), oos_share)
            trials.append({"c": c, "threshold": round(t, 6), "val_accuracy": round(acc, 4)})
    pick: dict[str, Any] = (
        max(trials, key=lambda r: (r["val_accuracy"], -r["c"]))
        if trials
        else {"c": c_grid[len(c_grid) // 2], "threshold": 0.0, "val_accuracy": None}
    )
    xa, ya = rows(np.arange(len(x)))
    head = fit_softmax(xa, ya, float(pick["c"]), seed)
    head.threshold = float(pick["threshold"])
    metrics: dict[str, object] = {
        "n_rows": len(x),
        "n_config_examples": len(x_config),
        "n_val": len(val),
        "c": pick["c"],
        "threshold": pick["threshold"],
        "oos_share": oos_share,
        "val_accuracy": pick["val_accuracy"],
        "trials": trials,
        "label_counts": dict(Counter(y.tolist()).most_common()),
    }
    return FitResult(head, metrics)
