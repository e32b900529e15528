"""Worker settings: count ('auto' = usable cores), torch threads per worker, the in-process
vLLM refusal, and readiness that any worker reports for the whole group."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from app.api.readiness import WorkerGroup
from app.cli.main import main
from app.server import cpus, workers
from app.server.cpus import torch_threads
from app.server.workers import check_workers, worker_count
from app.settings import Settings
from tests.helpers import app_client, make_settings


@pytest.fixture
def cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "usable_cpus", lambda: 8)
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 8)


def test_workers_default_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTER_WORKERS", raising=False)
    assert worker_count(Settings()) == 1


def test_auto_workers_is_usable_cores(cores: None) -> None:
    assert worker_count(Settings(workers="auto")) == 8
    assert worker_count(Settings(workers=3)) == 3


@pytest.mark.parametrize(
    "count,requested,expected", [(1, 0, 7), (2, 0, 4), (3, 0, 2), (16, 0, 1), (2, 5, 5)]
)
def test_torch_threads_share_the_cores(
    cores: None, count: int, requested: int, expected: int
) -> None:
    assert torch_threads(Settings(workers=count, torch_threads=requested)) == expected


def test_in_process_vllm_refuses_several_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(strategy="intent", intent={"backend": "vllm"}, workers=2)
    with pytest.raises(Exception, match="ROUTER_INTENT__BACKEND=remote"):
        check_workers(settings, 2)
    check_workers(settings.model_copy(update={"workers": 1}), 1)  # one is fine
    check_workers(Settings(strategy="intent", workers=2), 2)  # embedding is fine


def test_serve_refuses_vllm_workers_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROUTER_INTENT__BACKEND", "vllm")
    monkeypatch.setenv("ROUTER_STRATEGY", "intent")
    monkeypatch.setenv("ROUTER_WORKERS", "2")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "one router process per GPU" in err and "ROUTER_WORKERS=2" in err


def test_group_counts_only_live_ready_workers(tmp_path: Path) -> None:
    group = WorkerGroup(tmp_path, 2)
    group.mark_ready()
    assert not group.all_ready()
    group.mark_ready(2**22 + 12345)  # a pid that does not exist (above pid_max's default)
    assert group.ready_count() == 1
    group.mark_ready(os.getppid())
    assert group.all_ready()
    group.mark_gone()
    assert group.describe() == "1/2 ready"


async def test_ready_reports_the_whole_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    async with app_client(make_settings(workers=2), ready=False) as client:
        for _ in range(100):  # this worker's strategy becomes ready in the background
            resp = await client.get("/ready")
            if "1/2 ready" in resp.text:
                break
            await asyncio.sleep(0.02)
        assert resp.status_code == 503
        assert "workers loading (1/2 ready)" in resp.json()["error"]["message"]
        WorkerGroup(tmp_path, 2).mark_ready(os.getppid())  # the other worker is ready
        assert (await client.get("/ready")).status_code == 200
    assert not (tmp_path / "ready" / str(os.getpid())).exists()  # shutdown clears it
