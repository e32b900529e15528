"""An interrupted ``collect`` resumes without paying twice: ``kill -9`` loses at most the
calls in flight; Ctrl-C finishes them first, so every call the upstream saw has its row.
The command runs in a subprocess; the upstream (loopback) counts every call."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.netguard import loopback_only  # noqa: F401
from tests.unit.loop.loop_support import (
    calls,
    echo,
    prompts,
    read_jsonl,
    write_config,
    write_jsonl,
)
from tests.upstream_server import Scripted, UpstreamServer

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.usefixtures("loopback_only")
PAIRS = 24  # 12 prompts x 2 models


def slow(body: dict[str, Any], n: int) -> Scripted:
    reply = echo(body, n)
    reply.delay_s = 0.15
    return reply


def start(tmp_path: Path, config: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    args = [
        sys.executable, "-m", "app.cli.main", "collect", str(tmp_path / "prompts.jsonl"),
        "--config", str(config), "--models", "cheap,strong", "--out",
        str(tmp_path / "answers.jsonl"), "--concurrency", "3", "--no-progress",
    ]  # fmt: skip
    return subprocess.Popen(
        args, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_rows(path: Path, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError(f"fewer than {n} rows in {path}")


def pairs(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["model"], r["messages"][0]["content"]) for r in rows]


def test_kill_9_mid_run_then_rerun_repeats_no_answered_call(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    upstream.state.script = slow
    write_jsonl(tmp_path / "prompts.jsonl", prompts(PAIRS // 2))
    config = write_config(tmp_path, upstream.base_url)
    proc = start(tmp_path, config)
    answers = tmp_path / "answers.jsonl"
    wait_rows(answers, 6, proc)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.communicate(timeout=30)
    saved = pairs(read_jsonl(answers))
    first_calls = calls(upstream)
    assert 6 <= len(saved) < PAIRS and set(saved) <= set(first_calls)
    in_flight = set(first_calls) - set(saved)
    assert len(in_flight) <= 3  # --concurrency: the most a kill can lose

    upstream.state.requests.clear()
    proc = start(tmp_path, config)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    again = calls(upstream)
    assert not set(again) & set(saved)  # nothing answered was paid for twice
    assert len(again) == PAIRS - len(saved)
    final = pairs(read_jsonl(answers))
    assert Counter(final) == Counter(set(final)) and len(final) == PAIRS
    assert f"{len(saved)} answered before" in out


def test_ctrl_c_finishes_the_calls_in_flight_and_keeps_every_answer(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    upstream.state.script = slow
    write_jsonl(tmp_path / "prompts.jsonl", prompts(PAIRS // 2))
    config = write_config(tmp_path, upstream.base_url)
    proc = start(tmp_path, config)
    answers = tmp_path / "answers.jsonl"
    wait_rows(answers, 4, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopping: no new calls; finishing" in err
    assert "stopped: interrupted (Ctrl-C); the calls in flight were finished" in out
    saved = pairs(read_jsonl(answers))
    assert Counter(saved) == Counter(calls(upstream))  # every paid call has its answer
    assert len(saved) < PAIRS

    upstream.state.requests.clear()
    proc = start(tmp_path, config)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not set(calls(upstream)) & set(saved) and len(calls(upstream)) == PAIRS - len(saved)


def test_a_second_ctrl_c_aborts_the_calls_in_flight(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    upstream.state.script = lambda body, n: Scripted(content="late", delay_s=30.0)
    write_jsonl(tmp_path / "prompts.jsonl", prompts(PAIRS // 2))
    config = write_config(tmp_path, upstream.base_url)
    proc = start(tmp_path, config)
    deadline = time.monotonic() + 60
    while len(upstream.state.requests) < 3:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    began = time.monotonic()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and time.monotonic() - began < 20
    assert "aborting the calls in flight" in err
    assert read_jsonl(tmp_path / "answers.jsonl") == [] and len(upstream.state.requests) == 3
