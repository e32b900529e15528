"""Tools for bench/serving/bench_proxy.py: the router and LiteLLM as proxies of a local upstream
(started with bench.common's launchers), per-process CPU time from /proc, the router's
own overhead metric and LiteLLM's version."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import yaml

from bench.common import HttpTarget, free_port, router_server, server_process

MODEL = "bench-model"


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


@contextmanager
def litellm_server(exe: str, upstream: str, workdir: Path) -> Iterator[HttpTarget]:
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
    with server_process(
        cmd, f"http://127.0.0.1:{port}/health/liveliness", env, log=workdir / "litellm.log"
    ) as proc:
        yield HttpTarget("127.0.0.1", port, "/v1/chat/completions", proc.pid)


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


def router_process(
    config: Path, workdir: Path, src: Path | None = None, name: str = "router"
) -> AbstractContextManager[HttpTarget]:
    """The router in proxy mode with the FakeStrategy, on a free port; ``src``: run the
    code of another checkout (an earlier commit) instead of this one."""
    env = {
        "ROUTER_MODE": "proxy",
        "ROUTER_STRATEGY": "tests.fakes:FakeStrategy",
        "ROUTER_CONFIG": str(config),
    }
    log = workdir / f"{name}.log"
    if src is None:
        return router_server(env, timeout=180.0, log=log)
    return router_server(env, timeout=180.0, log=log, src=src)
