"""Fit an intent head on labelled texts: softmax regression over sentence embeddings,
optionally concatenated with TF-IDF word/character n-gram features of the same texts.

The feature set (embedding only, or embedding + lexical at a few block weights), the
regularisation strength and the ``other`` threshold are chosen on validation: the given
validation set, else stratified k-fold cross-validation below ``CV_BELOW`` rows (few
examples per intent: one split would leave one or two rows per intent to judge by), else
a stratified holdout split. Accuracy counts out-of-scope rows, whose gold label is
``other``. The head is then refitted on every row. The routing config's descriptions and
examples are always part of the training rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from models.core.routing_config import OTHER_INTENT
from models.intents.features import LexicalFeatures, SparseRows
from models.intents.head import IntentHead

C_GRID = (32.0, 128.0)
# (word n-gram weight, character n-gram weight) relative to the unit-length embedding;
# (0, 0) is the embedding-only head.
LEXICAL_GRID = ((0.0, 0.0), (0.5, 0.5), (1.0, 0.5))
CV_BELOW = 2000  # labelled rows under this: k-fold cross-validation instead of one split
CV_FOLDS = 5
MAX_ITER = 200


@dataclass(slots=True)
class FitResult:
    head: IntentHead
    metrics: dict[str, object]


def min_df_for(n_texts: int) -> int:
    """Few texts: keep every n-gram (a word seen once may be the one that names the
    intent); many: drop n-grams seen in one text only (typos, names)."""
    return 1 if n_texts < CV_BELOW else 2


def fit_softmax(
    x: np.ndarray,
    labels: Sequence[str],
    c: float,
    seed: int = 0,
    lexical: SparseRows | None = None,
) -> IntentHead:
    """Multinomial logistic regression with sklearn's objective (``c`` * summed cross-
    entropy + half the squared weights), solved full-batch with torch L-BFGS (seconds on
    10k rows, where sklearn's lbfgs took minutes here). ``lexical`` adds sparse feature
    rows (one per row of ``x``) with their own weight matrix. One class only -> constant."""
    import torch
    from torch.nn import functional as F

    names = sorted(set(labels))
    n_lex = lexical.n_features if lexical is not None else 0
    if len(names) == 1:
        return IntentHead(
            names,
            np.zeros((1, x.shape[1]), np.float32),
            np.zeros(1, np.float32),
            lexical_weight=np.zeros((n_lex, 1), np.float32) if lexical is not None else None,
        )
    torch.manual_seed(seed)
    index = {name: i for i, name in enumerate(names)}
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    yt = torch.tensor([index[label] for label in labels])
    weight = torch.zeros(len(names), x.shape[1], requires_grad=True)
    bias = torch.zeros(len(names), requires_grad=True)
    params = [weight, bias]
    lex_t = lex_w = None
    if lexical is not None:
        rows = np.repeat(np.arange(len(lexical)), np.diff(lexical.indptr))
        lex_t = torch.sparse_coo_tensor(
            torch.from_numpy(np.stack([rows, lexical.indices])),
            torch.from_numpy(lexical.values),
            (len(lexical), n_lex),
            check_invariants=False,
        ).coalesce()
        lex_w = torch.zeros(n_lex, len(names), requires_grad=True)
        params.append(lex_w)
    opt = torch.optim.LBFGS(
        params, lr=1.0, max_iter=MAX_ITER, history_size=10, line_search_fn="strong_wolfe"
    )
    penalty = 1.0 / (2.0 * c * len(xt))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = xt @ weight.T + bias
        squared = (weight**2).sum()
        if lex_t is not None and lex_w is not None:
            logits = logits + torch.sparse.mm(lex_t, lex_w)
            squared = squared + (lex_w**2).sum()
        loss = F.cross_entropy(logits, yt) + penalty * squared
        loss.backward()
        return loss

    opt.step(closure)
    return IntentHead(
        names,
        weight.detach().numpy().copy(),
        bias.detach().numpy().copy(),
        lexical_weight=lex_w.detach().numpy().copy() if lex_w is not None else None,
    )


def choose_threshold(
    top_prob: np.ndarray,
    top_label: Sequence[str],
    gold: Sequence[str],
    oos_share: float | None = None,
) -> tuple[float, float]:
    """(threshold, accuracy): the threshold on the top probability that maximises accuracy
    (out-of-scope rows count: their gold label is ``other``); ties take the lowest.
    ``oos_share`` reweights out-of-scope rows to that share of the total (the share
    expected in traffic, when validation has a different mix); None = as in ``gold``."""
    hits_kept = np.array([p == g for p, g in zip(top_label, gold, strict=True)], dtype=float)
    if OTHER_INTENT not in gold:
        return 0.0, _mean(hits_kept)
    weights = _weights(gold, oos_share)
    is_oos = np.array([g == OTHER_INTENT for g in gold], dtype=float)
    order = np.argsort(top_prob, kind="stable")
    # threshold just above the i-th smallest top probability: rows 0..i become "other"
    p_sorted = top_prob[order]
    gain = (is_oos - hits_kept)[order] * weights[order]  # change when a row becomes other
    base = float((hits_kept * weights).sum())
    totals = base + np.concatenate([[0.0], np.cumsum(gain)])
    # only cut between distinct probabilities
    valid = np.concatenate([[True], np.append(p_sorted[1:] > p_sorted[:-1], True)])
    totals = np.where(valid, totals, -np.inf)
    best = int(np.flatnonzero(totals >= totals.max() - 1e-9)[0])  # ties: the lowest
    if best == 0:
        threshold = 0.0
    elif best == len(p_sorted):
        threshold = float(p_sorted[-1]) + 1e-6
    else:  # halfway between the last row turned to other and the first one kept
        threshold = float(p_sorted[best - 1] + p_sorted[best]) / 2.0
    return threshold, float(totals[best] / weights.sum())


def best_threshold(
    head: IntentHead,
    x: np.ndarray,
    gold: Sequence[str],
    oos_share: float | None = None,
    texts: Sequence[str] | None = None,
) -> tuple[float, float]:
    """``choose_threshold`` for ``head``'s predictions on ``x`` (and ``texts``)."""
    probs = head.probabilities(x, texts)
    top = probs.argmax(axis=1)
    return choose_threshold(probs.max(axis=1), [head.labels[j] for j in top], gold, oos_share)


def _weights(gold: Sequence[str], oos_share: float | None) -> np.ndarray:
    oos = np.array([g == OTHER_INTENT for g in gold])
    if oos_share is None or oos.all() or not oos.any():
        return np.ones(len(gold))
    return np.where(oos, oos_share / oos.sum(), (1.0 - oos_share) / (~oos).sum())


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


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


def stratified_folds(labels: Sequence[str], k: int, seed: int) -> list[np.ndarray]:
    """k disjoint validation index sets; each label's rows are dealt round-robin over the
    folds (a label with a single row stays in training)."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    start = 0
    for label in sorted(set(labels)):
        rows = np.flatnonzero(np.asarray(labels) == label)
        if len(rows) < 2:
            continue
        for i, row in enumerate(rng.permutation(rows)):
            folds[(start + i) % k].append(int(row))
        start += len(rows)
    return [np.sort(np.asarray(f, dtype=np.int64)) for f in folds if f]


@dataclass(slots=True)
class _Data:
    """Labelled rows (x, y, texts) plus the config's rows, which always train."""

    x: np.ndarray
    y: np.ndarray
    texts: list[str] | None
    x_config: np.ndarray
    y_config: list[str]
    texts_config: list[str] | None

    def training(self, idx: np.ndarray, held_out: np.ndarray | None = None) -> _Data:
        """Rows ``idx`` plus the config rows, minus config rows that duplicate a held-out
        row (which would leak it into the fit)."""
        keep = np.ones(len(self.x_config), bool)
        if held_out is not None and len(held_out):
            seen = {v.tobytes() for v in self.x[held_out]}
            keep = np.array([v.tobytes() not in seen for v in self.x_config], dtype=bool)
        texts = None
        if self.texts is not None and self.texts_config is not None:
            texts = [self.texts[i] for i in idx]
            texts += [t for t, k in zip(self.texts_config, keep, strict=True) if k]
        labels = [*self.y[idx], *(lbl for lbl, k in zip(self.y_config, keep, strict=True) if k)]
        return _Data(
            np.concatenate([self.x[idx], self.x_config[keep]]),
            np.asarray(labels),
            texts,
            self.x_config[:0],
            [],
            [] if texts is not None else None,
        )


def _fit_trial(data: _Data, c: float, weights: tuple[float, float], seed: int) -> IntentHead:
    """One head: embedding-only when both lexical weights are 0."""
    if weights == (0.0, 0.0) or data.texts is None:
        return fit_softmax(data.x, list(data.y), c, seed)
    word, char = weights
    lexical = LexicalFeatures.fit(data.texts, min_df_for(len(data.texts)), 40_000, word, char)
    head = fit_softmax(data.x, list(data.y), c, seed, lexical.transform(data.texts))
    head.lexical = lexical
    return head


def _out_of_sample(
    data: _Data,
    splits: list[tuple[np.ndarray, np.ndarray]],
    c: float,
    weights: tuple[float, float],
    seed: int,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Top probability, top label and gold label of every validation row over the
    splits (one head per split)."""
    top_prob: list[float] = []
    top_label: list[str] = []
    gold: list[str] = []
    for train, val in splits:
        head = _fit_trial(data.training(train, held_out=val), c, weights, seed)
        texts = [data.texts[i] for i in val] if data.texts is not None else None
        probs = head.probabilities(data.x[val], texts)
        top_prob += probs.max(axis=1).tolist()
        top_label += [head.labels[j] for j in probs.argmax(axis=1)]
        gold += list(data.y[val])
    return np.asarray(top_prob), top_label, gold


def fit_chosen(
    x: np.ndarray,
    labels: Sequence[str],
    x_config: np.ndarray,
    config_labels: Sequence[str],
    chosen: dict[str, Any],
    seed: int = 0,
    texts: Sequence[str] | None = None,
    config_texts: Sequence[str] | None = None,
) -> IntentHead:
    """A head with settings chosen earlier (``chosen``: a fit's metrics, i.e. ``c``, the
    lexical weights and the threshold), fitted on every row with no selection: for
    embeddings from an encoder fine-tuned on all rows, where validation would leak."""
    use_texts = texts is not None and config_texts is not None
    data = _Data(
        np.asarray(x),
        np.asarray(labels),
        list(texts) if use_texts and texts is not None else None,
        x_config,
        list(config_labels),
        list(config_texts) if use_texts and config_texts is not None else None,
    )
    weights = (float(chosen["word_weight"]), float(chosen["char_weight"]))
    head = _fit_trial(data.training(np.arange(len(x))), float(chosen["c"]), weights, seed)
    return replace(head, threshold=float(chosen["threshold"]))


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
    texts: Sequence[str] | None = None,
    config_texts: Sequence[str] | None = None,
    validation_texts: Sequence[str] | None = None,
    lexical_grid: Sequence[tuple[float, float]] = LEXICAL_GRID,
    folds: int | None = None,
) -> FitResult:
    """Choose the features, C and the threshold on validation, then refit on every row.

    ``texts`` (with ``config_texts``, and ``validation_texts`` when ``validation`` is
    given) are the embedded texts; without them only the embedding-only head is tried.
    ``folds``: cross-validation folds (default: ``CV_FOLDS`` below ``CV_BELOW`` rows,
    else one ``val_fraction`` split; 1 forces the split)."""
    return fit_intents_for_shares(
        x, labels, x_config, config_labels, [oos_share], val_fraction, seed, c_grid,
        validation, texts, config_texts, validation_texts, lexical_grid, folds,
    )[0]  # fmt: skip


def fit_intents_for_shares(
    x: np.ndarray,
    labels: Sequence[str],
    x_config: np.ndarray,
    config_labels: Sequence[str],
    oos_shares: Sequence[float | None],
    val_fraction: float = 0.2,
    seed: int = 0,
    c_grid: Sequence[float] = C_GRID,
    validation: tuple[np.ndarray, Sequence[str]] | None = None,
    texts: Sequence[str] | None = None,
    config_texts: Sequence[str] | None = None,
    validation_texts: Sequence[str] | None = None,
    lexical_grid: Sequence[tuple[float, float]] = LEXICAL_GRID,
    folds: int | None = None,
) -> list[FitResult]:
    """``fit_intents`` for several out-of-scope shares at the cost of one: the validation
    fits are shared, each share picks its own trial and threshold, and heads with the
    same pick share the refit."""
    y = np.asarray(labels)
    all_texts: list[str] | None = list(texts) if texts is not None else None
    if validation is not None:
        x = np.concatenate([x, validation[0]])
        y = np.asarray([*labels, *validation[1]])
        if all_texts is not None:
            if validation_texts is None:
                raise ValueError("validation_texts are needed with texts and validation")
            all_texts += list(validation_texts)
        splits = [(np.arange(len(labels)), np.arange(len(labels), len(y)))]
        scheme = "given validation set"
    else:
        k = folds if folds is not None else (CV_FOLDS if len(y) < CV_BELOW else 1)
        if k > 1:
            fold_sets = stratified_folds(list(y), k, seed)
            splits = [(np.setdiff1d(np.arange(len(y)), f), f) for f in fold_sets]
            scheme = f"{len(splits)}-fold cross-validation"
        else:
            train, val = stratified_split(list(y), val_fraction, seed)
            splits = [(train, val)] if len(val) else []
            scheme = f"stratified {val_fraction:g} holdout"
    use_texts = all_texts is not None and config_texts is not None
    data = _Data(
        x,
        y,
        all_texts if use_texts else None,
        x_config,
        list(config_labels),
        list(config_texts) if use_texts and config_texts is not None else None,
    )
    grid = [(float(w), float(c)) for w, c in lexical_grid] if use_texts else [(0.0, 0.0)]

    out_of_sample = []  # (trial settings, top probabilities, top labels, gold)
    if splits:
        for weights in grid:
            for c in c_grid:
                trial = {"c": c, "word_weight": weights[0], "char_weight": weights[1]}
                out_of_sample.append((trial, *_out_of_sample(data, splits, c, weights, seed)))
    refits: dict[tuple[float, float, float], IntentHead] = {}
    results = []
    for oos_share in oos_shares:
        trials: list[dict[str, Any]] = []
        for trial, top_prob, top_label, gold in out_of_sample:
            t, acc = choose_threshold(top_prob, top_label, gold, oos_share)
            trials.append({**trial, "threshold": round(t, 6), "val_accuracy": round(acc, 4)})
        # best validation accuracy; ties: the simpler features, then the stronger penalty
        pick: dict[str, Any] = (
            max(
                trials,
                key=lambda r: (r["val_accuracy"], -r["word_weight"] - r["char_weight"], -r["c"]),
            )
            if trials
            else {
                "c": c_grid[len(c_grid) // 2],
                "word_weight": 0.0,
                "char_weight": 0.0,
                "threshold": 0.0,
                "val_accuracy": None,
            }
        )
        weights = (float(pick["word_weight"]), float(pick["char_weight"]))
        key = (float(pick["c"]), *weights)
        if key not in refits:
            refits[key] = _fit_trial(data.training(np.arange(len(x))), key[0], weights, seed)
        head = replace(refits[key], threshold=float(pick["threshold"]))
        metrics: dict[str, object] = {
            "n_rows": len(x),
            "n_config_examples": len(x_config),
            "n_val": sum(len(v) for _, v in splits),
            "validation": scheme,
            "c": pick["c"],
            "features": "embedding" if weights == (0.0, 0.0) else "embedding+lexical",
            "word_weight": weights[0],
            "char_weight": weights[1],
            "n_lexical_features": head.lexical.n_features if head.lexical is not None else 0,
            "threshold": pick["threshold"],
            "oos_share": oos_share,
            "val_accuracy": pick["val_accuracy"],
            "trials": trials,
            "label_counts": dict(Counter(y.tolist()).most_common()),
        }
        results.append(FitResult(head, metrics))
    return results
