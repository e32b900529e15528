"""docs/tutorial.md, every command in order, against the toy models on loopback: the
learning loop (capture -> collect -> label -> train -> serve -> calibrate -> reload) reaches
what issue 21 asks of it, and the page cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.routing.tutorial_run import measure, run_tutorial

pytestmark = [pytest.mark.slow, pytest.mark.embedding]


def test_the_tutorial_runs_and_the_loop_saves_money(tmp_path: Path) -> None:
    work, _ = run_tutorial(tmp_path)
    m = measure(work)
    # a proxied workload with capture on is captured row for row
    assert m["captured_rows"] == m["requests_captured"] == 300
    assert m["before"]["failed"] == 0 and m["before"]["share"] == {"toy-large": 1.0}
    # label --judge (no references) grades in agreement with the truth
    agreed, total = m["judge_agreement"]
    assert total == 600 and agreed == total
    # train -> serve: the large model's quality within 0.02 at <= 0.6 x its cost, on
    # prompts phrased differently from the training ones
    assert m["decision"]["mode"] == "router"
    routed = m["routed"]
    assert routed["failed"] == 0
    assert routed["quality"] >= m["large_alone_quality"] - 0.02
    assert routed["cost_ratio_to_large"] <= 0.6
    # calibrate to a 25% strong share, reload on SIGHUP under load: 0 failed requests,
    # and new prompts get 25% +- 8%
    assert m["during_reload"]["requests"] == 400 and m["during_reload"]["failed"] == 0
    share = m["calibrated"]["share"].get("toy-large", 0.0)
    assert 0.17 <= share <= 0.33, m["calibrated"]
    assert routed["share"].get("toy-large", 0.0) > 0.4  # the reload moved the share
