"""Decision latency: the embedding backend with nearest examples vs with a trained intent
head (same encoder, same process, requests interleaved so machine noise hits both).

    PYTHONPATH=. python -m bench.bench_intent_latency HEAD_CONFIG.yaml [N]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

from app.config import load_routing_config
from app.metrics import RouterMetrics
from app.settings import DEFAULT_CONFIG, Settings
from models.eval_data import read_jsonl
from models.intent_data import row_text
from strategies.base import Conversation, StrategyContext
from strategies.intent_embedding import EmbeddingIntentClassifier

OUT = Path("bench/results/intent-head-latency.json")


async def main(head_config: str, n: int) -> None:
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
    for i, conv in enumerate(convs):
        order = list(backends.items())
        for name, clf in order if i % 2 else order[::-1]:  # alternate who goes first
            start = time.perf_counter()
            await clf.classify(conv)
            times[name].append(time.perf_counter() - start)
    out = {
        name: {
            "p50_ms": round(float(np.percentile(t, 50)) * 1000, 2),
            "mean_ms": round(float(np.mean(t)) * 1000, 2),
        }
        for name, t in times.items()
    }
    out["ratio_p50"] = round(out["trained_head"]["p50_ms"] / out["nearest_examples"]["p50_ms"], 3)
    out["note"] = f"{len(convs)} single-turn dev messages, interleaved; 2 shared CPU cores"
    for clf in backends.values():
        await clf.aclose()
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 120))
