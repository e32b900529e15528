"""SIGHUP on a real server (one process, and two workers behind a supervisor): the new
routing config serves, traffic during the reload all succeeds, a broken config keeps the
old one serving."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from tests.helpers import FAKE, running_server, user

pytestmark = pytest.mark.slow  # real server processes

BODY = {"model": "router", "messages": [user("hello there")]}


def write_config(path: Path, *models: str) -> None:
    path.write_text("models:\n" + "".join(f"  - name: {m}\n" for m in models))


def reloads(base: str, result: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    match = re.search(
        rf'^llm_router_config_reloads_total\{{result="{result}"\}} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


async def traffic(base: str, stop: asyncio.Event) -> list[tuple[int, str]]:
    """Requests one after another (4 at a time) until ``stop``: (status, chosen model)."""
    out: list[tuple[int, str]] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def loop() -> None:
            while not stop.is_set():
                resp = await client.post("/v1/chat/completions", json=BODY)
                model = resp.json()["router"]["model"] if resp.status_code == 200 else ""
                out.append((resp.status_code, model))

        await asyncio.gather(*(loop() for _ in range(4)))
    return out


async def reload_under_load(base: str, pid: int, expected: str, workers: int) -> list:
    stop = asyncio.Event()
    sending = asyncio.create_task(traffic(base, stop))
    await asyncio.sleep(0.5)
    os.kill(pid, signal.SIGHUP)
    deadline = asyncio.get_running_loop().time() + 60
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        streak = 0  # with several workers each reloads itself: wait until all answer anew
        while streak < 10 * workers:
            resp = await client.post("/v1/chat/completions", json=BODY)
            streak = streak + 1 if resp.json()["router"]["model"] == expected else 0
            assert asyncio.get_running_loop().time() < deadline, "reload not seen"
    await asyncio.sleep(0.3)
    stop.set()
    return await sending


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sighup_reloads_the_config_with_no_failed_request(tmp_path: Path, workers: str) -> None:
    config = tmp_path / "routing.yaml"
    write_config(config, "alpha", "beta")
    env = {
        "ROUTER_STRATEGY": FAKE,
        "ROUTER_CONFIG": str(config),
        "ROUTER_WORKERS": workers,
        "ROUTER_TORCH_THREADS": "1",
    }
    log = tmp_path / "server.log"  # a file: a full pipe would stall the server's logging
    with running_server(env, timeout=120, output=log) as (base, proc):
        write_config(config, "beta", "alpha")
        results = asyncio.run(reload_under_load(base, proc.pid, "beta", int(workers)))
        statuses = {status for status, _ in results}
        assert statuses == {200}, f"failed requests during the reload: {statuses}"
        models = [model for _, model in results]
        assert models[0] == "alpha" and models[-1] == "beta"
        # whichever worker answers the scrape, the merged counter has every worker's reload
        assert reloads(base, "success") == int(workers)

        config.write_text("models: [\n")  # broken: the running config keeps serving
        proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            if reloads(base, "error") == int(workers):
                break
            asyncio.run(asyncio.sleep(0.1))
        assert reloads(base, "error") == int(workers)
        resp = httpx.post(f"{base}/v1/chat/completions", json=BODY, timeout=30)
        assert resp.status_code == 200 and resp.json()["router"]["model"] == "beta"
        assert httpx.get(f"{base}/ready", timeout=10).status_code == 200
        assert proc.poll() is None
