"""``llm-router serve`` with the vLLM backend, configured by environment variables only,
answering the official ``openai`` client over real HTTP; a bad model path stops it.

Run in ``.venv-vllm``: ``make test-vllm``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import DEFAULT_CONFIG
from models.core.routing_config import load_routing_config
from tests.helpers import ROOT, server_process
from tests.tiny_models import build_tiny_qwen3

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

VLLM_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0"),
    "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
    "ROUTER_STRATEGY": "intent",
    "ROUTER_INTENT__BACKEND": "vllm",
    "ROUTER_INTENT__MAX_MODEL_LEN": "2048",
    "ROUTER_INTENT__TIMEOUT_S": "120",
    "ROUTER_LOG_FORMAT": "console",
}


def test_openai_client_against_served_router(tmp_path: Path) -> None:
    from openai import OpenAI

    model = build_tiny_qwen3(tmp_path / "tiny-qwen3")
    models = set(load_routing_config(DEFAULT_CONFIG).model_names)
    with server_process({**VLLM_ENV, "ROUTER_INTENT__MODEL": str(model)}) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        for text in ("good morning!", "that answer was wrong, try again"):
            completion = client.chat.completions.create(
                model="router", messages=[{"role": "user", "content": text}]
            )
            assert completion.choices[0].message.content in models
            assert completion.model == "intent"
        listed = {m.id for m in client.models.list()}
        assert listed == models


def test_missing_model_path_stops_the_server(tmp_path: Path) -> None:
    env = {**os.environ, **VLLM_ENV, "ROUTER_INTENT__MODEL": str(tmp_path / "nope")}
    env["ROUTER_PORT"] = "0"
    proc = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "no such model directory" in proc.stdout + proc.stderr
