"""Benchmark the auto strategy's decision latency and throughput.

For each encoder (MiniLM; open_clip ViT-B-32 with random weights, which costs the same
as the pretrained one) it measures, at the strategy level (no HTTP), decision latency
p50/p99 and decisions/s at each concurrency, with micro-batching on (the configured
batch size/window) and off (batch size 1), and the on/off throughput ratio. Prompts come
from the RouterBench test split; CLIP requests carry one image when --image is given.

    python -m bench.routing.bench_auto --encoders minilm,open_clip:ViT-B-32 --requests 200

Each strategy-level run also splits the time: wall time per encoder batch against the
time of its device part (image decode/preprocess, both towers, the MLP), timed with
torch.cuda.Event on CUDA (perf_counter on CPU). Images are 640x480 photo-like JPEGs,
decoded as the edge decodes them (kept bytes; 1/8-scale validation decode on CUDA).

``--http`` (default on CUDA) also serves the strategy (``python -m app``) and measures
over loopback HTTP: p50 at c=1 and decisions/s at c=64, with one JPEG per request and
text only.

    python -m bench.routing.bench_auto --device cuda --encoders open_clip:ViT-B-32 \
        --concurrency 1,16,64 --http

Writes bench/results/auto.json and auto.md with the machine's facts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, machine_facts

DATA = ROOT / "bench/data/routerbench/test.jsonl"


def prompts(n: int) -> list[str]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]
    texts = [r["messages"][-1]["content"] for r in rows]
    return [texts[i % len(texts)] for i in range(n)]


def random_artifact(
    encoder_name: str, pretrained: str | None, device: str, out: Path, max_tokens: int | None
) -> Path:
    """An untrained router artifact for the encoder (latency does not depend on training)."""
    import torch

    from models.encoders.conversation import build_encoder
    from models.routers.artifact import Manifest, encoder_record, save_artifact
    from models.routers.mlp import MLPConfig, RouterMLP

    encoder = build_encoder(encoder_name, pretrained, device, max_tokens)
    torch.manual_seed(0)
    model = RouterMLP(MLPConfig(in_dim=encoder.dim, n_out=3, hidden=(256, 128)))
    manifest = Manifest(
        encoder=encoder_record(encoder), models=["a", "b", "c"], mlp=model.cfg.to_dict()
    )
    return save_artifact(out, model, manifest)


def context(
    encoder: str,
    pretrained: str | None,
    device: str,
    artifact: Path,
    batch: int,
    window_ms: float,
    cuda_graphs: bool = True,
) -> Any:
    from app.metrics import RouterMetrics
    from app.settings import Settings
    from models.core.routing_config import RoutingConfig
    from strategies.base import StrategyContext

    config = RoutingConfig.model_validate(
        {
            "models": [
                {"name": "a", "cost": 1.0},
                {"name": "b", "cost": 0.5, "vision": True},
                {"name": "c", "cost": 0.1, "vision": True},
            ]
        }
    )
    settings = Settings.model_validate(
        {
            "strategy": "auto",
            "auto": {
                "encoder": encoder,
                "pretrained": pretrained,
                "device": device,
                "artifact": str(artifact),
                "cuda_graphs": cuda_graphs,
            },
            "batch": {"max_size": batch, "window_ms": window_ms, "queue_size": 4096},
        }
    )
    return StrategyContext(settings=settings, config=config, metrics=RouterMetrics())


async def measure(strategy: Any, conversations: list[Any], concurrency: int) -> dict[str, Any]:
    from strategies.base import RouteOptions

    latencies: list[float] = []
    queue = list(conversations)

    async def worker() -> None:
        while queue:
            conv = queue.pop()
            t0 = time.perf_counter()
            await strategy.route(conv, RouteOptions())
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "decisions_per_s": round(len(latencies) / wall, 1),
    }


class TimeSplit:
    """Wall time of each encoder batch against the time of its device part."""

    def __init__(self, strategy: Any, device: str) -> None:
        import torch

        self._torch = torch
        self.cuda = device.startswith("cuda")
        self.batches, self.wall_s, self.device_cpu_s = 0, 0.0, 0.0
        self.events: list[tuple[Any, Any]] = []
        batcher = strategy._batcher
        score = batcher._fn

        def timed_score(conversations: list[Any]) -> Any:
            began = time.perf_counter()
            try:
                return score(conversations)
            finally:
                self.wall_s += time.perf_counter() - began
                self.batches += 1

        batcher._fn = timed_score
        encoder = strategy.encoder
        targets = [(strategy._mlp, "probabilities")]
        if hasattr(encoder, "_encode_text"):  # open_clip: both towers (graphed or eager)
            targets += [(encoder, "_encode_text"), (encoder, "_encode_image")]
            targets += [(encoder, "_pixels")]
        for owner, attr in targets:
            setattr(owner, attr, self._device_part(getattr(owner, attr)))

    def _device_part(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            if self.cuda:
                start = self._torch.cuda.Event(enable_timing=True)
                end = self._torch.cuda.Event(enable_timing=True)
                start.record()
            out = fn(*args, **kwargs)
            if self.cuda:
                end.record()
                self.events.append((start, end))
            self.device_cpu_s += time.perf_counter() - began
            return out

        return timed

    def reset(self) -> None:
        self.batches, self.wall_s, self.device_cpu_s, self.events = 0, 0.0, 0.0, []

    def report(self) -> dict[str, Any]:
        if self.cuda:
            self._torch.cuda.synchronize()
            device_ms = sum(s.elapsed_time(e) for s, e in self.events)
        else:
            device_ms = self.device_cpu_s * 1000
        n = max(1, self.batches)
        return {
            "batches": self.batches,
            "wall_ms_per_batch": round(self.wall_s * 1000 / n, 3),
            "device_ms_per_batch": round(device_ms / n, 3),
            "device_timer": "torch.cuda.Event" if self.cuda else "perf_counter (CPU device)",
            "device_share": round(device_ms / max(1e-9, self.wall_s * 1000), 3),
        }


def edge_image(device: str) -> Any:
    """A 640x480 JPEG decoded as the service's edge decodes it for this device."""
    from app.images.decode import open_image
    from app.settings import LimitSettings
    from bench.serving.workloads import jpeg

    return open_image(jpeg(640, 480), LimitSettings(), "bench", preview=device.startswith("cuda"))


