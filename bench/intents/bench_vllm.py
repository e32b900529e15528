"""Decision latency and throughput of the vLLM intent backend, prefix caching on vs off,
or (``--vs-remote``) in-process vs the ``remote`` backend on a ``vllm serve`` of the same model.

Drives IntentStrategy directly (prompt building, tokenization, the engine, mapping) over
the labelled dev conversations (bench/data/intent-dev.jsonl) at several concurrencies,
once with vLLM's prefix caching and once without, and reports the ratio. The model is
built locally: the tiny test Qwen3 (default), or ``--arch qwen3-1.7b`` for random
weights with Qwen3-1.7B's exact architecture (its latency is the real model's), or any
``--model`` path/id.

    python -m bench.intents.bench_vllm [--arch tiny|qwen3-1.7b | --model PATH] [--requests 128]
    python -m bench.intents.bench_vllm --vs-remote --concurrency 1 16   # added cost of the HTTP hop
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine_facts, md_table, summarize, write_results

DATA = ROOT / "bench" / "data" / "intent-dev.jsonl"
ARCHS = {"tiny": None, "qwen3-1.7b": "Qwen3-1.7B"}


async def load_conversations(limit: int | None = None) -> list[Any]:
    """The dev set's conversations, normalised exactly as the HTTP edge does."""
    from app.api.intake import normalise
    from app.api.schemas import ChatCompletionRequest
    from app.settings import Settings

    settings = Settings()
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]
    convs = []
    for row in rows[:limit]:
        req = ChatCompletionRequest.model_validate({"messages": row["messages"]})
        convs.append(await normalise(req, settings))
    return convs


def unique(conv: Any, i: int) -> Any:
    """The conversation with a request tag in front of its first turn, so no two requests
    share more than the fixed routes prefix (repeats would hit the cache whole)."""
    from dataclasses import replace

    first = replace(conv.turns[0], text=f"[{i}] {conv.turns[0].text}")
    return replace(conv, turns=(first, *conv.turns[1:]))


async def drive(
    strategy: Any, convs: list[Any], requests: int, concurrency: int, tag: int
) -> dict[str, Any]:
    """``requests`` decisions from ``concurrency`` closed-loop workers; request ``i`` is
    tagged ``tag + i`` (give every call its own range)."""
    from strategies.base import RouteOptions

    latencies: list[float] = []
    details: list[dict[str, Any]] = []
    fallbacks = 0
    counter = iter(range(requests))

    async def worker() -> None:
        nonlocal fallbacks
        for i in counter:
            conv = unique(convs[i % len(convs)], tag + i)
            began = time.perf_counter()
            decision = await strategy.route(conv, RouteOptions())
            latencies.append(time.perf_counter() - began)
            details.append(decision.detail)
            fallbacks += decision.reason == "fallback"

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result: dict[str, Any] = summarize(latencies, time.perf_counter() - began)
    prompt = sum(d.get("prompt_tokens", 0) for d in details)
    cached = sum(d.get("cached_tokens", 0) for d in details)
    result.update(
        fallbacks=fallbacks,
        mean_prompt_tokens=round(prompt / max(len(details), 1), 1),
        cached_token_share=round(cached / max(prompt, 1), 3),
    )
    return result


async def run_config(
    model: str,
    prefix_caching: bool,
    levels: list[int],
    requests: int,
    max_model_len: int,
    **intent: Any,
) -> dict[str, Any]:
    """Start an engine with or without prefix caching (or, with ``backend="remote"`` in
    ``intent``, connect to a server) and measure every concurrency."""
    from app.metrics import RouterMetrics
    from app.settings import DEFAULT_CONFIG, Settings
    from models.core.routing_config import load_routing_config
    from strategies.base import StrategyContext
    from strategies.intent.strategy import IntentStrategy

    settings = Settings(
        intent={
            "backend": "vllm",
            "model": model,
            "max_model_len": max_model_len,
            "enable_prefix_caching": prefix_caching,
            "timeout_s": 600.0,  # measure the engine, never the fallback
            **intent,
        }
    )
    ctx = StrategyContext(settings, load_routing_config(DEFAULT_CONFIG), RouterMetrics())
    strategy = IntentStrategy(ctx)
    began = time.perf_counter()
    await strategy.start()
    startup_s = round(time.perf_counter() - began, 1)
    convs = await load_conversations()
    try:
        await drive(strategy, convs, len(convs), 32, tag=0)  # warm-up: each shape once
        by_level = {
            str(c): await drive(strategy, convs, max(requests, 4 * c), c, tag=(n + 1) * 10**6)
            for n, c in enumerate(levels)
        }
    finally:
        await strategy.aclose()
    return {"startup_s": startup_s, "levels": by_level}


def build_model(arch: str, workdir: Path) -> str:
    from tests.tiny_models import build_qwen3_like, build_tiny_qwen3

    config_from = ARCHS[arch]
    if config_from is None:
        return str(build_tiny_qwen3(workdir / "tiny-qwen3"))
    return str(build_qwen3_like(workdir / arch, config_from=config_from))


