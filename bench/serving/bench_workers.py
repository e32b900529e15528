"""Throughput of ``ROUTER_WORKERS=N`` against one worker, same run, over real HTTP.

Each setup (the default intent/MiniLM strategy, auto/MiniLM + MLP, the FakeStrategy for
the service's own overhead) is served with 1 worker and with N workers, alternately for
``--rounds`` rounds, and loaded with short-text requests at each concurrency; the ratio
is N workers' throughput over one worker's. Torch threads stay at their default
(usable cores - 1 with one worker, cores / N with N).

    python -m bench.serving.bench_workers [--workers 2] [--requests 600] [--concurrency 1 32]
        [--setups intent auto fake] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from app.server.cpus import usable_cpus
from bench.common import load, md_table, router_server, write_results
from bench.serving.bench_service import AUTO_CONFIG, SETUPS
from bench.serving.proxy_tools import cpu_seconds
from bench.serving.workloads import body

LABELS = {
    "intent": "intent / embedding (default)",
    "auto": "auto / MiniLM + MLP",
    "fake": "fake (service overhead)",
}


def measure(
    setup: str, workers: int, concurrency: list[int], requests: int
) -> dict[str, dict[str, float]]:
    env = {**SETUPS[setup], "ROUTER_WORKERS": str(workers)}
    payload = body("short_text")
    out: dict[str, dict[str, float]] = {}
    with router_server(env) as target:
        asyncio.run(load(target, payload, 64, 8))  # warm-up (every worker)
        assert target.pid is not None
        for c in concurrency:
            server0, client0, wall0 = cpu_seconds(target.pid), own_cpu_s(), time.perf_counter()
            stats = asyncio.run(load(target, payload, max(requests, c), c))
            wall = time.perf_counter() - wall0
            # CPU use in cores (1.0 = one core busy): how much of the machine each side took
            stats["server_cores"] = round((cpu_seconds(target.pid) - server0) / wall, 2)
            stats["client_cores"] = round((own_cpu_s() - client0) / wall, 2)
            out[str(c)] = stats
            print(setup, f"workers={workers}", f"c={c}", stats, flush=True)
    return out


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def run(
    setups: list[str], workers: int, concurrency: list[int], requests: int, rounds: int
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for setup in setups:
        if setup == "auto" and not AUTO_CONFIG.exists():
            print(f"skipping auto: {AUTO_CONFIG} not found")
            continue
        runs: dict[str, list[dict[str, dict[str, float]]]] = {"1": [], str(workers): []}
        for _ in range(rounds):  # alternate so drift on a shared machine hits both alike
            runs["1"].append(measure(setup, 1, concurrency, requests))
            runs[str(workers)].append(measure(setup, workers, concurrency, requests))
        results[setup] = runs
    return results


def mean_rps(runs: list[dict[str, dict[str, float]]], c: str) -> float:
    return round(statistics.fmean(r[c]["throughput_rps"] for r in runs), 1)


def cores(runs: list[dict[str, dict[str, float]]], c: str) -> str:
    """Mean CPU use of the server (all its processes) and of the load generator, in cores."""
    if "server_cores" not in runs[0][c]:
        return ""
    server = statistics.fmean(r[c]["server_cores"] for r in runs)
    client = statistics.fmean(r[c]["client_cores"] for r in runs)
    return f"{server:.2f} + {client:.2f}"


def table(results: dict[str, Any], workers: int) -> str:
    rows = []
    for setup, runs in results.items():
        one, many = runs["1"], runs[str(workers)]
        for c in one[0]:
            base, scaled = mean_rps(one, c), mean_rps(many, c)
            rows.append(
                [
                    LABELS.get(setup, setup),
                    c,
                    base,
                    scaled,
                    f"{scaled / base:.2f}x",
                    round(statistics.fmean(r[c]["p50_ms"] for r in one), 2),
                    round(statistics.fmean(r[c]["p50_ms"] for r in many), 2),
                    cores(one, c),
                    cores(many, c),
                ]
            )
    return md_table(
        [
            "strategy",
            "concurrency",
            "1 worker decisions/s",
            f"{workers} workers decisions/s",
            "ratio",
            "1 worker p50 ms",
            f"{workers} workers p50 ms",
            "1 worker: server + client cores",
            f"{workers} workers: server + client cores",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=max(2, usable_cpus()))
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--setups", nargs="+", default=["intent", "auto", "fake"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--note", default="", help="free text stored with the results")
    args = parser.parse_args(argv)
    results = run(args.setups, args.workers, args.concurrency, args.requests, args.rounds)
    md = table(results, args.workers)
    if args.note:
        md += f"\n\n{args.note}"
    write_results(
        "workers",
        {
            "workers": args.workers,
            "usable_cpus": usable_cpus(),
            "requests": args.requests,
            "rounds": args.rounds,
            "note": args.note,
            "results": results,
        },
        md,
    )
    print(md)
    return results


if __name__ == "__main__":
    main()
