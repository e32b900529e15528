"""Shrinkage chosen per budget: selection on validation, the artifact round trip, serving
one budget's alpha and cost_weight (``auto.budget_per_1k``), config errors, and eval
scoring each budget with its own alpha."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from models.routers.artifact import (  # noqa: E402
    ArtifactError,
    Manifest,
    budget_operating_point,
    load_weights,
    save_artifact,
)
from models.routers.mlp import MLPConfig, RouterMLP  # noqa: E402
from models.routers.registry import shape_of  # noqa: E402
from models.routers.task_prior import fit_clusters, prior_probabilities  # noqa: E402
from models.training.selection import choose  # noqa: E402

DIM = 8
COST = 1e-3  # the expensive model's cost per prompt: 1 $/1k


def two_tasks(n: int = 400) -> dict[str, Any]:
    """Model 0 is free, model 1 costs 1 $/1k and always answers. Task A (half the rows):
    model 0 never answers. Task B: model 0 answers the "easy" half. The router knows
    exactly which B rows are easy; the task prior only knows B's rate (0.5).

    At 0.51 $/1k (model 1 for half the rows) sending A to model 1 is all there is: every
    blend with the prior scores 0.75, so one-SE takes the prior alone (alpha 0). At 0.76
    $/1k B's hard rows can go to model 1 too, which needs the router (alpha > 0): 1.0."""
    task_b = np.arange(n) % 2 == 1
    easy = task_b & (np.arange(n) % 4 == 1)
    scores = np.stack([easy.astype(np.float32), np.ones(n, np.float32)], axis=1)
    costs = np.tile(np.array([0.0, COST], np.float32), (n, 1))
    router = np.stack([easy.astype(np.float64), np.ones(n)], axis=1)
    task_prior = np.where(task_b[:, None], [0.5, 1.0], [0.0, 1.0])
    return {"scores": scores, "costs": costs, "router": router, "task": task_prior}


def _choose(data: dict[str, Any], per_budget: str | None) -> dict[str, Any]:
    return choose(
        {"knn-k5": data["router"]}, data["scores"].mean(axis=0), data["scores"], data["costs"],
        np.array([0.0, COST * 1000]), ["free", "paid"], [0.51, 0.76], 0.9,
        {"task": data["task"]}, per_budget=per_budget,
    )  # fmt: skip


def test_each_budget_gets_its_own_alpha_on_validation() -> None:
    data = two_tasks()
    one = _choose(data, None)
    assert (one["decision"]["prior"], one["decision"]["alpha"]) == ("task", 0.1)
    assert all("pick" not in e for e in one["by_budget"].values())
    per = _choose(data, "alpha")
    assert per["decision"] == one["decision"]  # the one-for-all blend stays the default
    tight, loose = per["by_budget"]["0.51"], per["by_budget"]["0.76"]
    assert tight["pick"] == {
        "router": "knn-k5", "prior": "task", "alpha": 0.0, "validation_quality": 0.75,
    }  # fmt: skip
    assert (loose["pick"]["alpha"], loose["pick"]["validation_quality"]) == (0.1, 1.0)
    assert tight["router"]["quality"] == 0.75 and loose["router"]["quality"] == 1.0
    # the alternatives carry each budget's quality, the evidence for the picks
    row = next(r for r in per["alternatives"] if r["prior"] == "task" and r["alpha"] == 0.0)
    assert row["budget_quality"] == [0.75, 0.75]


def test_per_budget_must_be_a_known_kind() -> None:
    with pytest.raises(ValueError, match="per_budget"):
        _choose(two_tasks(), "cost")


def _artifact(tmp_path: Path, budget_alpha: dict[str, float] | None) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    kind = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, DIM)).astype(np.float32) * 0.2
    x[np.arange(300), kind] += 3.0
    scores = (kind[:, None] == np.arange(3)[None, :]).astype(np.float32)
    prior = fit_clusters(x, scores, 3)
    base = RouterMLP(MLPConfig(in_dim=DIM, n_out=3, hidden=(4,)))
    with torch.no_grad():  # the router alone always prefers model "a"
        for param in base.parameters():
            param.zero_()
        base.members[0][-1].bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    calibration: dict[str, Any] = {
        "alpha": 0.5, "prior": [0.5, 0.5, 0.5], "prior_source": "cluster-k3",
        "prior_model": prior.cfg.to_dict(),
    }  # fmt: skip
    if budget_alpha is not None:
        calibration["budget_alpha"] = budget_alpha
    by_budget = {
        b: {"router": {"cost_weight": w, "quality": 0.9, "cost_per_1k": 1.0}}
        for b, w in (("0.35", 0.3), ("2", 0.01))
    }
    manifest = Manifest(
        encoder={"name": "fake", "version": "v1", "dim": DIM, "fingerprint": "f" * 16},
        models=["a", "b", "c"],
        mlp=shape_of(base),
        calibration=calibration,
        recommended={
            "decision": {"mode": "router", "router": "mlp", "alpha": 0.5},
            "by_budget": by_budget,
        },
    )
    return save_artifact(tmp_path / "art", base, manifest, prior), x


