"""Intent classification on Banking77 and CLINC150: the embedding backend's nearest-
example scoring (top-3 mean similarity, as served without training) vs the trained head
(``llm-router train-intents``: softmax regression, C and the ``other`` threshold chosen
on validation). Embeddings: the serving encoder (packaged MiniLM, int8-quantized on CPU,
``ROUTER_INTENT__QUANTIZE=true``), cached under .cache/embeddings.

    PYTHONPATH=. .venv/bin/python -m bench.bench_intents   # -> bench/results/intents.json
    PYTHONPATH=. .venv/bin/python -m bench.bench_intents clinc-balanced  # adds one entry
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench import intent_data
from models.intent_head import TextEmbedder
from models.intent_train import decide, fit_intents

OUT = Path("bench/results/intents.json")
CACHE = ".cache/embeddings"
OTHER = "other"


def topk_similarity(
    x_ref: np.ndarray, y_ref: Sequence[str], x: np.ndarray, k: int = 3
) -> tuple[list[str], np.ndarray]:
    """The served nearest-example rule: an intent's score is the mean of its k most
    similar references."""
    names = sorted(set(y_ref))
    owner = np.array([names.index(y) for y in y_ref])
    sims = x @ x_ref.T
    scores = np.stack(
        [np.sort(sims[:, owner == i], axis=1)[:, -k:].mean(axis=1) for i in range(len(names))],
        axis=1,
    )
    return [names[j] for j in scores.argmax(axis=1)], scores.max(axis=1)


def scores(pred: Sequence[str], gold: Sequence[str]) -> dict[str, float | None]:
    hits = np.array([p == g for p, g in zip(pred, gold, strict=True)])
    ins = np.array([g != OTHER for g in gold])
    return {
        "accuracy": round(float(hits.mean()), 4),
        "in_scope_accuracy": round(float(hits[ins].mean()), 4),
        "out_of_scope_recall": round(float(hits[~ins].mean()), 4) if (~ins).any() else None,
    }


def few_shot(y: Sequence[str], per: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    return np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per] for c in sorted(set(y))])
    )


def banking(embed, results: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    tr, ytr = intent_data.banking77("train")
    te, yte = intent_data.banking77("test")
    xtr, xte = embed(tr), embed(te)
    none = np.zeros((0, xtr.shape[1]), np.float32)
    for setting, seeds in (("full", [0]), ("10-shot", [0, 1, 2])):
        for seed in seeds:
            idx = np.arange(len(ytr)) if setting == "full" else few_shot(ytr, 10, seed)
            ys = [ytr[i] for i in idx]
            start = time.perf_counter()
            head = fit_intents(xtr[idx], ys, none, [], seed=seed).head
            fit_s = time.perf_counter() - start
            head.threshold = 0.0  # no out-of-scope rows in Banking77
            base, _ = topk_similarity(xtr[idx], ys, xte)
            key = f"banking77/{setting}/seed{seed}"
            results[key] = {
                "top3_similarity": scores(base, yte),
                "trained_head": scores(decide(head, xte, 0.0), yte),
                "fit_seconds": round(fit_s, 1),
            }
            print(key, results[key], flush=True)


def clinc(embed, results: dict, oos_share: float | None = None) -> None:  # type: ignore[no-untyped-def,type-arg]
    tr, ytr = intent_data.clinc150("train")
    va, yva = intent_data.clinc150("val")
    te, yte = intent_data.clinc150("test")
    xtr, xva, xte = embed(tr), embed(va), embed(te)
    none = np.zeros((0, xtr.shape[1]), np.float32)
    fit = fit_intents(xtr, ytr, none, [], validation=(xva, yva), oos_share=oos_share)
    # served rule: references = in-scope training rows, threshold chosen on val
    ins = [i for i, y in enumerate(ytr) if y != OTHER]
    pv, sv = topk_similarity(xtr[ins], [ytr[i] for i in ins], xva)
    best_t = max(
        np.unique(sv),
        key=lambda t: np.mean(
            [(OTHER if s < t else p) == g for p, s, g in zip(pv, sv, yva, strict=True)]
        ),
    )
    pt, st = topk_similarity(xtr[ins], [ytr[i] for i in ins], xte)
    base = [OTHER if s < best_t else p for p, s in zip(pt, st, strict=True)]
    results["clinc150" if oos_share is None else f"clinc150/oos_share={oos_share}"] = {
        "top3_similarity": {**scores(base, yte), "threshold": round(float(best_t), 4)},
        "trained_head": {
            **scores(fit.head.predict(xte), yte),
            "threshold": fit.head.threshold,
            "c": fit.metrics["c"],
        },
    }
    print(results, flush=True)


def main() -> None:
    """All benchmarks; ``clinc-balanced`` only reruns CLINC150 with the threshold chosen
    for a 50% out-of-scope share (equal weight to in-scope accuracy and OOS recall)."""
    embedder = TextEmbedder(quantize=True, cache_dir=CACHE)
    results: dict = {"encoder": embedder.info, "note": "2 shared CPU cores (noisy)"}  # type: ignore[type-arg]
    if sys.argv[1:] == ["clinc-balanced"]:
        results = json.loads(OUT.read_text()) if OUT.exists() else results
        clinc(embedder.embed, results, oos_share=0.5)
    else:
        banking(embedder.embed, results)
        clinc(embedder.embed, results)
    OUT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
