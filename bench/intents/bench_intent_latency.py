"""Decision latency: the embedding backend with nearest examples vs with a trained intent
head (same encoder, same process, requests interleaved so machine noise hits both), plus
the head's own share of a decision (``head_scores`` alone: the n-gram features and the
matrix products, per message).

    PYTHONPATH=. python -m bench.intents.bench_intent_latency HEAD_CONFIG.yaml [N] [ROUNDS]
    PYTHONPATH=. python -m bench.intents.bench_intent_latency --train-lexical [N] [ROUNDS]

``--train-lexical`` first trains a head with lexical features (``train-intents --features
lexical``) on the default config's own descriptions and examples, as labelled rows, into
a temporary directory, and measures that one. ROUNDS (default 3) repeats the N messages;
each round's p50 ratio is reported too (a shared machine moves single rounds). Writes
bench/results/intent-head-latency.json + .md.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.metrics import RouterMetrics
from app.settings import DEFAULT_CONFIG, Settings
from bench.common import md_table, write_results
from models.core.conversation import Conversation
from models.core.routing_config import load_routing_config
from models.evaluation.data import read_jsonl
from models.intents.data import row_text
from strategies.base import StrategyContext
from strategies.intent.embedding import EmbeddingIntentClassifier


def train_lexical_head(out: Path) -> Path:
    """A head with n-gram features trained on the default config's own rows."""
    from models.intents.job import IntentJob, config_rows, run_train_intents

    config = load_routing_config(DEFAULT_CONFIG)
    texts, labels = config_rows(config)
    data = out / "config-rows.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": t, "intent": y}) + "\n" for t, y in zip(texts, labels, strict=True)
        )
    )
    run_train_intents(IntentJob(data=data, config=config, out=out, features="lexical"))
    return out / "routing.yaml"


async def main(head_config: str, n: int, rounds: int = 3) -> dict[str, Any]:
    settings = Settings(strategy="intent")
    rows = list(read_jsonl(Path("bench/data/intent-dev.jsonl")))[:n]
    convs = [Conversation.from_text(row_text(r)) for r in rows]
    backends = {}
    for name, path in (("nearest_examples", str(DEFAULT_CONFIG)), ("trained_head", head_config)):
        ctx = StrategyContext(settings, load_routing_config(path), RouterMetrics())
        backends[name] = EmbeddingIntentClassifier(ctx)
        await backends[name].start()
        await backends[name].classify(convs[0])
    times: dict[str, list[float]] = {k: [] for k in backends}
    round_ratios = []
    for _ in range(rounds):
        this_round: dict[str, list[float]] = {k: [] for k in backends}
        for i, conv in enumerate(convs):
            order = list(backends.items())
            for name, clf in order if i % 2 else order[::-1]:  # alternate who goes first
                start = time.perf_counter()
                await clf.classify(conv)
                this_round[name].append(time.perf_counter() - start)
        for name, t in this_round.items():
            times[name] += t
        p50 = {name: float(np.percentile(t, 50)) for name, t in this_round.items()}
        round_ratios.append(round(p50["trained_head"] / p50["nearest_examples"], 3))
    head_clf = backends["trained_head"]
    head = head_clf._head
    assert head is not None
    head_only = []
    vector = np.zeros((1, head.weight.shape[1]), np.float32)
    vector[0, 0] = 1.0
    for conv in convs:
        text = conv.recent_user_texts(1)[0]
        start = time.perf_counter()
        head_clf.head_scores(vector, [text])
        head_only.append(time.perf_counter() - start)
    out: dict[str, Any] = {
        name: {
            "p50_ms": round(float(np.percentile(t, 50)) * 1000, 2),
            "mean_ms": round(float(np.mean(t)) * 1000, 2),
        }
        for name, t in times.items()
    }
    out["ratio_p50"] = round(out["trained_head"]["p50_ms"] / out["nearest_examples"]["p50_ms"], 3)
    out["ratio_mean"] = round(
        out["trained_head"]["mean_ms"] / out["nearest_examples"]["mean_ms"], 3
    )
    out["round_ratios_p50"] = round_ratios
    out["head_only_us"] = {
        "p50": round(float(np.percentile(head_only, 50)) * 1e6, 1),
        "p99": round(float(np.percentile(head_only, 99)) * 1e6, 1),
    }
    out["head"] = {
        "labels": len(head.labels),
        "lexical_features": head.lexical.n_features if head.lexical is not None else 0,
    }
    out["note"] = (
        f"{rounds} rounds of {len(convs)} single-turn dev messages, interleaved; 2 shared CPU cores"
    )
    for clf in backends.values():
        await clf.aclose()
    return out


def report(out: dict[str, Any]) -> None:
    rows = [
        [name, out[name]["p50_ms"], out[name]["mean_ms"]]
        for name in ("nearest_examples", "trained_head")
    ]
    table = md_table(["backend", "p50 ms", "mean ms"], rows)
    table += (
        f"\n\nratio p50 {out['ratio_p50']} (per round {out['round_ratios_p50']}), mean "
        f"{out['ratio_mean']}; the head alone "
        f"(n-gram features + matrix products, {out['head']['labels']} labels, "
        f"{out['head']['lexical_features']} n-gram features): p50 {out['head_only_us']['p50']}"
        f" µs, p99 {out['head_only_us']['p99']} µs per message. {out['note']}."
    )
    write_results("intent-head-latency", out, table)
    print(json.dumps(out))


if __name__ == "__main__":
    args = sys.argv[1:]
    count = int(args[1]) if len(args) > 1 else 120
    repeat = int(args[2]) if len(args) > 2 else 3
    if args and args[0] == "--train-lexical":
        with tempfile.TemporaryDirectory() as tmp:
            report(asyncio.run(main(str(train_lexical_head(Path(tmp))), count, repeat)))
    else:
        report(asyncio.run(main(args[0], count, repeat)))
