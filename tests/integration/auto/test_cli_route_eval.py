"""`llm-router route` and `llm-router eval` with the real packaged MiniLM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import DEFAULT_CONFIG
from models.core.routing_config import load_routing_config
from tests.helpers import empty_dir, env_without_settings, png_bytes

pytestmark = pytest.mark.embedding

ROOT = Path(__file__).resolve().parents[3]
CONFIG = load_routing_config(DEFAULT_CONFIG)
DEV_SET = ROOT / "bench" / "data" / "intent-dev.jsonl"


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = env_without_settings()
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    code = "import sys; from app.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=empty_dir(),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_route_json_prints_a_decision() -> None:
    proc = cli("route", "hello", "--json")
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert decision["model"] in CONFIG.model_names
    assert decision["strategy"] == "intent"
    assert decision["intent"] in {i.name for i in CONFIG.intents}
    assert decision["reason"]
    assert decision["latency_ms"] >= 0


def test_route_with_an_image_picks_a_vision_model(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(32, 32))
    proc = cli("route", "what is this?", "--image", str(image), "--json")
    assert proc.returncode == 0, proc.stderr
    decision = json.loads(proc.stdout)
    assert CONFIG.model(decision["model"]).vision


@pytest.mark.slow
def test_eval_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = cli("eval", str(DEV_SET), "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert {"accuracy", "per_intent", "confusion", "latency"} <= set(report)
    assert 0.0 <= report["accuracy"] <= 1.0
    assert report["accuracy"] > 0.5  # far above the 1/6 of guessing
    labels = {json.loads(line)["intent"] for line in DEV_SET.read_text().splitlines() if line}
    assert labels <= set(report["per_intent"])
    for row in report["per_intent"].values():
        assert {"precision", "recall"} <= set(row)
    latency = report["latency"]
    assert 0 < latency["p50_ms"] <= latency["p95_ms"]
    assert "accuracy" in proc.stdout
