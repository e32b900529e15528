"""Shared fixtures: GPU tests skip without CUDA; FakeStrategy class state is reset; no .env;
ONNX exports go to one directory per test session (never the developer's ~/.cache)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "ROUTER_ENCODER__CACHE_DIR" not in os.environ:  # set it to keep exports between sessions
    _ONNX_CACHE = tempfile.mkdtemp(prefix="llm-router-test-onnx-")
    os.environ["ROUTER_ENCODER__CACHE_DIR"] = _ONNX_CACHE  # server subprocesses inherit it
    atexit.register(shutil.rmtree, _ONNX_CACHE, True)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(item.get_closest_marker("gpu") for item in items) and not _cuda_available():
        skip = pytest.mark.skip(reason="needs CUDA (run `make test-gpu` on the GPU machine)")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read a developer's .env (tests/unit/server/test_dotenv.py turns it back on)."""
    from app.settings import Settings

    monkeypatch.setitem(Settings.model_config, "env_file", None)


@pytest.fixture(autouse=True)
def _reset_fake_strategy() -> None:
    from tests.fakes import FakeStrategy, Faults

    Faults.reset()
    FakeStrategy.start_gate = None
    FakeStrategy.fail_start = None
