"""What routing costs: the offline default router (intent strategy, embedding backend,
recommend mode) answering routed requests (``"model": "router"``) against requests that
name their model (no decision), on the same server, per encoder runtime (torch, onnx),
at several concurrencies. Every request in the run carries a prompt no other request
has (nothing can be answered from a cache). The runtimes' servers run side by side and
are measured in interleaved rounds, so both see the same background load.

Routing cost at c=1 = routed p50 - named p50. Throughput ratio = routed / named
decisions per second at the same concurrency. The ``encode`` stage (queue wait +
batched forward + hand-off) and the batch sizes come from the server's /metrics.

After the servers stop, the encoder's ceiling on this machine: one process per core, each
encoding batches of 32 distinct prompts with the served ONNX int8 encoder on one thread,
nothing else running. No server on the machine can route faster than that.

    PYTHONPATH=. .venv/bin/python -m bench.serving.bench_routing_cost [--rounds 3]
        [--setups torch onnx] [--concurrency 1 32 64] [--ceiling-seconds 10]
        -> bench/results/routing-cost.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import random
import re
import statistics
import time
from typing import Any

import httpx

from bench.common import ROOT, HttpTarget, load, md_table, router_server, write_results

NAMED_MODEL = "nvidia/nvidia-nemotron-nano-9b-v2"  # a model of the default config
SETUPS: dict[str, dict[str, str]] = {
    "torch": {"ROUTER_ENCODER__RUNTIME": "torch"},
    "onnx": {"ROUTER_ENCODER__RUNTIME": "onnx"},
    "onnx-window0": {"ROUTER_ENCODER__RUNTIME": "onnx", "ROUTER_BATCH__WINDOW_MS": "0"},
    "onnx-threads2": {"ROUTER_ENCODER__RUNTIME": "onnx", "ROUTER_TORCH_THREADS": "2"},
}
ONNX_CACHE = ROOT / ".cache" / "onnx"  # exported once, outside the measurement

# distinct short prompts, about 8-16 words, across the default config's intents
OPENINGS = ["Can you", "Please", "Could you", "I need you to", "Quickly", "Help me",
            "I'd like you to", "Would you", "Try to", "Hey, can you"]  # fmt: skip
ASKS = ["explain", "summarize", "compare", "describe", "prove", "debug", "plan", "translate",
        "rewrite", "list the steps of"]  # fmt: skip
TOPICS = ["binary search", "my weekend trip", "a recursive function", "the French revolution",
          "this photo of a cat", "a sourdough recipe", "my job interview", "quicksort in Rust",
          "the weather in Oslo", "a birthday message", "compound interest",
          "a Python bug"]  # fmt: skip
TAILS = ["for me", "in simple words", "step by step", "briefly", "in detail", "like I'm five",
         "with an example", "for a beginner", "in two sentences", "one more time",
         "again, that was wrong", "thanks!"]  # fmt: skip
NOUNS = ["today", "tonight", "for my class", "for work", "before Friday", "for my team",
         "for a friend", "for a blog post", "for an exam", "right now", "this week",
         "for my kids", "for tomorrow", "for the demo"]  # fmt: skip


def prompts() -> Any:
    """An endless stream of distinct prompts (each combination once, then with a count)."""
    parts = (OPENINGS, ASKS, TOPICS, TAILS, NOUNS)
    for lap in itertools.count():
        for words in itertools.product(*parts):
            yield " ".join(words) + ("" if lap == 0 else f" (take {lap + 1})")


class Bodies:
    """Request bodies with a fresh prompt each, routed or naming a model."""

    def __init__(self) -> None:
        self._prompts = prompts()
        self.sent = 0

    def maker(self, model: str) -> Any:
        def body() -> bytes:
            self.sent += 1
            message = {"role": "user", "content": next(self._prompts)}
            return json.dumps({"model": model, "messages": [message]}).encode()

        return body


def encode_stats(port: int) -> dict[str, float]:
    """Cumulative encode-stage seconds and count, batch-size sum and count (/metrics)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    stage = r'\{[^}]*stage="encode"[^}]*\} (\S+)'
    patterns = {
        "encode_sum": r"llm_router_stage_duration_seconds_sum" + stage,
        "encode_count": r"llm_router_stage_duration_seconds_count" + stage,
        "batch_sum": r"llm_router_batch_size_sum\{[^}]*\} (\S+)",
        "batch_count": r"llm_router_batch_size_count\{[^}]*\} (\S+)",
    }
    for key, pattern in patterns.items():
        out[key] = sum(float(v) for v in re.findall(pattern, text))
    return out


