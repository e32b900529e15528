"""Decision latency and throughput over real HTTP on loopback, per strategy, workload and
concurrency, with the FakeStrategy (the service's own overhead) as the in-run baseline.

    python -m bench.serving.bench_service [--requests 300] [--concurrency 1 16 64]
        [--setups fake intent] [--workloads short_text one_image_512] [--no-batching]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bench.common import ROOT, load, md_table, router_server, write_results
from bench.serving.workloads import WORKLOADS, body

AUTO_CONFIG = ROOT / "models" / "artifacts" / "routerbench-minilm" / "routing.yaml"

SETUPS: dict[str, dict[str, str]] = {
    "fake": {"ROUTER_STRATEGY": "tests.fakes:FakeStrategy"},
    "intent": {"ROUTER_STRATEGY": "intent", "ROUTER_INTENT__BACKEND": "embedding"},
    "intent-fp32": {
        "ROUTER_STRATEGY": "intent",
        "ROUTER_INTENT__BACKEND": "embedding",
        "ROUTER_INTENT__QUANTIZE": "false",
    },
    "auto": {
        "ROUTER_STRATEGY": "auto",
        "ROUTER_AUTO__ENCODER": "minilm",
        "ROUTER_CONFIG": str(AUTO_CONFIG),
    },
}
TEXT_ONLY = {"auto"}  # the RouterBench artifact's models cannot take images (400 by design)
LABELS = {
    "fake": "fake (service overhead)",
    "intent": "intent / embedding (MiniLM)",
    "auto": "auto / MiniLM + MLP",
}


def requests_for(workload: str, requests: int) -> int:
    """Fewer requests for the heavy image workloads (bounded run time on 2 cores)."""
    return max(32, requests // 4) if "four" in workload else requests


def run(
    setups: list[str], workloads: list[str], concurrency: list[int], requests: int, batching: bool
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for setup in setups:
        env = dict(SETUPS[setup])
        if setup == "auto" and not Path(env["ROUTER_CONFIG"]).exists():
            print(f"skipping auto: {AUTO_CONFIG} not found")
            continue
        if not batching:
            env["ROUTER_BATCH__MAX_SIZE"] = "1"
        with router_server(env) as target:
            for workload in workloads:
                if setup in TEXT_ONLY and "image" in workload:
                    continue
                payload = body(workload)
                asyncio.run(load(target, payload, 16, 4))  # warm-up
                for c in concurrency:
                    n = max(requests_for(workload, requests), c)
                    stats = asyncio.run(load(target, payload, n, c))
                    results.setdefault(setup, {}).setdefault(workload, {})[str(c)] = stats
                    print(setup, workload, c, stats, flush=True)
    return results


def table(results: dict[str, Any]) -> str:
    rows = []
    for setup, by_workload in results.items():
        for workload, by_c in by_workload.items():
            for c, r in by_c.items():
                rows.append(
                    [
                        LABELS.get(setup, setup),
                        workload,
                        c,
                        r["p50_ms"],
                        r["p95_ms"],
                        r["p99_ms"],
                        r["throughput_rps"],
                    ]
                )
    return md_table(
        ["strategy", "workload", "concurrency", "p50 ms", "p95 ms", "p99 ms", "decisions/s"], rows
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument(
        "--workloads",
        nargs="+",
        default=list(WORKLOADS),
        help=f"{', '.join(WORKLOADS)} or conversation_<tokens>",
    )
    parser.add_argument(
        "--no-batching",
        action="store_true",
        help="ROUTER_BATCH__MAX_SIZE=1 (to measure micro-batching's effect)",
    )
    parser.add_argument("--name", default=None, help="results file name")
    args = parser.parse_args(argv)
    results = run(
        args.setups, args.workloads, args.concurrency, args.requests, not args.no_batching
    )
    name = args.name or ("service-nobatch" if args.no_batching else "service")
    md = table(results)
    write_results(
        name, {"requests": args.requests, "batching": not args.no_batching, "results": results}, md
    )
    print(md)
    return results


if __name__ == "__main__":
    main()