async def bench_encoder(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from models.core.conversation import Conversation
    from strategies.auto.strategy import AutoStrategy

    pretrained = None
    tokens = args.minilm_tokens if name == "minilm" else None
    artifact = random_artifact(name, pretrained, args.device, tmp / name.replace(":", "_"), tokens)
    image = name.startswith("open_clip") and args.image
    img = edge_image(args.device)
    convs = [Conversation.from_text(t, [img] if image else []) for t in prompts(args.requests)]
    result: dict[str, Any] = {"encoder": name, "with_image": bool(image), "runs": []}
    for batching in (True, False):
        size, window = (args.batch, args.window_ms) if batching else (1, 0.0)
        strategy = AutoStrategy(
            context(name, pretrained, args.device, artifact, size, window, args.cuda_graphs)
        )
        await strategy.start()
        split = TimeSplit(strategy, args.device)
        try:
            await measure(strategy, convs[: min(16, len(convs))], 4)  # warm-up
            for c in args.concurrency:
                split.reset()
                run = await measure(strategy, convs, c)
                result["runs"].append({"batching": batching, **run, "split": split.report()})
                print(f"{name} batching={batching} {run}", flush=True)
        finally:
            await strategy.aclose()
    by = {(r["batching"], r["concurrency"]): r["decisions_per_s"] for r in result["runs"]}
    result["batching_speedup"] = {
        str(c): round(by[(True, c)] / by[(False, c)], 2) for c in args.concurrency
    }
    return result


def http_markdown(http: dict[str, Any]) -> str:
    from bench.routing.bench_auto_http import markdown_rows

    return markdown_rows(http)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# auto strategy: decision latency and throughput",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU {m['gpu']}; commit {m['git_commit']}; "
        f"python {m['python']}, {', '.join(f'{k} {v}' for k, v in m['versions'].items())}.",
        "",
    ]
    if report["encoders"]:
        lines += strategy_rows(report)
    if report.get("http"):
        lines += ["", http_markdown(report["http"])]
    if report.get("note"):
        lines += ["", report["note"]]
    return "\n".join(lines) + "\n"