def _read(path: Path) -> Manifest:
    return Manifest.from_dict(json.loads((path / "manifest.json").read_text()))


def test_artifact_round_trip_serves_each_budgets_alpha(tmp_path: Path) -> None:
    path, x = _artifact(tmp_path, {"0.35": 0.0, "2": 1.0})
    manifest = _read(path)
    assert manifest.calibration["budget_alpha"] == {"0.35": 0.0, "2": 1.0}
    assert budget_operating_point(manifest, 0.35) == (0.0, 0.3)
    assert budget_operating_point(manifest, 2.0) == (1.0, 0.01)
    probe = torch.from_numpy(x[:30])
    with torch.inference_mode():
        default = load_weights(path, manifest).probabilities(probe).numpy()
        tight = load_weights(path, manifest, alpha=0.0).probabilities(probe).numpy()
        loose = load_weights(path, manifest, alpha=1.0).probabilities(probe).numpy()
        raw = load_weights(path, manifest).base.probabilities(probe).numpy()
    cluster = prior_probabilities(fit_clusters(x, np.eye(3)[x[:, :3].argmax(1)], 3), x[:30])
    np.testing.assert_allclose(tight.argmax(1), cluster.argmax(1))  # the prior alone
    np.testing.assert_allclose(loose, raw, atol=1e-6)  # the router alone
    np.testing.assert_allclose(default, 0.5 * raw + 0.5 * tight, atol=1e-6)


def test_old_artifacts_serve_a_budget_with_their_one_alpha(tmp_path: Path) -> None:
    path, _ = _artifact(tmp_path, None)
    assert budget_operating_point(_read(path), 2) == (0.5, 0.01)


def test_a_budget_the_artifact_did_not_record_is_refused(tmp_path: Path) -> None:
    path, _ = _artifact(tmp_path, {"0.35": 0.0, "2": 1.0})
    with pytest.raises(ArtifactError, match=r"budget_per_1k 1 .*recorded \$/1k budgets: 0\.35, 2"):
        budget_operating_point(_read(path), 1.0)


class _Encoder:
    """Embeds 'kind<k>' texts onto axis k (the artifact's clusters), others to zeros."""

    name, version, dim, fingerprint, supports_images = "fake", "v1", DIM, "f" * 16, False

    def embed(self, conversations: list[Any]) -> np.ndarray:
        out = np.zeros((len(conversations), DIM), dtype=np.float32)
        for i, conv in enumerate(conversations):
            text = conv.latest_user_text()
            if text.startswith("kind"):  # anything else (warm-up) embeds to zeros
                out[i, int(text.removeprefix("kind"))] = 3.0
        return out


def _strategy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auto: str) -> Any:
    from app.metrics import RouterMetrics
    from app.settings import Settings
    from models.core.routing_config import load_routing_config
    from models.encoders import conversation as encoders
    from strategies.auto.strategy import AutoStrategy
    from strategies.base import StrategyContext

    config_file = tmp_path / "art" / "routing.yaml"
    config_file.write_text(
        "models:\n  - {name: a, cost: 1.0}\n  - {name: b, cost: 1.0}\n  - {name: c, cost: 1.0}\n"
        f"auto:\n  artifact: .\n  policy: utility\n{auto}"
    )
    monkeypatch.setattr(encoders, "build_encoder", lambda *a, **k: _Encoder())
    settings = Settings.model_validate({"strategy": "auto", "config": str(config_file)})
    context = StrategyContext(settings=settings, config=load_routing_config(config_file),
                              metrics=RouterMetrics())  # fmt: skip
    return AutoStrategy(context)


