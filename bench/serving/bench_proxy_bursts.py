"""Proxy under steady load and bursts against an upstream that closes idle connections:
how many 502s, and how many requests the router re-sent after a stale keep-alive connection.

    python -m bench.serving.bench_proxy_bursts [--keep-alive 5 1] [--steady-requests 7000]
        [--bursts 6] [--burst-s 3]

Per upstream keep-alive timeout (uvicorn ``timeout_keep_alive``): a local upstream
(tests/upstream_server.py) and the router in proxy mode (FakeStrategy, one model, so no
fallback can hide a failure). Phase 1: ``--steady-requests`` at concurrency 32. Phase 2:
``--bursts`` bursts at concurrency 128, each ``--burst-s`` long and after an idle gap
drawn around the upstream's keep-alive timeout (``--gap-spread``), so pooled connections
get reused as the upstream closes them. Phase 3 (``--idle-reuse-s``): 128 workers that each
pause about the keep-alive timeout between requests, the race at its most frequent. The
router's ``upstream_requests_total{outcome="stale_connection"}`` counts the requests that
failed on a stale pooled connection and were re-sent: each one was a 502 before.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from bench.common import free_port, md_table, router_server, server_process, write_results

BODY = orjson.dumps({"model": "router", "messages": [{"role": "user", "content": "hi there"}]})


async def _load(
    url: str,
    concurrency: int,
    requests: int | None,
    seconds: float | None,
    think: tuple[float, float] | None = None,
) -> Counter[str]:
    """``concurrency`` workers POSTing until ``requests`` are done or ``seconds`` passed;
    with ``think`` each worker pauses uniform(*think) seconds after each answer."""
    statuses: Counter[str] = Counter()
    deadline = time.monotonic() + (seconds or 1e9)
    left = [requests if requests is not None else 10**9]
    limits = httpx.Limits(max_connections=concurrency, keepalive_expiry=1.0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            while left[0] > 0 and time.monotonic() < deadline:
                left[0] -= 1
                try:
                    resp = await client.post(url, content=BODY)
                    statuses[str(resp.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[f"client_{type(exc).__name__}"] += 1
                if think:
                    await asyncio.sleep(random.uniform(*think))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def _stale(metrics_url: str) -> int:
    """The router's stale_connection re-sends so far (0 for a router without them)."""
    text = httpx.get(metrics_url, timeout=10).text
    found = re.search(r'outcome="stale_connection"\} (\S+)', text)
    return int(float(found.group(1))) if found else 0


def run(keep_alive: float, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    port = free_port()
    upstream = f"http://127.0.0.1:{port}/v1"
    config = workdir / f"routing-{keep_alive}.yaml"
    config.write_text(yaml.safe_dump({"models": [{"name": "only", "base_url": upstream}]}))
    cmd = [sys.executable, "-m", "tests.upstream_server", "--port", str(port)]
    cmd += ["--keep-alive", str(keep_alive)]
    env = {
        "ROUTER_MODE": "proxy",
        "ROUTER_STRATEGY": "tests.fakes:FakeStrategy",
        "ROUTER_CONFIG": str(config),
    }
    rows = []
    rng = random.Random(0)
    with (
        server_process(cmd, f"{upstream}/models"),
        router_server(env, timeout=180, log=workdir / f"router-{keep_alive}.log") as router,
    ):
        url = f"http://{router.host}:{router.port}{router.path}"
        metrics = f"http://{router.host}:{router.port}/metrics"
        around = (keep_alive * (1 - args.gap_spread), keep_alive * (1 + args.gap_spread))
        Phase = tuple[str, int, int | None, float | None, float, tuple[float, float] | None]
        phases: list[Phase] = [("steady", 32, args.steady_requests, None, 0.0, None)]
        for i in range(args.bursts):
            phases.append((f"burst {i + 1}", 128, None, args.burst_s, rng.uniform(*around), None))
        if args.idle_reuse_s:
            phases.append(("idle reuse", 128, None, args.idle_reuse_s, 0.0, around))
        for name, conc, requests, seconds, gap, think in phases:
            if gap:
                time.sleep(gap)
            before = _stale(metrics)
            statuses = asyncio.run(_load(url, conc, requests, seconds, think))
            row = {
                "upstream_keep_alive_s": keep_alive,
                "phase": name,
                "concurrency": conc,
                "idle_gap_before_s": round(gap, 2),
                "requests": sum(statuses.values()),
                "status_502": statuses.get("502", 0),
                "non_200": sum(v for k, v in statuses.items() if k != "200"),
                "stale_resent": _stale(metrics) - before,
                "statuses": dict(statuses),
            }
            print(row, flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep-alive", type=float, nargs="+", default=[5.0, 1.0])
    parser.add_argument("--steady-requests", type=int, default=7000)
    parser.add_argument("--bursts", type=int, default=6)
    parser.add_argument("--burst-s", type=float, default=3.0)
    parser.add_argument(
        "--gap-spread", type=float, default=0.1, help="idle gap = keep-alive x (1 +- spread)"
    )
    parser.add_argument(
        "--idle-reuse-s",
        type=float,
        default=30.0,
        help="last phase: c=128, each worker idles ~keep-alive between requests (0: skip)",
    )
    parser.add_argument("--name", default="proxy-bursts")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-bursts-"))
    load_before = os.getloadavg()
    rows = [row for ka in args.keep_alive for row in run(ka, args, workdir)]
    notes = [
        "One upstream model, so a failed request cannot fall back: every failure shows.",
        "stale_resent: requests that failed on a pooled connection the upstream had closed, "
        "before any response byte, and were re-sent on a new connection (a 502 before).",
        "Router keep-alive expiry: ROUTER_PROXY__KEEPALIVE_EXPIRY_S default (4 s).",
        f"2-core machine shared with other jobs (load average before/after: "
        f"{load_before[0]:.2f} / {os.getloadavg()[0]:.2f}); client, router and upstream "
        "share those cores.",
    ]
    table = md_table(
        [
            "upstream keep-alive s",
            "phase",
            "concurrency",
            "idle gap before s",
            "requests",
            "502",
            "non-200",
            "stale re-sent",
        ],
        [
            [
                r["upstream_keep_alive_s"],
                r["phase"],
                r["concurrency"],
                r["idle_gap_before_s"],
                r["requests"],
                r["status_502"],
                r["non_200"],
                r["stale_resent"],
            ]
            for r in rows
        ],
    )
    payload = {"results": rows, "notes": notes, "args": vars(args)}
    json_path, md_path = write_results(
        args.name, payload, table + "\n\n" + "\n".join(f"* {n}" for n in notes)
    )
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