def strategy_rows(report: dict[str, Any]) -> list[str]:
    lines = [
        f"Strategy-level (no HTTP), {report['requests']} RouterBench prompts per run, "
        f"micro-batching on = max_size {report['batch']}, window {report['window_ms']} ms; "
        f"off = batch size 1. CUDA graphs: {report.get('cuda_graphs', 'n/a')}.",
        "",
        "Time split per encoder batch: wall (CPU thread) vs its device part (image "
        "decode/preprocess, towers, MLP; torch.cuda.Event on CUDA).",
        "",
        "| encoder | image | batching | concurrency | p50 ms | p99 ms | decisions/s "
        "| wall ms/batch | device ms/batch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for enc in report["encoders"]:
        for r in enc["runs"]:
            split = r.get("split", {})
            lines.append(
                f"| {enc['encoder']} | {enc['with_image']} | {r['batching']} | "
                f"{r['concurrency']} | {r['p50_ms']} | {r['p99_ms']} | "
                f"{r['decisions_per_s']} | {split.get('wall_ms_per_batch', '')} | "
                f"{split.get('device_ms_per_batch', '')} |"
            )
    lines.append("")
    for enc in report["encoders"]:
        lines.append(
            f"- {enc['encoder']}: throughput batching on/off = "
            f"{enc['batching_speedup']} (by concurrency)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.routing.bench_auto",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--encoders", default="minilm,open_clip:ViT-B-32")
    p.add_argument("--requests", type=int, default=200, help="decisions per run")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    p.add_argument("--batch", type=int, default=32, help="micro-batch size when on")
    p.add_argument("--window-ms", type=float, default=2.0)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--minilm-tokens", type=int, default=128, help="MiniLM text budget (the shipped artifact's)"
    )
    p.add_argument(
        "--image",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one image per open_clip request",
    )
    p.add_argument(
        "--http",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure over HTTP (default: on with --device cuda)",
    )
    p.add_argument(
        "--http-concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 64],
        help="HTTP runs: p50 at the first, throughput at every one",
    )
    p.add_argument("--http-requests", type=int, default=1000, help="requests per HTTP run")
    p.add_argument(
        "--http-workers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1],
        help="HTTP runs: one server per ROUTER_WORKERS value in this list",
    )
    p.add_argument(
        "--client-procs",
        type=int,
        default=1,
        help="HTTP load-generator processes above c=1 (one Python client tops out first)",
    )
    p.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="open_clip on CUDA: towers replayed from CUDA graphs (ROUTER_AUTO__CUDA_GRAPHS)",
    )
    p.add_argument(
        "--strategy-level",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the strategy-level runs (no HTTP); --no-strategy-level for HTTP runs only",
    )
    p.add_argument("--note", default="", help="free text stored with the results")
    p.add_argument("--out", default=str(ROOT / "bench/results"), help="output directory")
    p.add_argument("--name", default="auto", help="file stem of the results")
    args = p.parse_args(argv)
    from models.encoders.sentence import EncoderLoadError

    report: dict[str, Any] = {
        "machine": {**machine_facts(), "platform": platform.platform()},
        "requests": args.requests,
        "batch": args.batch,
        "window_ms": args.window_ms,
        "device": args.device,
        "cuda_graphs": args.cuda_graphs,
        "encoders": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in [e for e in args.encoders.split(",") if e and args.strategy_level]:
            try:
                report["encoders"].append(asyncio.run(bench_encoder(name, args, Path(tmp))))
            except (ImportError, EncoderLoadError) as exc:
                print(f"{name}: skipped ({exc})")
        if args.http if args.http is not None else args.device.startswith("cuda"):
            clip = [e for e in args.encoders.split(",") if e.startswith("open_clip:")]
            if clip:
                from bench.routing.bench_auto_http import run_http

                report["http"] = run_http(clip[0], args, Path(tmp))
    report["note"] = args.note
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
