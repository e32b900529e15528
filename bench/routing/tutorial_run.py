"""Run docs/tutorial.md's commands, in order, against the toy models on loopback, and
measure what the learning loop reached (tests/integration/loop/test_tutorial.py asserts it;
run as a script it records bench/results/learning-loop.{json,md}).

    PYTHONPATH=. .venv/bin/python -m bench.routing.tutorial_run

The page's ```bash blocks become one ``bash -euo pipefail`` script; its ports (8100 for the
toy models, 8000 for the router) are swapped for free ones, and its ``mktemp -d`` work
directory is one this runner reads afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, md_table, write_results
from tests.helpers import free_port
from tests.toy_models import FORMS, answer, questions, truth

TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def tutorial_script(toy_port: int, router_port: int, work: Path) -> str:
    blocks = BLOCK.findall(TUTORIAL.read_text(encoding="utf-8"))
    script = "\n".join(blocks)
    assert "WORK=$(mktemp -d)" in script, "the tutorial's work directory line changed"
    script = script.replace("WORK=$(mktemp -d)", f"WORK={work}")
    script = script.replace("127.0.0.1:8100", f"127.0.0.1:{toy_port}")
    script = script.replace("--port 8100", f"--port {toy_port}")
    script = script.replace("127.0.0.1:8000", f"127.0.0.1:{router_port}")
    script = script.replace("ROUTER_PORT=8000", f"ROUTER_PORT={router_port}")
    return "set -euo pipefail\n" + script


def run_tutorial(parent: Path, timeout_s: float = 1500) -> tuple[Path, float]:
    """Run the page's commands; the work directory they used and how long it took."""
    work = parent / "work"
    work.mkdir()
    script = tutorial_script(free_port(), free_port(), work)
    env = dict(os.environ)
    env.pop("ROUTER_CONFIG", None)
    began = time.monotonic()
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    seconds = time.monotonic() - began
    (work / "tutorial.out").write_text(proc.stdout)
    if proc.returncode != 0:
        logs = "".join(
            f"\n--- {name}\n{(work / name).read_text()[-3000:]}"
            for name in ("router.log", "toy.log")
            if (work / name).exists()
        )
        raise RuntimeError(
            f"tutorial failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-4000:]}{logs}"
        )
    return work, seconds


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure(work: Path) -> dict[str, Any]:
    """What the run reached, from the files its commands wrote."""
    report = {n: json.loads((work / f"{n}.json").read_text()) for n in
              ("before", "routed", "during", "calibrated")}  # fmt: skip
    captured = sum(len(_rows(p)) for p in (work / "capture").glob("capture-*.jsonl"))
    scores = {r["id"]: r["scores"] for r in _rows(work / "train.jsonl")}
    agree = total = 0
    for row in _rows(work / "answers.jsonl"):
        question = row["messages"][-1]["content"]
        right = row["answer"] == f"The answer is {truth(question)}."
        agree += (scores[row["id"]][row["model"]] == 1.0) == right
        total += 1
    routed_qs = questions(200, 2, FORMS["test"])  # the questions step 5 asked
    large = sum(
        answer("toy-large", q["text"]) == f"The answer is {q['reference']}." for q in routed_qs
    )
    manifest = json.loads((work / "router" / "manifest.json").read_text())
    printed = (work / "tutorial.out").read_text().splitlines()
    calibrate = [line for line in printed if line.startswith(("note:", "operating point", "  "))]
    return {
        "captured_rows": captured,
        "requests_captured": report["before"]["requests"],
        "judge_agreement": [agree, total],
        "large_alone_quality": round(large / len(routed_qs), 4),
        "before": report["before"],
        "routed": report["routed"],
        "during_reload": report["during"],
        "calibrated": report["calibrated"],
        "decision": manifest["recommended"]["decision"],
        "cross_validation": _served_point(manifest),
        "calibrate_printed": [
            line for line in calibrate if line.startswith("note:") or " share " in line
        ],
    }


def _served_point(manifest: dict[str, Any]) -> dict[str, Any]:
    """The cross-validated numbers of the operating point training chose to serve."""
    recommended = manifest["recommended"]
    point = recommended["by_budget"][recommended["decision"]["primary_budget"]]
    best = point["vs_best"]
    return {
        "router_quality": point["router"]["quality"],
        "router_cost_per_1k": point["router"]["cost_per_1k"],
        "best_single": best["model"],
        "quality_diff": best["quality_diff"],
        "cost_saving": best["cost_saving"],
    }


def markdown(m: dict[str, Any], seconds: float) -> str:
    routed, cal, during = m["routed"], m["calibrated"], m["during_reload"]
    cv = m["cross_validation"]
    rows = [
        ["capture", f"{m['requests_captured']} requests, {m['captured_rows']} rows"],
        ["judge vs truth", f"{m['judge_agreement'][0]} of {m['judge_agreement'][1]} answers"],
        ["cross-validation, served point",
         f"quality {cv['router_quality']} at {cv['router_cost_per_1k']} USD/1k; "
         f"{cv['best_single']} alone {round(cv['router_quality'] - cv['quality_diff'], 4)}, "
         f"saving {cv['cost_saving']}"],
        ["toy-large alone, new phrasings", f"quality {m['large_alone_quality']}"],
        ["trained router, new phrasings",
         f"quality {routed['quality']} at {routed['cost_ratio_to_large']} x toy-large's cost, "
         f"share {routed['share']}"],
        ["calibrated to a 25% strong share", f"share {cal['share']}"],
        ["across the SIGHUP", f"{during['requests']} requests, {during['failed']} failed"],
    ]  # fmt: skip
    decision = m["decision"]
    return (
        "`PYTHONPATH=. .venv/bin/python -m bench.routing.tutorial_run` runs every command of "
        f"docs/tutorial.md against the toy models on loopback ({seconds:.0f} s).\n\n"
        + md_table(["step", "result"], rows)
        + f"\n\nTrained decision: mode {decision.get('mode')}, router {decision.get('router')}, "
        f"served budget {decision.get('primary_budget')}, why {decision.get('why')}.\n"
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="llm-router-tutorial-") as parent:
        work, seconds = run_tutorial(Path(parent))
        result = measure(work)
    result["seconds"] = round(seconds, 1)
    write_results("learning-loop", result, markdown(result, seconds))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
