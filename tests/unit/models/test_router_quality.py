"""Routing quality: kNN router, never-worse-than-single selection, bootstrap intervals,
route-by-task, and the artifact's recorded decision (synthetic data, no encoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.evaluation.report import quality_report  # noqa: E402
from models.routers.artifact import Manifest, load_weights, save_artifact  # noqa: E402
from models.routers.knn import KNNRouter, knn_probabilities, unit  # noqa: E402
from models.routers.registry import shape_of  # noqa: E402
from models.training.selection import choose  # noqa: E402
from strategies.auto.selection import PolicyParams, select  # noqa: E402


def clusters(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two prompt kinds; model 0 answers kind A, model 1 kind B (and A half the time)."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 8)).astype(np.float32) * 0.3
    x[:, 0] += np.where(kind == 0, 2.0, -2.0)
    scores = np.stack([kind == 0, (kind == 1) | (rng.random(n) < 0.5)], axis=1)
    return x, scores.astype(np.float32)


def test_knn_router_averages_its_nearest_neighbours() -> None:
    x, scores = clusters(60)
    model = KNNRouter.fit(x, scores, k=5)
    probe = x[:3] + 0.01
    got = model.probabilities(torch.from_numpy(probe)).numpy()
    sims = unit(probe) @ unit(x).T
    want = knn_probabilities(sims, scores, 5)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got[0, 0] == pytest.approx(1.0) if scores[0, 0] == 1 else got[0, 0] < 0.5


def test_knn_artifact_round_trip_with_shrinkage(tmp_path: Path) -> None:
    x, scores = clusters(40)
    model = KNNRouter.fit(x, scores, k=3)
    prior = [0.5, 0.7]
    manifest = Manifest(
        encoder={"name": "fake", "dim": 8},
        models=["a", "b"],
        mlp=shape_of(model),
        calibration={"alpha": 0.25, "prior": prior},
    )
    save_artifact(tmp_path, model, manifest)
    loaded = load_weights(tmp_path, Manifest.from_dict(manifest.to_dict()))
    raw = model.probabilities(torch.from_numpy(x[:4])).numpy()
    got = loaded.probabilities(torch.from_numpy(x[:4])).numpy()  # type: ignore[operator]
    np.testing.assert_allclose(got, 0.25 * raw + 0.75 * np.array(prior), atol=1e-6)


def test_noise_router_falls_back_to_the_best_single_model() -> None:
    """Two models of equal cost, predictions unrelated to the scores: never worse."""
    rng = np.random.default_rng(1)
    n = 400
    scores = np.stack([rng.random(n) < 0.68, rng.random(n) < 0.64], axis=1).astype(np.float32)
    noise = rng.random((n, 2))
    out = choose({"mlp": noise}, scores.mean(axis=0), scores, np.zeros_like(scores),
                 np.zeros(2), ["good", "worse"], budgets=())  # fmt: skip
    assert out["decision"]["mode"] == "single"
    assert out["decision"]["model"] == "good"
    assert out["decision"]["alpha"] == 0.0
    assert "gain_confidence" in out["by_budget"]["none"] or out["by_budget"]["none"]["router"]


def test_informative_router_is_kept_with_its_evidence() -> None:
    x, scores = clusters(300)
    probs = scores * 0.8 + 0.1  # knows which model answers
    costs = np.tile([1e-3, 1e-3], (len(x), 1))
    out = choose({"knn-k5": probs}, scores.mean(axis=0), scores, costs, np.array([1.0, 1.0]),
                 ["a", "b"], budgets=[2.0])  # fmt: skip
    assert out["decision"]["mode"] == "router" and out["decision"]["alpha"] > 0
    entry = out["by_budget"]["2"]
    assert entry["beats_single"] and entry["gain_confidence"] >= 0.9
    assert entry["router"]["quality"] > entry["single"]["quality"]


def test_fixed_model_wins_whenever_it_is_a_candidate() -> None:
    params = PolicyParams("utility", {}, {"a": 1.0, "b": 0.1}, 0.0, fixed_model="b")
    choice = select({"a": 0.9, "b": 0.1}, ["a", "b"], params)
    assert choice.model == "b" and choice.reason == "single_model"
    assert choice.ranking == ["b", "a"]
    assert select({"a": 0.9}, ["a"], params).model == "a"  # not a candidate: policy decides


def test_quality_report_has_intervals_route_by_task_and_operating_points() -> None:
    x, scores = clusters(200)
    costs = np.tile([2e-3, 1e-3], (len(x), 1)).astype(np.float32)
    tasks = ["A" if s[0] == 1 and s[1] == 0 else "B" for s in scores]
    probs = scores * 0.8 + 0.1
    chosen = ["a" if p[0] > p[1] else "b" for p in probs]
    report = quality_report(
        ["a", "b"], scores, costs, chosen, policy={"name": "utility"},
        model_costs=np.array([2.0, 1.0]), probs=probs, budgets=[1.5, 2.0], tasks=tasks,
        budget_weights={"2": 0.0},
    )  # fmt: skip
    lo, hi = report["policy"]["quality_ci95"]
    assert lo <= report["policy"]["quality"] <= hi
    clo, chi = report["policy"]["cost_per_1k_ci95"]
    assert clo <= report["policy"]["cost_per_1k"] <= chi
    assert report["route_by_task"]["frontier"]
    assert report["operating_points"]["2"]["quality"] == pytest.approx(1.0)
    assert report["vs_best_single"]["gain"] > 0
    assert report["baselines"]["oracle"]["quality"] == pytest.approx(1.0)


class _FakeEncoder:
    name, version, dim, fingerprint, supports_images = "fake", "v1", 8, "f" * 16, False


def test_training_records_the_decision_and_falls_back_on_noise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~400 rows, two models of equal cost, embeddings unrelated to the scores: the
    artifact must say 'always the better model' (the issue's 0.656 vs 0.676 case)."""
    import json

    from models.training import job as train_run
    from models.training.fit_mlp import TrainConfig

    rng = np.random.default_rng(3)
    n = 400
    x = rng.normal(size=(n, 8)).astype(np.float32)
    scores = np.stack([rng.random(n) < 0.68, rng.random(n) < 0.62], axis=1).astype(np.float32)
    monkeypatch.setattr(train_run, "build_encoder", lambda *a, **k: _FakeEncoder())
    monkeypatch.setattr(train_run, "embed_cached", lambda enc, convs, *a, **k: x)
    job = train_run.TrainJob(
        models=["good", "worse"], out=tmp_path / "art", progress=False, write_config=True,
        train=TrainConfig(hidden=(8,), epochs=3, patience=2),
    )  # fmt: skip
    report = train_run.run_training(job, [None] * n, scores, None)  # type: ignore[list-item]
    decision = report["recommended"]["decision"]
    assert decision["mode"] == "single" and decision["model"] == "good"
    assert report["recommended"]["validation"] == "5-fold CV"
    assert {a["candidate"] for a in report["recommended"]["alternatives"]} >= {"mlp", "knn-k5"}
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["recommended"]["decision"] == decision
    assert manifest["calibration"]["alpha"] == 0.0