def test_the_auto_strategy_serves_the_configured_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 0.35 (alpha 0) each kind goes to its cluster's model; at 2 (alpha 1) the router
    alone prefers "a" everywhere; without a budget the recorded one alpha (0.5) serves."""
    from models.core.conversation import Conversation

    _artifact(tmp_path, {"0.35": 0.0, "2": 1.0})
    convs = [Conversation.from_text(f"kind{k}") for k in range(3)]
    picks = {}
    for label, auto in (("0.35", "  budget_per_1k: 0.35\n"), ("2", "  budget_per_1k: 2\n"),
                        ("none", "")):  # fmt: skip
        strategy = _strategy(tmp_path, monkeypatch, auto)
        strategy._load()
        picks[label] = [int(np.argmax(p)) for p in strategy.score_batch(convs)]
        if label == "0.35":
            assert strategy.cost_weight == 0.3
        if label == "none":
            assert strategy.cost_weight == 0.0
    assert picks["0.35"] == [0, 1, 2]
    assert picks["2"] == [0, 0, 0]
    assert picks["none"] == [0, 1, 2]  # alpha 0.5: the clusters outweigh the router


def test_an_unrecorded_budget_is_a_startup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strategies.auto.strategy import AutoStrategyError

    _artifact(tmp_path, {"0.35": 0.0, "2": 1.0})
    strategy = _strategy(tmp_path, monkeypatch, "  budget_per_1k: 0.5\n")
    with pytest.raises(AutoStrategyError, match=r"budget_per_1k 0\.5 .*0\.35, 2"):
        strategy._load()


@pytest.mark.parametrize(
    ("auto", "message"),
    [
        ("  budget_per_1k: 2\n  cost_weight: 0.1\n", "budget_per_1k .* or cost_weight, not both"),
        ("  budget_per_1k: 0\n", "budget_per_1k"),
        ("  budget_per_1k: cheap\n", "budget_per_1k"),
    ],
)
def test_bad_budget_settings_are_config_errors(tmp_path: Path, auto: str, message: str) -> None:
    from models.core.errors import ConfigError
    from models.core.routing_config import load_routing_config

    path = tmp_path / "routing.yaml"
    path.write_text(f"models:\n  - {{name: a}}\nauto:\n  artifact: x\n{auto}")
    with pytest.raises(ConfigError, match=message):
        load_routing_config(path)


def test_training_records_per_budget_alphas_and_writes_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``llm-router train``: the manifest holds each budget's pick and alpha, and the written
    routing config serves the last budget with auto.budget_per_1k."""
    import yaml

    from models.training import job as train_run
    from models.training.fit_mlp import TrainConfig

    rng = np.random.default_rng(3)
    n = 400
    kind = rng.integers(0, 3, n)
    x = rng.normal(size=(n, DIM)).astype(np.float32) * 0.2
    x[np.arange(n), kind] += 3.0
    good = np.where(np.arange(3)[None, :] == kind[:, None], 0.9, 0.3)
    scores = (rng.random((n, 3)) < good).astype(np.float32)
    costs = np.tile(np.array([0.2e-3, 1e-3, 3e-3], np.float32), (n, 1))
    monkeypatch.setattr(train_run, "build_encoder", lambda *a, **k: _Encoder())
    monkeypatch.setattr(train_run, "embed_cached", lambda enc, convs, *a, **k: x)
    job = train_run.TrainJob(
        models=["a", "b", "c"], out=tmp_path / "art", progress=False, budgets=[0.5, 2.0],
        train=TrainConfig(hidden=(8,), epochs=3, patience=2), model="knn", write_config=True,
    )  # fmt: skip
    report = train_run.run_training(job, [None] * n, scores, costs, [f"t{k}" for k in kind])  # type: ignore[list-item]
    by_budget = report["recommended"]["by_budget"]
    alphas = report["calibration"]["budget_alpha"]
    assert set(alphas) == {"0.5", "2"}
    assert all(alphas[b] == by_budget[b]["pick"]["alpha"] for b in alphas)
    config = yaml.safe_load((tmp_path / "art" / "routing.yaml").read_text())
    assert config["auto"] == {"artifact": ".", "policy": "utility", "budget_per_1k": 2.0}
    manifest = _read(tmp_path / "art")
    assert budget_operating_point(manifest, 2.0) == (
        alphas["2"], by_budget["2"]["router"]["cost_weight"],
    )  # fmt: skip
    job.per_budget_alpha = False
    job.out = tmp_path / "one"
    report = train_run.run_training(job, [None] * n, scores, costs, [f"t{k}" for k in kind])  # type: ignore[list-item]
    assert "budget_alpha" not in report["calibration"]


def test_eval_scores_each_budget_with_its_own_alpha() -> None:
    """quality_report: a budget with its own probabilities is scored with them (and says
    its alpha); others use the served probabilities."""
    from models.evaluation.report import quality_report

    data = two_tasks()
    scores, costs = data["scores"], data["costs"]
    prior_only, blended = data["task"], 0.1 * data["router"] + 0.9 * data["task"]
    chosen = ["paid"] * len(scores)
    report = quality_report(
        ["free", "paid"], scores, costs, chosen, policy={"name": "utility"},
        model_costs=np.array([0.0, 1.0]), probs=blended,
        budget_weights={"0.76": 0.48, "0.51": 0.48}, budget_probs={"0.51": prior_only},
        budget_alpha={"0.51": 0.0, "0.76": 0.1},
    )  # fmt: skip
    points = report["operating_points"]
    # cost_weight 0.48: the blend's gain from "paid" is 1 on A, 0.55 on B's hard rows and
    # 0.45 on its easy ones (which stay free); the prior alone gains 0.5 on every B row
    assert points["0.76"]["quality"] == 1.0 and points["0.76"]["cost_per_1k"] == 0.75
    assert points["0.51"]["quality"] == 1.0 and points["0.51"]["cost_per_1k"] == 1.0
    assert (points["0.51"]["alpha"], points["0.76"]["alpha"]) == (0.0, 0.1)


