"""The auto strategy over HTTP (``python -m bench.routing.bench_auto --http``): a real server on
loopback with an untrained artifact for the encoder, one 640x480 JPEG per request (data
URL) and text only; p50 at c=1 and decisions/s at each concurrency."""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from pathlib import Path
from typing import Any

import orjson

from bench.common import load, load_procs, md_table, router_server
from bench.serving.workloads import jpeg

QUESTION = "What is shown in this picture, and is anything unusual about it?"


def bodies() -> dict[str, bytes]:
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg(640, 480)).decode()
    image = {
        "role": "user",
        "content": [
            {"type": "text", "text": QUESTION},
            {"type": "image_url", "image_url": {"url": url}},
        ],
    }
    text = {"role": "user", "content": QUESTION}
    return {
        "one_jpeg_640x480": orjson.dumps({"model": "router", "messages": [image]}),
        "text_only": orjson.dumps({"model": "router", "messages": [text]}),
    }


def run_http(encoder: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import yaml

    from bench.routing.bench_auto import random_artifact

    artifact = random_artifact(encoder, None, args.device, tmp / "http-artifact", None)
    config = tmp / "http-routing.yaml"
    models = [
        {"name": "a", "cost": 1.0, "threshold": 0.5},
        {"name": "b", "cost": 0.5, "threshold": 0.5, "vision": True},
        {"name": "c", "cost": 0.1, "threshold": 0.5, "vision": True},
    ]
    config.write_text(yaml.safe_dump({"models": models, "auto": {"artifact": str(artifact)}}))
    results: dict[str, Any] = {
        "encoder": encoder,
        "device": args.device,
        "window_ms": args.window_ms,
        "client_procs": args.client_procs,
        "cuda_graphs": args.cuda_graphs,
        "runs": {},
    }
    for workers in args.http_workers:
        env = {
            "ROUTER_STRATEGY": "auto",
            "ROUTER_CONFIG": str(config),
            "ROUTER_AUTO__ENCODER": encoder,
            "ROUTER_AUTO__DEVICE": args.device,
            "ROUTER_BATCH__MAX_SIZE": str(args.batch),
            "ROUTER_BATCH__WINDOW_MS": str(args.window_ms),
            "ROUTER_BATCH__QUEUE_SIZE": "4096",
            "ROUTER_WORKERS": str(workers),
            "ROUTER_AUTO__CUDA_GRAPHS": str(args.cuda_graphs).lower(),
        }
        with router_server(env, python=sys.executable) as target:
            for workload, payload in bodies().items():
                asyncio.run(load(target, payload, 64 * workers, 8 * workers))  # warm-up
                for c in args.http_concurrency:
                    n = max(args.http_requests if c > 1 else args.http_requests // 4, c)
                    procs = 1 if c == 1 else args.client_procs
                    stats = load_procs(target, payload, n, c, procs)
                    key = f"{workload}@workers={workers}"
                    results["runs"].setdefault(key, {})[str(c)] = stats
                    print("http", encoder, key, f"c={c}", stats, flush=True)
    return results


def markdown_rows(http: dict[str, Any]) -> str:
    rows = [
        [workload, c, r["p50_ms"], r["p99_ms"], r["throughput_rps"]]
        for workload, by_c in http["runs"].items()
        for c, r in by_c.items()
    ]
    title = (
        f"Over HTTP ({http['encoder']}, device {http['device']}, batch window "
        f"{http.get('window_ms', '?')} ms, CUDA graphs {http.get('cuda_graphs', 'n/a')}, "
        f"{http.get('client_procs', 1)} client processes above c=1):\n\n"
    )
    return title + md_table(["workload", "concurrency", "p50 ms", "p99 ms", "decisions/s"], rows)
