"""Encoding time of the intent encoder's two int8 schemes (per output channel, the
default, vs per tensor, heads written before it), interleaved in one process on the same
1,024 Banking77 test texts: batches of 64, and one text at a time (as a lone request).

    PYTHONPATH=. .venv/bin/python -m bench.intents.bench_int8_schemes [--rounds 3]
        -> bench/results/int8-schemes.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import md_table, write_results
from bench.intents import intent_data
from models.encoders.sentence import INT8_PER_CHANNEL, INT8_PER_TENSOR, SentenceEncoder

SCHEMES = (INT8_PER_TENSOR, INT8_PER_CHANNEL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--texts", type=int, default=1024)
    args = parser.parse_args()
    texts, _ = intent_data.banking77("test")
    texts = texts[: args.texts]
    encoders = {s: SentenceEncoder(quantize=s) for s in SCHEMES}
    for encoder in encoders.values():  # warm-up
        encoder.encode(texts[:64])
    batch: dict[str, list[float]] = {s: [] for s in SCHEMES}
    single: dict[str, list[float]] = {s: [] for s in SCHEMES}
    for _ in range(args.rounds):
        for scheme, encoder in encoders.items():  # interleaved: same conditions per round
            start = time.perf_counter()
            encoder.encode(texts, batch_size=64)
            batch[scheme].append(time.perf_counter() - start)
            start = time.perf_counter()
            for text in texts[:100]:
                encoder.encode([text])
            single[scheme].append((time.perf_counter() - start) * 10.0)  # ms per text
    rows = [
        [s, round(statistics.median(batch[s]), 3), round(statistics.median(single[s]), 2)]
        for s in SCHEMES
    ]
    ratio_batch = sum(batch[INT8_PER_CHANNEL]) / sum(batch[INT8_PER_TENSOR])
    ratio_single = sum(single[INT8_PER_CHANNEL]) / sum(single[INT8_PER_TENSOR])
    table = md_table(["scheme", f"{len(texts)} texts, batch 64 (s, median)",
                      "one text (ms, median)"], rows)  # fmt: skip
    table += (
        f"\n\nPer channel / per tensor: {ratio_batch:.3f} (batches), {ratio_single:.3f} "
        f"(one text), {args.rounds} interleaved rounds."
    )
    write_results(
        "int8-schemes",
        {
            "batch_seconds": batch,
            "one_text_ms": single,
            "ratio_batch": round(ratio_batch, 4),
            "ratio_single": round(ratio_single, 4),
            "texts": len(texts),
        },
        table,
    )
    print(table)


if __name__ == "__main__":
    main()