def test_llm_router_eval_replays_each_budget_with_its_alpha(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluate_quality with a config serving 2 $/1k (alpha 1: the router prefers "a"
    everywhere): the 0.35 operating point is scored with alpha 0 (each kind to its own
    model, quality 1.0), not with the served probabilities (quality 1/3)."""
    import asyncio

    from app.cli.replay import evaluate_quality
    from app.settings import Settings
    from models.core.routing_config import load_routing_config

    _artifact(tmp_path, {"0.35": 0.0, "2": 1.0})
    _strategy(tmp_path, monkeypatch, "  budget_per_1k: 2\n")  # writes the config
    config_file = tmp_path / "art" / "routing.yaml"
    rows = [
        {
            "messages": [{"role": "user", "content": f"kind{k}"}],
            "scores": {m: float(j == k) for j, m in enumerate("abc")},
            "costs": {m: 1e-3 for m in "abc"},
        }
        for k in (0, 1, 2) * 4
    ]
    settings = Settings.model_validate({"strategy": "auto", "config": str(config_file)})
    config = load_routing_config(config_file)
    report = asyncio.run(evaluate_quality(rows, settings, config, [0.35, 2.0], "rows"))
    points = report["operating_points"]
    assert report["policy"]["quality"] == pytest.approx(1 / 3, abs=1e-4)  # served: budget 2
    assert (report["policy"]["budget_per_1k"], report["policy"]["cost_weight"]) == (2.0, 0.01)
    assert (points["2"]["alpha"], points["2"]["quality"]) == (1.0, pytest.approx(1 / 3, abs=1e-4))
    assert (points["0.35"]["alpha"], points["0.35"]["quality"]) == (0.0, 1.0)


def test_eval_cost_weight_with_a_budget_config_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli.main import main

    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}],
                                "scores": {"a": 1.0}}) + "\n")  # fmt: skip
    config = tmp_path / "routing.yaml"
    config.write_text("models:\n  - {name: a}\nauto:\n  artifact: x\n  budget_per_1k: 2\n")
    code = main(["eval", str(data), "--strategy", "auto", "--config", str(config),
                 "--cost-weight", "0.1"])  # fmt: skip
    assert code != 0
    assert "budget_per_1k 2" in capsys.readouterr().err


def test_a_refitted_prior_that_overspends_moves_the_budget_back_inside() -> None:
    """Validation chose each budget's cost_weight with the fold priors. If the refitted
    prior now sends more prompts to the paid model, the point is over the budget on the
    very rows it was chosen on; the check moves cost_weight to the best point within it.
    A point still within its budget keeps what validation chose."""
    from models.training.selection import keep_within_budgets

    data = two_tasks()
    chosen = _choose(data, "alpha")
    by_budget = chosen["by_budget"]
    assert by_budget["0.51"]["pick"]["alpha"] == 0.0
    before = {b: dict(e["router"]) for b, e in by_budget.items()}
    # the refitted prior: task B now looks as hopeless for the free model as task A
    refit = np.tile([0.0, 1.0], (len(data["scores"]), 1))
    keep_within_budgets(
        by_budget, {"knn-k5": data["router"]}, refit, chosen["decision"], data["scores"],
        data["costs"], np.array([0.0, COST * 1000]),
    )  # fmt: skip
    low = by_budget["0.51"]
    assert low["refit_check"]["cost_per_1k"] > 0.51  # everything went to the paid model
    assert low["refit_check"]["moved_cost_weight_from"] == before["0.51"]["cost_weight"]
    assert low["router"]["cost_weight"] > before["0.51"]["cost_weight"]
    assert low["router"]["cost_per_1k"] <= 0.51
    for budget, entry in by_budget.items():
        assert entry["router"]["cost_per_1k"] <= float(budget)
    # the prior validation used: nothing moves
    again = _choose(data, "alpha")
    kept = {b: dict(e["router"]) for b, e in again["by_budget"].items()}
    keep_within_budgets(
        again["by_budget"], {"knn-k5": data["router"]}, data["task"], again["decision"],
        data["scores"], data["costs"], np.array([0.0, COST * 1000]),
    )  # fmt: skip
    for budget, entry in again["by_budget"].items():
        assert "moved_cost_weight_from" not in entry["refit_check"]
        assert entry["router"] == kept[budget]
