"""Which int8 scheme the ONNX runtime uses: ``quantize_dynamic`` variants of the exported
MiniLM (per output channel with 8-bit weights, per channel with 7-bit weights
``reduce_range``, per tensor) against torch's int8 per channel (the scheme served before)
and fp32, on the served nearest-example rule (top-3 similarity) and the embedding-only
head, Banking77 (full) and CLINC150 (its threshold and head rules as in
bench_intents.py), plus each variant's distance from fp32 (1 - cosine) and its
one-text encoding time, all in one process.

    PYTHONPATH=. .venv/bin/python -m bench.intents.bench_onnx_int8 [--variants pc pc_rr]
        -> bench/results/onnx-int8.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import md_table, write_results
from bench.intents import intent_data
from bench.intents.bench_intents import OTHER, scores, topk_similarity
from models.encoders import onnx_export
from models.encoders.onnx import OnnxSentenceEncoder
from models.encoders.sentence import DEFAULT_INT8, SentenceEncoder
from models.intents.fit import fit_intents, fit_intents_for_shares
from models.intents.head import clip_text

VARIANTS = {
    "pc": {"per_channel": True, "reduce_range": False},
    "pc_rr": {"per_channel": True, "reduce_range": True},
    "pt": {"per_channel": False, "reduce_range": False},
}
PROBE = "Can you explain how binary search works?"


def encoders(variants: list[str], cache: str) -> dict[str, Callable[[list[str]], np.ndarray]]:
    out: dict[str, Any] = {
        "torch-fp32": SentenceEncoder().encode,
        "torch-int8-per-channel": SentenceEncoder(quantize=True).encode,
        "onnx-fp32": OnnxSentenceEncoder(cache_dir=cache, threads=1).encode,
    }
    for name in variants:  # each variant quantized into its own cache
        onnx_export.ONNX_INT8[DEFAULT_INT8] = VARIANTS[name]
        enc = OnnxSentenceEncoder(quantize=True, cache_dir=f"{cache}/{name}", threads=1)
        out[f"onnx-int8-{name}"] = enc.encode
    onnx_export.ONNX_INT8[DEFAULT_INT8] = VARIANTS["pc"]
    return out


def accuracy(embed: Callable[[list[str]], np.ndarray]) -> dict[str, float]:
    sets = {
        "btr": intent_data.banking77("train"), "bte": intent_data.banking77("test"),
        "ctr": intent_data.clinc150("train"), "cva": intent_data.clinc150("val"),
        "cte": intent_data.clinc150("test"),
    }  # fmt: skip
    texts = {k: [clip_text(t) for t in v[0]] for k, v in sets.items()}
    y = {k: v[1] for k, v in sets.items()}
    x = {k: embed(v) for k, v in texts.items()}
    none = np.zeros((0, x["btr"].shape[1]), np.float32)
    r: dict[str, float] = {}
    pred, _ = topk_similarity(x["btr"], y["btr"], x["bte"])
    r["banking77 top3"] = scores(pred, y["bte"])["accuracy"]
    fit = fit_intents(x["btr"], y["btr"], none, [], texts=texts["btr"], config_texts=[],
                      lexical_grid=((0.0, 0.0),))  # fmt: skip
    r["banking77 head_embedding"] = scores(fit.head.predict(x["bte"]), y["bte"])["accuracy"]
    ins = [i for i, label in enumerate(y["ctr"]) if label != OTHER]
    ref, ref_y = x["ctr"][ins], [y["ctr"][i] for i in ins]
    pv, sv = topk_similarity(ref, ref_y, x["cva"])

    def val_accuracy(t: float) -> float:
        hits = [(OTHER if s < t else p) == g for p, s, g in zip(pv, sv, y["cva"], strict=True)]
        return float(np.mean(hits))

    best = max(np.unique(sv), key=val_accuracy)
    pt, st = topk_similarity(ref, ref_y, x["cte"])
    base = [OTHER if s < best else p for p, s in zip(pt, st, strict=True)]
    r["clinc150 top3"] = scores(base, y["cte"])["accuracy"]
    rules = {"val_mix": None, "balanced": 0.5, "documented_test_share": 1000 / 5500}
    fits = fit_intents_for_shares(
        x["ctr"], y["ctr"], none, [], list(rules.values()), validation=(x["cva"], y["cva"]),
        texts=texts["ctr"], config_texts=[], validation_texts=texts["cva"],
        lexical_grid=((0.0, 0.0),),
    )  # fmt: skip
    for rule, f in zip(rules, fits, strict=True):
        r[f"clinc150 head_embedding {rule}"] = scores(f.head.predict(x["cte"]), y["cte"])[
            "accuracy"
        ]
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["pc", "pc_rr"], choices=list(VARIANTS))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # as ONNX Runtime's sessions here: one thread each
    texts, _ = intent_data.banking77("test")
    with tempfile.TemporaryDirectory(prefix="bench-onnx-int8-") as cache:
        found = encoders(args.variants, cache)
        fp32 = found["torch-fp32"](texts[:1000])
        results: dict[str, Any] = {}
        for name, embed in found.items():
            start = time.perf_counter()
            entry: dict[str, Any] = accuracy(embed)
            entry["embed_seconds"] = round(time.perf_counter() - start, 1)
            entry["drift_from_fp32"] = round(
                float(1 - (embed(texts[:1000]) * fp32).sum(1).mean()), 5
            )
            one = []
            for _ in range(5):
                began = time.perf_counter()
                for _ in range(20):
                    embed([PROBE])
                one.append((time.perf_counter() - began) / 20 * 1000)
            entry["one_text_ms"] = round(statistics.median(one), 2)
            results[name] = entry
            print(name, entry, flush=True)
    keys = [k for k in next(iter(results.values())) if k != "embed_seconds"]
    rows = [[name, *(r[k] for k in keys)] for name, r in results.items()]
    write_results("onnx-int8", {"results": results}, md_table(["encoder", *keys], rows) + (
        "\n\nOne process; accuracy on the test splits (choices on train/validation only); "
        "drift = 1 - mean cosine to torch fp32 on 1,000 Banking77 test texts; one text: "
        "median of 5 x 20 single-text calls, one thread, on shared cores."
    ))  # fmt: skip


if __name__ == "__main__":
    main()
