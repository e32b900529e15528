"""Issue 21 end to end with the packaged MiniLM, as a new user runs it: ``train
--write-config`` on 300 prompts of two kinds picks the router and the served router keeps
the expensive model's quality at about half its cost on prompts phrased differently;
``calibrate`` to a 25% strong share serves that share on new prompts. The data:
bench/routing/synthetic_kinds.py (its numbers: bench/results/cost-aware-synthetic.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.routing.synthetic_kinds import graded_rows, issue_rows, write_jsonl
from tests.integration.auto.test_cli_route_eval import cli

pytestmark = [pytest.mark.embedding, pytest.mark.slow]


def evaluate(data: Path, config: Path, out: Path) -> dict[str, Any]:
    proc = cli("eval", str(data), "--strategy", "auto", "--config", str(config), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Token indices sequence length" not in proc.stderr + proc.stdout
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_train_picks_the_router_that_keeps_quality_at_half_the_cost(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", issue_rows("train", 300, seed=0))
    art = tmp_path / "art"
    proc = cli("train", str(data), "--out", str(art), "--write-config", "--cache-dir",
               str(tmp_path / "cache"), "--no-progress", timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "single model" not in proc.stdout.splitlines()[0], proc.stdout
    assert "<- served" in proc.stdout
    manifest = json.loads((art / "manifest.json").read_text())
    decision = manifest["recommended"]["decision"]
    assert decision["mode"] == "router", proc.stdout
    points = manifest["recommended"]["operating_points"]
    assert points["model"] == "large" and list(points["fractions"].values()) == [0.25, 0.5, 0.75, 1]
    config = yaml.safe_load((art / "routing.yaml").read_text())
    assert config["auto"]["budget_per_1k"] == float(decision["primary_budget"])

    held_out = write_jsonl(tmp_path / "test.jsonl", issue_rows("test", 200, seed=7))
    report = evaluate(held_out, art / "routing.yaml", tmp_path / "eval.json")
    large = report["baselines"]["single"]["large"]
    served = report["policy"]
    assert served["quality"] >= large["quality"] - 0.02, served
    assert served["cost_per_1k"] <= 0.6 * large["cost_per_1k"], served


def test_calibrate_to_a_strong_share_serves_it_on_new_prompts(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", graded_rows("train", 400, seed=1))
    art = tmp_path / "art"
    proc = cli("train", str(data), "--out", str(art), "--write-config", "--model", "knn",
               "--cache-dir", str(tmp_path / "cache"), "--no-progress", timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    unlabelled = [{"messages": r["messages"]} for r in graded_rows("train", 200, seed=2)]
    prompts_file = write_jsonl(tmp_path / "prompts.jsonl", unlabelled)
    new = tmp_path / "calibrated" / "routing.yaml"
    new.parent.mkdir()
    proc = cli("calibrate", str(prompts_file), "--config", str(art / "routing.yaml"),
               "--strong-model", "large", "--strong-share", "0.25", "--out", str(new))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "large" in proc.stdout and "cost_weight" in proc.stdout
    fresh = write_jsonl(tmp_path / "fresh.jsonl", graded_rows("test", 200, seed=3))
    report = evaluate(fresh, new, tmp_path / "eval.json")
    share = report["policy"]["choices"].get("large", 0) / report["examples"]
    assert share == pytest.approx(0.25, abs=0.08), report["policy"]