def run_vs_remote(
    model: str, levels: list[int], requests: int, max_model_len: int, logdir: Path
) -> dict[str, dict[str, Any]]:
    """The in-process engine, then the remote backend on ``vllm serve`` of the same model
    (one after the other: the machine cannot hold both at full speed)."""
    from tests.vllm_server import VllmServer

    results = {"in-process": asyncio.run(run_config(model, True, levels, requests, max_model_len))}
    server = VllmServer(model, logdir / "vllm-serve.log", "bench", max_model_len)
    try:
        server.wait_healthy()
        results["remote (vllm serve)"] = asyncio.run(
            run_config(
                "bench", True, levels, requests, max_model_len,
                backend="remote", base_url=server.base_url,
            )
        )  # fmt: skip
    finally:
        server.kill()
    return results


def report_remote(label: str, results: dict[str, dict[str, Any]], levels: list[int]) -> str:
    rows = []
    for mode, res in results.items():
        for c in levels:
            r = res["levels"][str(c)]
            rows.append([mode, c, r["p50_ms"], r["p99_ms"], r["throughput_rps"], r["fallbacks"]])
    local, remote = results["in-process"], results["remote (vllm serve)"]
    for c in levels:
        a, b = local["levels"][str(c)], remote["levels"][str(c)]
        added = f"+{b['p50_ms'] - a['p50_ms']:.1f} ms"
        ratio = f"{b['throughput_rps'] / a['throughput_rps']:.2f}x"
        rows.append(["remote vs in-process", c, added, "", ratio, ""])
    headers = ["setup", "concurrency", "p50 ms", "p99 ms", "decisions/s", "fallbacks"]
    note = (
        "Remote: the same prompt through /v1/chat/completions with structured_outputs to a "
        "`vllm serve` of the same model on 127.0.0.1 (prefix caching on in both). Added p50: "
        "remote minus in-process; throughput: remote ÷ in-process."
    )
    return f"Model: {label}\n\n" + md_table(headers, rows) + "\n\n" + note


def report(label: str, results: dict[str, dict[str, Any]], levels: list[int]) -> str:
    rows = []
    for mode, res in results.items():
        for c in levels:
            r = res["levels"][str(c)]
            rows.append(
                [mode, c, r["p50_ms"], r["p99_ms"], r["throughput_rps"], r["cached_token_share"]]
            )
    on, off = results.get("prefix caching on"), results.get("prefix caching off")
    if on and off:
        for c in levels:
            a, b = on["levels"][str(c)], off["levels"][str(c)]
            rows.append(
                [
                    "speed-up from caching",
                    c,
                    f"{b['p50_ms'] / a['p50_ms']:.2f}x",
                    f"{b['p99_ms'] / a['p99_ms']:.2f}x",
                    f"{a['throughput_rps'] / b['throughput_rps']:.2f}x",
                    "",
                ]
            )
    headers = ["setup", "concurrency", "p50 ms", "p99 ms", "decisions/s", "cached share"]
    note = (
        "Speed-up: latency off÷on, throughput on÷off. Cached share: prompt tokens served "
        "from the prefix cache (whole KV blocks of the fixed routes prefix; every request's "
        "conversation is unique)."
    )
    return f"Model: {label}\n\n" + md_table(headers, rows) + "\n\n" + note


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="tiny", help="model to build")
    parser.add_argument("--model", help="an existing model path or id (skips building)")
    parser.add_argument("--requests", type=int, default=128, help="decisions per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--only", choices=["on", "off"], help="one prefix-caching mode only")
    parser.add_argument("--name", help="result file name (default vllm-<device>-<model>)")
    parser.add_argument(
        "--vs-remote", action="store_true", help="in-process vs remote (vllm serve) instead"
    )
    args = parser.parse_args()

    import torch

    on_gpu = torch.cuda.is_available()
    if not on_gpu:  # in-process engine core: faster start on CPU (see ENVIRONMENT.md)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-vllm-") as tmp:
        model = args.model or build_model(args.arch, Path(tmp))
        label = args.model or args.arch
        modes = {"on": True, "off": False}
        if args.only:
            modes = {args.only: modes[args.only]}
        if args.vs_remote:
            results = run_vs_remote(
                model, args.concurrency, args.requests, args.max_model_len, Path(tmp)
            )
        else:
            results = {
                f"prefix caching {mode}": asyncio.run(
                    run_config(model, flag, args.concurrency, args.requests, args.max_model_len)
                )
                for mode, flag in modes.items()
            }
    load = [round(x, 2) for x in (load_before[0], os.getloadavg()[0])]
    if args.vs_remote:
        table = report_remote(label, results, args.concurrency)
    else:
        table = report(label, results, args.concurrency)
    table += f"\n\n1-minute load average before/after: {load[0]} / {load[1]} (cores shared)"
    device = "gpu" if on_gpu else "cpu"
    name = args.name or f"vllm-{device}-{Path(label).name.lower()}" + (
        "-vs-remote" if args.vs_remote else ""
    )
    payload = {
        "model": label,
        "requests_per_level": args.requests,
        "load_average_before_after": load,
        "results": results,
    }
    write_results(name, payload, table)
    print(json.dumps(machine_facts()), table, sep="\n")


if __name__ == "__main__":
    main()
