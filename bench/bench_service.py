"""Decision latency and throughput of the default router vs the FakeStrategy (the
service's own overhead), over real HTTP on loopback.

    python -m bench.bench_service [--requests 400] [--concurrency 1 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json

from bench.common import load, md_table, router_server, write_results

SHORT = [{"role": "user", "content": "Can you explain how binary search works?"}]

SETUPS = {
    "fake (service overhead)": {"ROUTER_STRATEGY": "tests.fakes:FakeStrategy"},
    "intent / embedding (default)": {"ROUTER_STRATEGY": "intent",
                                     "ROUTER_INTENT__BACKEND": "embedding"},
}


def run(requests: int, concurrency: list[int], batching: bool) -> dict[str, dict[str, dict]]:
    body = json.dumps({"model": "router", "messages": SHORT}).encode()
    results: dict[str, dict[str, dict]] = {}
    for name, env in SETUPS.items():
        if not batching:
            env = {**env, "ROUTER_BATCH__MAX_SIZE": "1"}
        with router_server(env) as target:
            asyncio.run(load(target, body, 30, 4))  # warm-up
            results[name] = {
                str(c): asyncio.run(load(target, body, requests, c)) for c in concurrency
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--no-batching", action="store_true",
                        help="ROUTER_BATCH__MAX_SIZE=1 (to measure micro-batching's effect)")
    args = parser.parse_args()
    results = run(args.requests, args.concurrency, not args.no_batching)
    rows = []
    for name, by_c in results.items():
        for c, r in by_c.items():
            rows.append([name, c, r["p50_ms"], r["p95_ms"], r["p99_ms"], r["throughput_rps"]])
    table = md_table(["setup", "concurrency", "p50 ms", "p95 ms", "p99 ms", "decisions/s"], rows)
    name = "service" + ("-nobatch" if args.no_batching else "")
    write_results(name, {"requests": args.requests, "results": results}, table)
    print(table)


if __name__ == "__main__":
    main()
