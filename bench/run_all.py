"""``make bench``: every benchmark this machine can run, results in bench/results/.

Runs in the main .venv; the vLLM and open_clip benchmarks run in their own
environments when those exist (``make test`` creates them), and GPU benchmarks are
skipped without CUDA, saying so.

    python -m bench.run_all [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, md_table, write_results
from bench.serving import bench_service
from bench.serving.workloads import LENGTHS, WORKLOADS

VENVS = {
    "clip": ROOT / ".venv-clip" / "bin" / "python",
    "vllm": ROOT / ".venv-vllm" / "bin" / "python",
}


def run_module(
    module: str,
    args: list[str],
    python: str | Path = sys.executable,
    env: dict[str, str] | None = None,
) -> bool:
    """Run ``python -m module args``; report and carry on when it fails."""
    import os

    started = time.perf_counter()
    print(f"\n== {module} {' '.join(args)}", flush=True)
    proc = subprocess.run(
        [str(python), "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    print(f"== {module}: exit {proc.returncode} in {time.perf_counter() - started:.0f} s")
    return proc.returncode == 0


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def ratio_table(
    results: dict[str, Any], baseline: dict[str, Any], setup: str, base_setup: str, title: str
) -> str:
    """Throughput and p50 of ``setup`` vs the same-run ``baseline`` (short text)."""
    rows = []
    for c, off in baseline.get(base_setup, {}).get("short_text", {}).items():
        on = results[setup]["short_text"][c]
        rows.append(
            [
                c,
                on["throughput_rps"],
                off["throughput_rps"],
                f"{on['throughput_rps'] / off['throughput_rps']:.2f}x",
                on["p50_ms"],
                off["p50_ms"],
            ]
        )
    return f"\n\n{title}\n\n" + md_table(
        [
            "concurrency",
            "decisions/s",
            "baseline decisions/s",
            "ratio",
            "p50 ms",
            "baseline p50 ms",
        ],
        rows,
    )


def service(requests: int, concurrency: list[int]) -> None:
    """All strategies x workloads x concurrency, latency vs conversation length, and the
    same-run baselines (fp32 encoder, micro-batching off), merged into service.json."""
    setups = ["fake", "intent", "auto"]
    results = bench_service.run(setups, list(WORKLOADS), concurrency, requests, True)
    lengths = bench_service.run(
        setups, [f"conversation_{n}" for n in LENGTHS], [1], max(50, requests // 4), True
    )
    for setup, by_workload in lengths.items():
        results.setdefault(setup, {}).update(by_workload)
    fp32 = bench_service.run(["intent-fp32"], ["short_text"], concurrency, requests, True)
    nobatch = bench_service.run(["intent"], ["short_text"], concurrency[1:], requests, False)
    md = bench_service.table(results)
    md += ratio_table(
        results,
        fp32,
        "intent",
        "intent-fp32",
        "int8 MiniLM vs fp32 MiniLM (intent, short text), same run:",
    )
    md += ratio_table(
        results,
        nobatch,
        "intent",
        "intent",
        "Micro-batching on vs off (intent, short text), same run:",
    )
    write_results(
        "service",
        {
            "requests": requests,
            "results": results,
            "baseline_fp32": fp32,
            "baseline_batching_off": nobatch,
        },
        md,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per cell")
    args = parser.parse_args()
    began = time.perf_counter()
    requests = 100 if args.quick else 300
    run_module("bench.serving.bench_parsing", ["--repeat", "10" if args.quick else "30"])
    service(requests, [1, 16, 64])
    run_module(
        "bench.serving.bench_routing_cost",
        ["--rounds", "1" if args.quick else "3"] + (["--requests", "1000"] if args.quick else []),
    )
    run_module(
        "bench.serving.bench_workers",
        ["--requests", str(2 * requests), "--rounds", "1" if args.quick else "2"],
    )
    # goodput at the concurrency limit vs 2x and 8x it, retrying clients (target >= 0.8)
    run_module("bench.serving.bench_overload", ["--duration", "5" if args.quick else "10"])
    run_module("bench.plot", [])
    if VENVS["clip"].exists():
        run_module(
            "bench.routing.bench_auto", ["--requests", "64" if args.quick else "200"], VENVS["clip"]
        )
    else:
        print("skipping bench_auto with open_clip: .venv-clip missing (make test creates it)")
    if VENVS["vllm"].exists():
        run_module(
            "bench.intents.bench_vllm",
            ["--requests", "64" if args.quick else "128"],
            VENVS["vllm"],
            {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"},
        )
    else:
        print("skipping bench_vllm: .venv-vllm missing (make test creates it)")
    proxy_args = ["--requests", str(requests)]
    if not (ROOT / ".venv-litellm" / "bin" / "litellm").exists():
        print("bench_proxy without LiteLLM: .venv-litellm missing (make bench creates it)")
        proxy_args.append("--no-litellm")
    run_module("bench.serving.bench_proxy", proxy_args)
    if cuda_available():
        # GPU tests + the auto strategy on CUDA (strategy level, HTTP, 1/4/8 workers)
        subprocess.run(
            ["bash", str(ROOT / "bench" / "run_gpu.sh"), str(ROOT / "bench" / "results" / "gpu")],
            cwd=ROOT,
            env={**os.environ, "PYTHON": sys.executable},
            check=False,
        )
    else:
        print("skipping GPU benchmarks: no CUDA here (on a GPU machine: make bench-gpu)")
    print(
        "the vLLM intent backend on a GPU needs the CUDA vllm package: "
        "python -m bench.intents.bench_vllm --arch qwen3-1.7b"
    )
    print(
        f"\nmake bench finished in {time.perf_counter() - began:.0f} s; "
        f"results in {ROOT / 'bench' / 'results'}"
    )


if __name__ == "__main__":
    main()
