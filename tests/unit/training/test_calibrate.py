"""``llm-router calibrate``: each target (strong-model share, $/1k budget, quality floor),
the written config serving what was calibrated, and the command's errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from models.routers.artifact import Manifest, save_artifact  # noqa: E402
from models.routers.knn import KNNRouter  # noqa: E402
from models.routers.registry import shape_of  # noqa: E402
from models.training.calibrate import CalibrationError, Target, calibrate  # noqa: E402

DIM = 8
COSTS = {"small": 0.1, "large": 1.0}  # config cost: $ per 1k prompts


class _Encoder:
    """'... difficulty 0.42' embeds along (d, 1 - d): the small model's chance of being
    right falls with d, and the kNN router learns it. Anything else embeds at d = 0.5."""

    name, version, dim, fingerprint, supports_images = "fake", "v1", DIM, "f" * 16, False

    def embed(self, conversations: list[Any]) -> np.ndarray:
        out = np.zeros((len(conversations), DIM), dtype=np.float32)
        for i, conv in enumerate(conversations):
            text = conv.latest_user_text()
            d = float(text.rsplit(" ", 1)[1]) if "difficulty" in text else 0.5
            out[i, :3] = (d, 1.0 - d, 0.05)
        return out


def difficulties(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def rows_of(d: np.ndarray, seed: int, labelled: bool = True) -> list[dict[str, Any]]:
    """Prompts of rising difficulty; the small model is right with probability 1 - d, the
    large one 95% of the time; costs per prompt in USD (0.1 and 1 $/1k)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, v in enumerate(d):
        row: dict[str, Any] = {
            "messages": [{"role": "user", "content": f"q{i} difficulty {v:.4f}"}]
        }
        if labelled:
            row["scores"] = {
                "small": float(rng.random() < 1 - v),
                "large": float(rng.random() < 0.95),
            }
            row["costs"] = {m: c / 1000 for m, c in COSTS.items()}
        out.append(row)
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def router(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kNN router artifact over 400 labelled prompts and its routing config."""
    from models.encoders import conversation as encoders

    monkeypatch.setattr(encoders, "build_encoder", lambda *a, **k: _Encoder())
    d = difficulties(400, seed=1)
    x = np.zeros((len(d), DIM), np.float32)
    x[:, :3] = np.stack([d, 1 - d, np.full_like(d, 0.05)], axis=1)
    rows = rows_of(d, seed=2)
    scores = np.array([[r["scores"]["small"], r["scores"]["large"]] for r in rows], np.float32)
    model = KNNRouter.fit(x, scores, k=25)
    manifest = Manifest(
        encoder={"name": "fake", "version": "v1", "dim": DIM, "fingerprint": "f" * 16},
        models=["small", "large"],
        mlp=shape_of(model),
        calibration={"alpha": 1.0, "prior": [0.5, 0.95]},
        recommended={"decision": {"mode": "router", "router": "knn-k25", "alpha": 1.0}},
    )
    art = save_artifact(tmp_path / "art", model, manifest)
    config = art / "routing.yaml"
    config.write_text(
        "models:\n  - {name: small, cost: 0.1}\n  - {name: large, cost: 1.0}\n"
        "auto:\n  artifact: .\n  policy: utility\n  cost_weight: 0.0\n"
    )
    return config


def run_cli(*argv: str) -> int:
    from app.cli.main import main

    return main(["calibrate", *argv])


def served_share(config: Path, prompts: list[dict[str, Any]], model: str) -> float:
    """Route prompts through the auto strategy serving ``config``; ``model``'s share."""
    import asyncio

    from app.cli.replay import replay
    from app.settings import Settings
    from models.core.routing_config import load_routing_config

    settings = Settings.model_validate({"strategy": "auto", "config": str(config)})
    decisions, *_ = asyncio.run(replay(prompts, settings, load_routing_config(config)))
    return sum(d.model == model for d in decisions) / len(decisions)


def test_a_strong_share_calibrated_on_unlabelled_prompts_is_served_on_new_ones(
    router: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = write_jsonl(tmp_path / "p.jsonl", rows_of(difficulties(300, 3), 4, labelled=False))
    new = tmp_path / "elsewhere" / "new.yaml"
    new.parent.mkdir()
    code = run_cli(str(prompts), "--config", str(router), "--strong-model", "large",
                   "--strong-share", "0.25", "--out", str(new))  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "large" in out and "share 2" in out and "predicted quality" in out
    written = yaml.safe_load(new.read_text())
    assert written["auto"]["policy"] == "utility" and written["auto"]["cost_weight"] > 0
    assert (new.parent / written["auto"]["artifact"]).resolve() == router.parent.resolve()
    fresh = rows_of(difficulties(300, seed=9), 10, labelled=False)
    assert served_share(new, fresh, "large") == pytest.approx(0.25, abs=0.08)
    assert served_share(router, fresh, "large") > 0.6  # what it served before


def test_a_budget_from_the_configs_costs_and_from_the_rows_costs(
    router: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = difficulties(300, 5)
    for labelled in (False, True):
        prompts = write_jsonl(tmp_path / f"b{labelled}.jsonl", rows_of(d, 6, labelled=labelled))
        new = tmp_path / f"b{labelled}.yaml"
        assert run_cli(str(prompts), "--config", str(router), "--budget-per-1k", "0.5",
                       "--out", str(new)) == 0  # fmt: skip
        out = capsys.readouterr().out
        source = "row costs" if labelled else "config costs"
        assert source in out and ("expected quality" in out) == labelled
        # half the prompts to large costs 0.55/1k: the point is just under it
        share = served_share(new, rows_of(d, 6, labelled=False), "large")
        assert 0.3 <= share <= 0.45


def test_a_quality_floor_takes_the_cheapest_point_above_it() -> None:
    d = difficulties(400, 7)
    rows = rows_of(d, 8)
    scores = np.array([[r["scores"]["small"], r["scores"]["large"]] for r in rows])
    costs = np.tile([1e-4, 1e-3], (len(d), 1))
    probs = np.stack([1 - d, np.full_like(d, 0.95)], axis=1)
    out = calibrate(probs, np.array([0.1, 1.0]), ["small", "large"], Target("quality", 0.95),
                    scores, costs)  # fmt: skip
    best = out["best_single"]
    assert best["model"] == "large"
    assert out["quality"] >= 0.95 * best["quality"]
    assert out["cost_per_1k"] < 0.8  # far cheaper than always large (1.0)
    lo, hi = out["quality_ci95"]
    assert lo <= out["quality"] <= hi
    # a little higher floor costs more
    higher = calibrate(probs, np.array([0.1, 1.0]), ["small", "large"], Target("quality", 0.99),
                       scores, costs)  # fmt: skip
    assert higher["cost_per_1k"] > out["cost_per_1k"]


def test_a_share_between_reachable_ones_is_read_as_at_most() -> None:
    # two groups of prompts: 20 that lean to large strongly, 80 weakly; shares 0/20/100%
    probs = np.array([[0.2, 0.95]] * 20 + [[0.5, 0.6]] * 80)
    out = calibrate(probs, np.array([0.1, 1.0]), ["small", "large"], Target("share", 0.25, "large"))
    assert out["shares"]["large"]["share"] == 0.2  # at most 25%: the 20% point
    assert "falls between" in out["note"] and "calibrated to 20.0%" in out["note"]
    exact = calibrate(
        probs, np.array([0.1, 1.0]), ["small", "large"], Target("share", 0.2, "large")
    )
    assert "note" not in exact and exact["shares"]["large"]["share"] == 0.2


def test_unreachable_targets_say_what_is_reachable() -> None:
    probs = np.tile([0.2, 0.9], (100, 1))  # every prompt alike: all or nothing to large
    with pytest.raises(CalibrationError, match=r"25% share .* \(nearest shares: 0% and 100%\)"):
        calibrate(probs, np.array([0.1, 1.0]), ["small", "large"], Target("share", 0.25, "large"))
    with pytest.raises(CalibrationError, match="below the cheapest point"):
        calibrate(probs, np.array([0.1, 1.0]), ["small", "large"], Target("budget", 0.05))
    with pytest.raises(CalibrationError, match="needs labelled rows"):
        calibrate(probs, np.array([0.1, 1.0]), ["small", "large"], Target("quality", 0.9))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--strong-model", "large", "--strong-share", "0.3", "--budget-per-1k", "1"],
         "exactly one target.*--strong-model/--strong-share and --budget-per-1k"),
        ([], r"exactly one target.*\(got none\)"),
        (["--strong-model", "huge", "--strong-share", "0.3"], "--strong-model huge: unknown"),
        (["--strong-model", "large", "--strong-share", "1.5"], "between 0 and 1"),
        (["--strong-model", "large"], "go together"),
        (["--budget-per-1k", "0"], "above 0"),
        (["--quality-floor", "0.9"], "needs labelled rows"),
    ],
)  # fmt: skip
def test_bad_targets_are_usage_errors(
    router: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    prompts = write_jsonl(tmp_path / "p.jsonl", rows_of(difficulties(20, 1), 1, labelled=False))
    out = tmp_path / "new.yaml"
    code = run_cli(str(prompts), "--config", str(router), "--out", str(out), *argv)
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_an_intent_config_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "intents.yaml"
    config.write_text(
        "models:\n  - {name: a}\n  - {name: b}\nintents:\n"
        "  - {name: code, description: programming, model: b}\n"
    )
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"text": "hello"}])
    code = run_cli(str(prompts), "--config", str(config), "--strong-model", "b",
                   "--strong-share", "0.3", "--out", str(tmp_path / "new.yaml"))  # fmt: skip
    assert code == 2
    assert "intent-strategy config (no auto.artifact)" in capsys.readouterr().err


