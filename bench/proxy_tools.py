"""Tools for bench/bench_proxy.py: server processes (upstream, router, LiteLLM) with their
pids, per-process CPU time from /proc, and a raw keep-alive HTTP/1.1 load generator that
also times the first streamed token (little client CPU on a 2-core machine)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.common import ROOT, HttpTarget, free_port

MODEL = "bench-model"
CONTENT = re.compile(rb'"content":\s*"[^"]')


@contextmanager
def process(
    cmd: list[str],
    ready_url: str,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server subprocess, up once ``ready_url`` answers 200; stopped on exit."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = log.read_text()[-1500:] if log else ""
                raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {tail}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{cmd[0]} not ready after {timeout:.0f} s")
            time.sleep(0.25)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log:
            out.close()  # type: ignore[union-attr]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += (int(stats[p][11]) + int(stats[p][12])) / tick
        todo += children.get(p, [])
    return total


async def _worker(target: HttpTarget, body: bytes, n: int, stream: bool, out: list[float]) -> None:
    """``n`` requests on one keep-alive connection; records latency (or time to first token)."""
    reader, writer = await asyncio.open_connection(target.host, target.port)
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.host}\r\nContent-Type: "
        f"application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        for _ in range(n):
            start = time.perf_counter()
            first: float | None = None
            writer.write(head + body)
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
                    if first is None and CONTENT.search(seen):
                        first = time.perf_counter()
                await reader.readexactly(2)
            else:
                seen = await reader.readexactly(length)
            if not status.startswith(b"HTTP/1.1 200") or (stream and first is None):
                raise RuntimeError(f"bad answer from :{target.port}: {status!r} {seen[:300]!r}")
            out.append((first if stream and first else time.perf_counter()) - start)
    finally:
        writer.close()


async def load(target: HttpTarget, body: bytes, n: int, conc: int, stream: bool) -> list[float]:
    """``n`` requests over ``conc`` connections; latencies (or times to first token)."""
    per = [n // conc + (1 if i < n % conc else 0) for i in range(conc)]
    out: list[float] = []
    await asyncio.gather(*(_worker(target, body, k, stream, out) for k in per if k))
    return out


@contextmanager
def litellm_server(exe: str, upstream: str, workdir: Path) -> Iterator[tuple[HttpTarget, int]]:
    port = free_port()
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": upstream,
                    "api_key": "sk-bench",
                },
            }
        ],
        "litellm_settings": {"drop_params": True, "num_retries": 0, "telemetry": False},
    }
    path = workdir / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        # no auth, like the router here (LiteLLM >= 1.8x refuses to start without a key)
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "true",
    }
    cmd = [
        exe,
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    with process(
        cmd, f"http://127.0.0.1:{port}/health/liveliness", env, log=workdir / "litellm.log"
    ) as proc:
        yield HttpTarget("127.0.0.1", port, "/v1/chat/completions"), proc.pid


def router_overhead_mean_ms(target: HttpTarget) -> float | None:
    """Mean of the router's own llm_router_proxy_overhead_seconds histogram."""
    text = httpx.get(f"http://{target.host}:{target.port}/metrics", timeout=10).text
    found = dict(re.findall(r"^llm_router_proxy_overhead_seconds_(sum|count) (\S+)$", text, re.M))
    count = float(found.get("count", 0))
    return round(float(found["sum"]) / count * 1000.0, 4) if count else None


def litellm_version(exe: str) -> str | None:
    python = Path(exe).with_name("python")
    try:
        return (
            subprocess.run(
                [str(python), "-c", "import importlib.metadata as m;print(m.version('litellm'))"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
            or None
        )
    except OSError:
        return None


def router_process(config: Path, workdir: Path) -> Any:
    """The router in proxy mode with the FakeStrategy, on a free port."""
    port = free_port()
    env = {
        "PYTHONPATH": str(ROOT),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(port),
        "ROUTER_MODE": "proxy",
        "ROUTER_STRATEGY": "tests.fakes:FakeStrategy",
        "ROUTER_CONFIG": str(config),
        "ROUTER_LOG_LEVEL": "warning",
    }
    return port, process(
        [sys.executable, "-m", "app"],
        f"http://127.0.0.1:{port}/ready",
        env,
        log=workdir / "router.log",
    )
