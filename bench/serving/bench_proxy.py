"""Proxy-mode overhead: latency added by the router (FakeStrategy, so strategy time ~0) and by
LiteLLM's proxy, each against calling the same local upstream directly, in the same run.

    python -m bench.serving.bench_proxy [--requests 300] [--concurrency 1 32] [--no-litellm]
        [--baseline-src DIR] [--name NAME]

Non-streaming: time to the whole response. Streaming: time to first token (the first SSE
event carrying content). Each cell interleaves the targets in rounds so drift on a shared
machine hits them alike. LiteLLM runs from its own venv (``--litellm``, default
``.venv-litellm/bin/litellm``; ``pip install 'litellm[proxy]'`` there).

``--baseline-src DIR`` adds a second router running the code of another checkout (e.g.
``git worktree add /tmp/base <commit>``), interleaved with this one in every cell, and
reports this router's latency and CPU as ratios to it: before/after in the same run. Both
routers get token prices (cost accounting on where the code has it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from bench.common import (
    ROOT,
    HttpTarget,
    free_port,
    latencies,
    md_table,
    server_process,
    write_results,
)
from bench.serving.proxy_tools import (
    MODEL,
    cpu_seconds,
    litellm_server,
    litellm_version,
    router_overhead_mean_ms,
    router_process,
)

PROMPT = [{"role": "user", "content": "hello, how are you today?"}]


def run_cell(
    targets: dict[str, HttpTarget],
    stream: bool,
    conc: int,
    requests: int,
    rounds: int = 3,
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Warm up, then ``rounds`` interleaved rounds per target (order rotated each round).
    Returns latencies and the server's CPU seconds per request, per target."""
    bodies = {
        name: orjson.dumps(
            {
                "model": "router" if name.startswith("router") else MODEL,
                "messages": PROMPT,
                "max_tokens": 16,
                "stream": stream,
            }
        )
        for name in targets
    }
    names = list(targets)
    pids = {name: t.pid for name, t in targets.items() if t.pid is not None}
    lat: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        asyncio.run(latencies(targets[name], bodies[name], max(conc, 20), conc, stream))
    cpu = dict.fromkeys(names, 0.0)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            before = cpu_seconds(pids[name])
            lat[name] += asyncio.run(
                latencies(targets[name], bodies[name], requests // rounds, conc, stream)
            )
            cpu[name] += cpu_seconds(pids[name]) - before
    return lat, {name: cpu[name] / len(lat[name]) for name in names}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def measure(targets: dict[str, HttpTarget], args: Any) -> list[dict]:
    """Every cell: mode x concurrency x target."""
    results: list[dict[str, Any]] = []
    for stream in (False, True):
        for conc in args.concurrency:
            lat, cpu = run_cell(targets, stream, conc, args.requests, args.rounds)
            base50, base99 = pct(lat["direct"], 50), pct(lat["direct"], 99)
            for name, values in lat.items():
                results.append(
                    {
                        "mode": "stream (TTFT)" if stream else "non-stream",
                        "concurrency": conc,
                        "target": name,
                        "requests": len(values),
                        "p50_ms": round(pct(values, 50), 3),
                        "p99_ms": round(pct(values, 99), 3),
                        "added_p50_ms": round(pct(values, 50) - base50, 3),
                        "added_p99_ms": round(pct(values, 99) - base99, 3),
                        "server_cpu_ms_per_request": round(cpu[name] * 1000.0, 3),
                    }
                )
                print(results[-1], flush=True)
    return results


BASE = "router-base"


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell: this router's p50, p99 and CPU per request over the baseline router's."""
    cells: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in results:
        cells.setdefault((r["mode"], r["concurrency"]), {})[r["target"]] = r
    keys = {"p50": "p50_ms", "p99": "p99_ms", "cpu": "server_cpu_ms_per_request"}
    out = []
    for (mode, conc), by in cells.items():
        new, old = by["router"], by[BASE]
        row: dict[str, Any] = {"mode": mode, "concurrency": conc}
        for name, key in keys.items():
            row[name] = round(new[key] / old[key], 3) if old[key] else None
        out.append(row)
    return out


def _commit(src: Path) -> str | None:
    import subprocess

    proc = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True, text=True
    )
    return proc.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per target and cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds per cell (order rotated)"
    )
    parser.add_argument("--litellm", default=str(ROOT / ".venv-litellm" / "bin" / "litellm"))
    parser.add_argument("--no-litellm", action="store_true", help="router vs direct only")
    parser.add_argument("--name", default="proxy", help="results file name in bench/results")
    parser.add_argument(
        "--baseline-src", help="a checkout of an earlier commit: its router runs beside this one"
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    port = free_port()
    upstream = f"http://127.0.0.1:{port}/v1"
    config = workdir / "routing.yaml"
    priced = {"upstream_model": MODEL, "base_url": upstream}
    models = [  # the frontier model is the default cost baseline; primary answers
        {"name": "primary", "input_price_per_1m": 0.04, "output_price_per_1m": 0.16, **priced},
        {"name": "frontier", "input_price_per_1m": 1.25, "output_price_per_1m": 10.0, **priced},
    ]
    config.write_text(yaml.safe_dump({"models": models}))
    litellm_note: str | None = None
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(
            server_process(
                [sys.executable, "-m", "tests.upstream_server", "--port", str(port)],
                f"{upstream}/models",
            )
        )
        targets = {
            "direct": HttpTarget("127.0.0.1", port, "/v1/chat/completions", up.pid),
            "router": stack.enter_context(router_process(config, workdir)),
        }
        if args.baseline_src:
            targets[BASE] = stack.enter_context(
                router_process(config, workdir, Path(args.baseline_src), "router-base")
            )
        if args.no_litellm:
            litellm_note = "skipped (--no-litellm)"
        elif not Path(args.litellm).exists():
            litellm_note = f"not installed: {args.litellm} missing"
        else:
            try:
                targets["litellm"] = stack.enter_context(
                    litellm_server(args.litellm, upstream, workdir)
                )
            except (RuntimeError, TimeoutError) as exc:
                litellm_note = f"failed to start: {exc}"[:1500]
        results = measure(targets, args)
        internal = router_overhead_mean_ms(targets["router"])
        internal_base = router_overhead_mean_ms(targets[BASE]) if BASE in targets else None
    rows = [
        [
            r["mode"],
            r["concurrency"],
            r["target"],
            r["p50_ms"],
            r["p99_ms"],
            r["added_p50_ms"] if r["target"] != "direct" else "-",
            r["added_p99_ms"] if r["target"] != "direct" else "-",
            r["server_cpu_ms_per_request"],
        ]
        for r in results
    ]
    notes = [
        "Added = target percentile minus the direct-upstream percentile of the same cell.",
        "Server CPU = CPU time of that target's own process per request (direct: the "
        "upstream; router / litellm: the proxy alone, upstream excluded).",
        f"Router's own llm_router_proxy_overhead_seconds mean over the run: {internal} ms"
        + (f" ({BASE}: {internal_base} ms)." if BASE in targets else "."),
        f"LiteLLM: {litellm_note or 'litellm ' + str(litellm_version(args.litellm))}.",
        "Router: FakeStrategy, ROUTER_LOG_LEVEL=warning; LiteLLM: 1 worker, no DB, retries 0.",
        f"2-core machine shared with other jobs; load average before/after: "
        f"{load_before[0]:.2f} / {os.getloadavg()[0]:.2f}. Client, router, upstream and "
        "LiteLLM share those cores.",
    ]
    payload = {
        "results": results,
        "router_internal_overhead_mean_ms": internal,
        "litellm": litellm_note or litellm_version(args.litellm),
        "requests_per_cell": args.requests,
        "rounds": args.rounds,
        "notes": notes,
    }
    table = md_table(
        [
            "mode",
            "concurrency",
            "target",
            "p50 ms",
            "p99 ms",
            "added p50 ms",
            "added p99 ms",
            "server CPU ms/req",
        ],
        rows,
    )
    if args.baseline_src:
        payload["baseline_src"] = args.baseline_src
        payload["baseline_commit"] = _commit(Path(args.baseline_src))
        payload["ratios"] = ratio_rows = ratios(results)
        notes.append(
            f"{BASE}: the router of {args.baseline_src} (commit {payload['baseline_commit']}), "
            "same config, interleaved with `router` in every cell; ratio = router / "
            f"{BASE} (1.0 = unchanged)."
        )
        table += "\n\n" + md_table(
            ["mode", "concurrency", "p50 ratio", "p99 ratio", "server CPU ratio"],
            [[r[k] for k in ("mode", "concurrency", "p50", "p99", "cpu")] for r in ratio_rows],
        )
    json_path, md_path = write_results(
        args.name, payload, table + "\n\n" + "\n".join(f"* {n}" for n in notes)
    )
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
