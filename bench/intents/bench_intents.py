"""Intent classification on Banking77 and CLINC150: the embedding backend's nearest-
example scoring (top-3 mean similarity, as served without training) vs trained heads
(``llm-router train-intents``'s fit: softmax regression, the features, C and the
``other`` threshold chosen on validation, never on test):

* ``head_embedding``: the sentence embedding only (``--features embedding``);
* ``head``: embedding + TF-IDF word/character n-grams when validation prefers them
  (``--features auto``, the default);
* ``head_with_names`` (10 per intent): the same, with each intent's name ("card arrival")
  as its config description, as ``train-intents`` always adds BASE's descriptions;
* ``head_fine_tuned`` (10 per intent, with ``--fine-tune EPOCHS``): ``train-intents
  --fine-tune``'s fit with the names as descriptions: the encoder tuned on the rows, the
  head chosen on a 20% holdout the tuning did not see, then both refitted on every row;
  test embedded by the tuned encoder (int8 on CPU, as served).

Banking77 has no validation split: choices use a stratified 20% holdout of train, or
5-fold cross-validation below 2,000 rows (10 per intent). CLINC150 uses its val split;
its ``other`` threshold is reported under three rules fixed before test: the validation
mix (3% out-of-scope), a 50% share (balanced in-scope accuracy and OOS recall), and the
18% share that CLINC150 documents for its test split (1,000 of 5,500), standing for a
deployment that knows its traffic mix (``--oos-share``). Test accuracies carry 95%
bootstrap intervals. Embeddings: the serving encoder (packaged MiniLM, int8 on CPU, on
the ``--runtime`` that serves it: onnx by default, torch before the ONNX runtime),
cached under .cache/embeddings (``python -m bench.intents.embed_intent_data`` fills it).

    PYTHONPATH=. .venv/bin/python -m bench.intents.bench_intents [banking-full|banking-10shot|clinc]
        [--fine-tune 4 [--tune-device cuda]] [--runtime torch]
        -> bench/results/intents.json + intents.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, md_table, write_results
from bench.intents import intent_data
from models.encoders.runtime import EncoderRuntime
from models.evaluation.metrics import bootstrap_ci
from models.intents.fine_tune import FineTuneConfig
from models.intents.fit import LEXICAL_GRID, fit_intents, fit_intents_for_shares
from models.intents.head import TextEmbedder, clip_text
from models.intents.job import fit_fine_tuned

CACHE = ".cache/embeddings"
ONNX_CACHE = ".cache/onnx"
OTHER = "other"
CLINC_TEST_OOS_SHARE = 1000 / 5500  # documented in the CLINC150 data set
Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True, slots=True)
class Tuning:
    """``--fine-tune``: epochs, the encoder to start from, where to tune."""

    epochs: int
    encoder: str = "minilm"
    device: str | None = None
    quantize: bool = True  # the head's embeddings, as served on CPU
    runtime: EncoderRuntime | None = None


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


def scores(pred: Sequence[str], gold: Sequence[str]) -> dict[str, Any]:
    """Accuracy (with its 95% bootstrap interval), in-scope accuracy, OOS recall."""
    hits = np.array([p == g for p, g in zip(pred, gold, strict=True)], dtype=float)
    ins = np.array([g != OTHER for g in gold])
    out: dict[str, Any] = {
        "accuracy": round(float(hits.mean()), 4),
        "accuracy_ci95": [round(v, 4) for v in bootstrap_ci(hits)],
        "in_scope_accuracy": round(float(hits[ins].mean()), 4),
        "out_of_scope_recall": round(float(hits[~ins].mean()), 4) if (~ins).any() else None,
    }
    if (~ins).any():
        out["in_scope_accuracy_ci95"] = [round(v, 4) for v in bootstrap_ci(hits[ins])]
        out["out_of_scope_recall_ci95"] = [round(v, 4) for v in bootstrap_ci(hits[~ins])]
    return out


def few_shot(y: Sequence[str], per: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = np.asarray(y)
    return np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(arr == c))[:per] for c in sorted(set(y))])
    )


def intent_names(labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """(intents, descriptions): each intent's name as its description, card_arrival ->
    "card arrival"."""
    intents = [name for name in sorted(set(labels)) if name != OTHER]
    return intents, [name.replace("_", " ") for name in intents]


def head_entry(fit: Any, x: np.ndarray, texts: Sequence[str], gold: Sequence[str]) -> dict:  # type: ignore[type-arg]
    m = fit.metrics
    return {
        **scores(fit.head.predict(x, texts), gold),
        "features": m["features"],
        "c": m["c"],
        "word_weight": m["word_weight"],
        "char_weight": m["char_weight"],
        "threshold": fit.head.threshold,
        "validation": m["validation"],
        "val_accuracy": m["val_accuracy"],
    }


def fine_tuned_entry(
    tuning: Tuning, texts: list[str], labels: list[str], names: tuple[list[str], list[str]],
    test: list[str], gold: list[str], seed: int,
) -> dict[str, Any]:  # fmt: skip
    """``train-intents --fine-tune`` on these rows (intent names as config descriptions),
    scored on ``test`` embedded by the tuned encoder as the service runs it."""
    intents, descriptions = names
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-intents-") as tmp:
        encoder_dir = Path(tmp) / "encoder"
        tuned = fit_fine_tuned(
            texts, labels, descriptions, intents, encoder_dir,
            FineTuneConfig(epochs=tuning.epochs, seed=seed), encoder=tuning.encoder,
            tune_device=tuning.device, quantize=tuning.quantize, seed=seed,
            runtime=tuning.runtime,
        )  # fmt: skip
        fit_seconds = round(time.perf_counter() - start, 1)
        served = TextEmbedder(
            str(encoder_dir), quantize=tuning.quantize, cache_dir=None, runtime=tuning.runtime
        )
        x_test = served.embed(test)
    return {
        **head_entry(tuned.result, x_test, test, gold),
        "fit_seconds": fit_seconds,
        "fine_tune": tuned.tuning,
    }


def banking(
    embed: Embed,
    results: dict[str, Any],
    settings: Sequence[str] = ("full", "10-shot"),
    tuning: Tuning | None = None,
    methods: Sequence[str] | None = None,
) -> None:
    """Banking77 entries; ``methods`` (default all) names the heads to fit."""

    def wanted(name: str) -> bool:
        return methods is None or name in methods

    tr, ytr = intent_data.banking77("train")
    te, yte = intent_data.banking77("test")
    tr, te = [clip_text(t) for t in tr], [clip_text(t) for t in te]
    xtr, xte = embed(tr), embed(te)
    none = np.zeros((0, xtr.shape[1]), np.float32)
    intents, descriptions = intent_names(ytr)
    x_names = embed(descriptions)
    for setting, seeds in (("full", [0]), ("10-shot", [0, 1, 2])):
        if setting not in settings:
            continue
        for seed in seeds:
            idx = np.arange(len(ytr)) if setting == "full" else few_shot(ytr, 10, seed)
            ys, ts = [ytr[i] for i in idx], [tr[i] for i in idx]
            base, _ = topk_similarity(xtr[idx], ys, xte)
            entry: dict[str, Any] = {"top3_similarity": scores(base, yte)}
            runs = {"head_embedding": ((0.0, 0.0),), "head": LEXICAL_GRID}
            for name, grid in runs.items():
                if not wanted(name):
                    continue
                start = time.perf_counter()
                fit = fit_intents(
                    xtr[idx], ys, none, [], seed=seed, texts=ts, config_texts=[],
                    lexical_grid=grid,
                )  # fmt: skip
                entry[name] = {
                    **head_entry(fit, xte, te, yte),
                    "fit_seconds": round(time.perf_counter() - start, 1),
                }
            if setting == "10-shot" and wanted("head_with_names"):
                start = time.perf_counter()
                fit = fit_intents(
                    xtr[idx], ys, x_names, intents, seed=seed, texts=ts, config_texts=descriptions
                )
                assert fit.head.labels == intents
                entry["head_with_names"] = {
                    **head_entry(fit, xte, te, yte),
                    "fit_seconds": round(time.perf_counter() - start, 1),
                }
            if setting == "10-shot" and tuning is not None and wanted("head_fine_tuned"):
                entry["head_fine_tuned"] = fine_tuned_entry(
                    tuning, ts, ys, (intents, descriptions), te, yte, seed
                )
            key = f"banking77/{setting}/seed{seed}"
            results[key] = entry
            print(key, json.dumps(entry), flush=True)
            save(results)


def clinc(embed: Embed, results: dict[str, Any]) -> None:
    tr, ytr = intent_data.clinc150("train")
    va, yva = intent_data.clinc150("val")
    te, yte = intent_data.clinc150("test")
    tr, va, te = ([clip_text(t) for t in s] for s in (tr, va, te))
    xtr, xva, xte = embed(tr), embed(va), embed(te)
    none = np.zeros((0, xtr.shape[1]), np.float32)
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
    results["clinc150/top3_similarity"] = {
        **scores(base, yte),
        "threshold": round(float(best_t), 4),
    }
    rules = {"val_mix": None, "balanced": 0.5, "documented_test_share": CLINC_TEST_OOS_SHARE}
    for features, grid in (("head_embedding", ((0.0, 0.0),)), ("head", LEXICAL_GRID)):
        start = time.perf_counter()
        fits = fit_intents_for_shares(
            xtr, ytr, none, [], list(rules.values()), validation=(xva, yva), texts=tr,
            config_texts=[], validation_texts=va, lexical_grid=grid,
        )  # fmt: skip
        seconds = round(time.perf_counter() - start, 1)
        for (rule, share), fit in zip(rules.items(), fits, strict=True):
            key = f"clinc150/{features}/{rule}"
            results[key] = {
                **head_entry(fit, xte, te, yte),
                "oos_share": share,
                "fit_seconds_all_rules": seconds,
            }
            print(key, json.dumps(results[key]), flush=True)
        save(results)


def table(results: dict[str, Any]) -> str:
    rows = []
    for key, entry in results.items():
        if not key.startswith(("banking77", "clinc150")):
            continue
        items = entry.items() if "top3_similarity" in entry else [("", entry)]
        for method, r in items:
            if not isinstance(r, dict) or "accuracy" not in r:
                continue
            rows.append([
                key, method or "-", r["accuracy"], "–".join(map(str, r["accuracy_ci95"])),
                r["in_scope_accuracy"], r["out_of_scope_recall"], r.get("features", "-"),
                r.get("threshold", "-"), r.get("fit_seconds", r.get("fit_seconds_all_rules", "-")),
            ])  # fmt: skip
    return md_table(
        ["data", "method", "accuracy", "95% CI", "in-scope acc.", "OOS recall", "features",
         "threshold", "fit s"],
        rows,
    )  # fmt: skip


NOTE = (
    "Chosen on train/validation only; test reported once per method. Embeddings: int8 "
    "(per output channel) MiniLM on the CPU, as served, on the runtime in 'encoder'. "
    "Timings: the machine above."
)


RESULTS_NAME = ["intents"]  # --results


def save(results: dict[str, Any]) -> None:
    """bench/results/intents.json + .md, after every entry (a long run keeps its part),
    keeping the entries this run did not produce."""
    path = RESULTS / f"{RESULTS_NAME[0]}.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged = {k: v for k, v in merged.items() if k not in ("machine", "note")} | results
    write_results(RESULTS_NAME[0], {**merged, "note": NOTE}, table(merged) + "\n\n" + NOTE)


def main() -> None:
    """All benchmarks, or only the named ones (banking-full, banking-10shot, banking,
    clinc) merged into the last run's results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="*", help="banking-full, banking-10shot, banking, clinc")
    parser.add_argument(
        "--fine-tune",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="also run train-intents --fine-tune on the 10-per-intent sets",
    )
    parser.add_argument(
        "--methods",
        type=lambda text: [m for m in text.split(",") if m],
        help="Banking77 heads to fit, comma-separated (head_embedding, head, "
        "head_with_names, head_fine_tuned; default: all)",
    )
    parser.add_argument(
        "--full-precision",
        action="store_true",
        help="fp32 embeddings instead of the served int8 (ROUTER_INTENT__QUANTIZE=false)",
    )
    parser.add_argument("--results", default="intents", help="bench/results/NAME.json + .md")
    parser.add_argument("--tune-device", help="torch device for fine-tuning (default: cpu)")
    parser.add_argument("--encoder", default="minilm", help="packaged MiniLM or a directory")
    parser.add_argument(
        "--runtime", choices=["onnx", "torch"], default="onnx", help="ROUTER_ENCODER__RUNTIME"
    )
    args = parser.parse_args()
    which = args.which or ["banking", "clinc"]
    RESULTS_NAME[0] = args.results
    runtime = EncoderRuntime(args.runtime, ONNX_CACHE)
    embedder = TextEmbedder(
        args.encoder, quantize=not args.full_precision, cache_dir=CACHE, runtime=runtime
    )
    previous = RESULTS / f"{args.results}.json"
    results: dict[str, Any] = {}
    if args.which and previous.exists():
        skip = ("machine", "note")
        results = {k: v for k, v in json.loads(previous.read_text()).items() if k not in skip}
    results["encoder"] = embedder.info
    settings = [s for s, name in (("full", "banking-full"), ("10-shot", "banking-10shot"))
                if "banking" in which or name in which]  # fmt: skip
    tuning = None
    if args.fine_tune:
        tuning = Tuning(
            args.fine_tune, args.encoder, args.tune_device, not args.full_precision, runtime
        )
    if settings:
        banking(embedder.embed, results, settings, tuning, args.methods)
    if "clinc" in which:
        clinc(embedder.embed, results)
    save(results)


if __name__ == "__main__":
    main()