def test_a_single_model_artifact_has_nothing_to_calibrate(
    router: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads((router.parent / "manifest.json").read_text())
    manifest["recommended"]["decision"] = {"mode": "single", "model": "large", "alpha": 0.0}
    (router.parent / "manifest.json").write_text(json.dumps(manifest))
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"text": "difficulty 0.3"}])
    code = run_cli(str(prompts), "--config", str(router), "--budget-per-1k", "0.5",
                   "--out", str(tmp_path / "new.yaml"))  # fmt: skip
    assert code == 2
    assert "always routes to large" in capsys.readouterr().err


def test_a_budget_config_is_calibrated_as_the_written_config_serves(
    router: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The input serves a recorded budget whose alpha (0.2) differs from the artifact's
    default (1). The written config drops the budget, so serving uses alpha 1: calibrate
    must score with alpha 1 too, or the served share would not be the calibrated one."""
    manifest = json.loads((router.parent / "manifest.json").read_text())
    manifest["recommended"]["by_budget"] = {
        "0.5": {"router": {"cost_weight": 0.3, "quality": 0.9, "cost_per_1k": 0.5}}
    }
    manifest["calibration"]["budget_alpha"] = {"0.5": 0.2}
    (router.parent / "manifest.json").write_text(json.dumps(manifest))
    config = router.parent / "budget.yaml"
    config.write_text(
        "models:\n  - {name: small, cost: 0.1}\n  - {name: large, cost: 1.0}\n"
        "auto:\n  artifact: .\n  policy: utility\n  budget_per_1k: 0.5\n"
    )
    rows = rows_of(difficulties(300, 11), 12, labelled=False)
    prompts = write_jsonl(tmp_path / "p.jsonl", rows)
    new = tmp_path / "new.yaml"
    assert run_cli(str(prompts), "--config", str(config), "--strong-model", "large",
                   "--strong-share", "0.4", "--out", str(new)) == 0  # fmt: skip
    out = capsys.readouterr().out
    printed = float(re.search(r"large\s+share ([\d.]+)%", out).group(1)) / 100  # type: ignore[union-attr]
    assert "budget_per_1k" not in yaml.safe_load(new.read_text())["auto"]
    assert served_share(new, rows, "large") == pytest.approx(printed, abs=1e-9)
    assert printed == pytest.approx(0.4, abs=0.05)