def measure(target: HttpTarget, bodies: Bodies, path: str, c: int, n: int) -> dict[str, Any]:
    before = encode_stats(target.port)
    load_before = os.getloadavg()[0]
    model = "router" if path == "routed" else NAMED_MODEL
    stats: dict[str, Any] = asyncio.run(load(target, bodies.maker(model), n, c))
    after = encode_stats(target.port)
    encodes = after["encode_count"] - before["encode_count"]
    batches = after["batch_count"] - before["batch_count"]
    if encodes:
        stats["encode_ms_mean"] = round(
            1000 * (after["encode_sum"] - before["encode_sum"]) / encodes, 3
        )
    if batches:
        stats["batch_size_mean"] = round((after["batch_sum"] - before["batch_sum"]) / batches, 2)
    stats["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return stats


def run(
    setups: list[str], concurrency: list[int], rounds: int, n_c1: int, n_loaded: int
) -> dict[str, Any]:
    bodies = Bodies()
    results: dict[str, Any] = {s: {} for s in setups}
    base = {"ROUTER_STRATEGY": "intent", "ROUTER_INTENT__BACKEND": "embedding",
            "ROUTER_MODE": "recommend", "ROUTER_ENCODER__CACHE_DIR": str(ONNX_CACHE)}  # fmt: skip
    with contextlib.ExitStack() as stack:
        targets = {s: stack.enter_context(router_server({**base, **SETUPS[s]})) for s in setups}
        for target in targets.values():  # warm-up, distinct prompts too
            asyncio.run(load(target, bodies.maker("router"), 64, 8))
        for r in range(rounds):
            for setup, target in targets.items():
                for c in concurrency:
                    n = n_c1 if c == 1 else max(n_loaded, 4 * c)
                    for path in ("named", "routed"):
                        stats = measure(target, bodies, path, c, n)
                        runs = results[setup].setdefault(str(c), {}).setdefault(path, [])
                        runs.append(stats)
                        print(f"round {r} {setup} c={c} {path}", stats, flush=True)
    return {"results": results, "requests_sent": bodies.sent}


def _ceiling_worker(seed: int, seconds: float, ready: Any, out: Any) -> None:
    from models.encoders.onnx import OnnxSentenceEncoder

    encoder = OnnxSentenceEncoder(quantize=True, cache_dir=ONNX_CACHE, threads=1)
    texts = list(itertools.islice(prompts(), 200_000))  # distinct, shuffled into a mix
    random.Random(seed).shuffle(texts)
    encoder.encode(texts[:64])  # warm
    ready.wait()
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:  # a long run wraps around the texts
        encoder.encode([texts[(done + i) % len(texts)] for i in range(32)])
        done += 32
    out.put(done / (time.perf_counter() - start))


def encoder_ceiling(seconds: float, processes: int | None = None) -> dict[str, Any]:
    """Sentences per second the served encoder computes with every core busy (one process
    per core, one thread each, batches of 32), and with one process alone."""
    processes = processes or os.cpu_count() or 1
    ctx = multiprocessing.get_context("spawn")
    found = {}
    for n in sorted({1, processes}):
        ready, out = ctx.Barrier(n), ctx.Queue()
        procs = [
            ctx.Process(target=_ceiling_worker, args=(i, seconds, ready, out)) for i in range(n)
        ]
        for proc in procs:
            proc.start()
        rates = [out.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join()
        found[n] = round(sum(rates), 1)
    return {"processes": processes, "one_process": found[1], "all_cores": found[processes]}


def summary(results: dict[str, Any]) -> list[list[Any]]:
    """One row per setup and concurrency: medians over the rounds."""
    rows = []
    for setup, by_c in results.items():
        for c, paths in by_c.items():
            named, routed = paths["named"], paths["routed"]

            def med(runs: list[dict[str, Any]], key: str) -> float:
                values = [r[key] for r in runs if key in r]
                return round(statistics.median(values), 3) if values else float("nan")

            cost = statistics.median(
                [b["p50_ms"] - a["p50_ms"] for a, b in zip(named, routed, strict=True)]
            )
            ratio = statistics.median(
                [
                    b["throughput_rps"] / a["throughput_rps"]
                    for a, b in zip(named, routed, strict=True)
                ]
            )
            rows.append([
                setup, c, med(named, "p50_ms"), med(routed, "p50_ms"), round(cost, 3),
                med(routed, "p99_ms"), med(named, "throughput_rps"), med(routed, "throughput_rps"),
                round(ratio, 3), med(routed, "encode_ms_mean"), med(routed, "batch_size_mean"),
                sum(r["requests"] for r in named + routed),
            ])  # fmt: skip
    return rows


HEADERS = ["runtime", "c", "named p50 ms", "routed p50 ms", "routing cost p50 ms",
           "routed p99 ms", "named req/s", "routed req/s", "routed / named",
           "encode stage ms (mean)", "batch size (mean)", "requests"]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", nargs="+", default=["torch", "onnx"], choices=list(SETUPS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests-c1", type=int, default=500)
    parser.add_argument("--requests", type=int, default=3000, help="per run at c > 1")
    parser.add_argument("--name", default="routing-cost", help="results file name")
    parser.add_argument("--ceiling-seconds", type=float, default=10.0, help="0: skip")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    began = time.time()
    out = run(args.setups, args.concurrency, args.rounds, args.requests_c1, args.requests)
    out["load_avg_start"] = [round(x, 2) for x in load_start]
    out["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.ceiling_seconds > 0:
        out["encoder_ceiling"] = encoder_ceiling(args.ceiling_seconds)
    out["seconds"] = round(time.time() - began, 1)
    note = (
        f"Medians of {args.rounds} interleaved rounds; every request a distinct prompt "
        f"({out['requests_sent']} sent). Load average (1, 5, 15 min) at start "
        f"{out['load_avg_start']}, at end {out['load_avg_end']} on {os.cpu_count()} cores "
        "(the load generator runs on the same machine)."
    )
    if "encoder_ceiling" in out:
        ceiling = out["encoder_ceiling"]
        named32 = [
            statistics.median(r["throughput_rps"] for r in by_c["32"]["named"])
            for by_c in out["results"].values()
            if "32" in by_c
        ]
        note += (
            f" Encoder ceiling (ONNX int8, batches of 32, no server, no load generator): "
            f"{ceiling['one_process']} sentences/s in one process on one thread, "
            f"{ceiling['all_cores']} with {ceiling['processes']} processes (every core)"
        )
        if named32:
            note += (
                f"; 0.3 x the named path at c=32 (the fastest setup's) is "
                f"{round(0.3 * max(named32), 1)} req/s"
            )
        note += "."
    md = md_table(HEADERS, summary(out["results"])) + "\n\n" + note
    write_results(args.name, {**out, "note": note}, md)
    print(md)
    return out


if __name__ == "__main__":
    main()
