"""Task-level priors (task head, k-means clusters): fitting, selection on validation, the
artifact round trip, and that serving (the auto strategy) uses the stored prior."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from models.routers.artifact import ArtifactError, Manifest, load_weights, save_artifact  # noqa: E402
from models.routers.mlp import MLPConfig, RouterMLP  # noqa: E402
from models.routers.registry import shape_of  # noqa: E402
from models.routers.task_prior import (  # noqa: E402
    ClusterPrior,
    TaskHeadPrior,
    fit_clusters,
    fit_task_head,
    prior_probabilities,
)
from models.training.selection import choose  # noqa: E402

DIM = 8


def three_tasks(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Three prompt kinds along separate axes; model j answers kind j 90% of the time and
    the others 30%; nothing inside a kind predicts success."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)
    x = rng.normal(size=(n, DIM)).astype(np.float32) * 0.2
    x[np.arange(n), kind] += 3.0
    good = np.where(np.arange(3)[None, :] == kind[:, None], 0.9, 0.3)
    scores = (rng.random((n, 3)) < good).astype(np.float32)
    return x, scores, [f"task{k}" for k in kind], kind


def test_task_head_predicts_the_task_and_its_mean_scores() -> None:
    x, scores, tasks, kind = three_tasks(600)
    head = fit_task_head(x, scores, tasks)
    with torch.inference_mode():
        p_task = head.task_probabilities(torch.from_numpy(x)).numpy()
    assert (p_task.argmax(axis=1) == kind).mean() > 0.98
    prior = prior_probabilities(head, x)
    for k in range(3):
        np.testing.assert_allclose(prior[kind == k].mean(axis=0), scores[kind == k].mean(axis=0),
                                   atol=0.03)  # fmt: skip
    assert head.cfg.labels == ["task0", "task1", "task2"]


def test_two_tasks_use_the_binary_head_correctly() -> None:
    x, scores, tasks, kind = three_tasks(400)
    keep = kind < 2
    head = fit_task_head(x[keep], scores[keep], [t for t, k in zip(tasks, keep, strict=True) if k])
    with torch.inference_mode():
        p_task = head.task_probabilities(torch.from_numpy(x[keep])).numpy()
    assert p_task.shape[1] == 2 and (p_task.argmax(axis=1) == kind[keep]).mean() > 0.98


def test_clusters_find_the_kinds_without_labels() -> None:
    x, scores, _, kind = three_tasks(600)
    prior = prior_probabilities(fit_clusters(x, scores, 3), x)
    assert (prior.argmax(axis=1) == kind).mean() > 0.98


def test_selection_prefers_an_informative_task_prior_over_noise() -> None:
    x, scores, tasks, _ = three_tasks(900, seed=1)
    noise = np.random.default_rng(2).random(scores.shape)
    task_prior = prior_probabilities(fit_task_head(x, scores, tasks), x)
    costs = np.full_like(scores, 1e-3)
    out = choose({"mlp": noise}, scores.mean(axis=0), scores, costs, np.ones(3), ["a", "b", "c"],
                 budgets=[2.0], priors={"task": task_prior})  # fmt: skip
    decision = out["decision"]
    assert decision["mode"] == "router" and decision["prior"] == "task"
    assert decision["alpha"] < 0.5  # the noisy per-prompt part is not trusted
    assert out["by_budget"]["2"]["router"]["quality"] > 0.85


def _blend_artifact(tmp_path: Path, prior: ClusterPrior | TaskHeadPrior, alpha: float) -> Path:
    base = RouterMLP(MLPConfig(in_dim=DIM, n_out=3, hidden=(4,)))
    with torch.no_grad():  # the router alone always prefers model "a"
        for param in base.parameters():
            param.zero_()
        base.members[0][-1].bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    manifest = Manifest(
        encoder={"name": "fake", "version": "v1", "dim": DIM, "fingerprint": "f" * 16},
        models=["a", "b", "c"],
        mlp=shape_of(base),
        calibration={
            "alpha": alpha,
            "prior": [0.5, 0.5, 0.5],
            "prior_source": "cluster-k3",
            "prior_model": prior.cfg.to_dict(),
        },
        recommended={"decision": {"mode": "router", "router": "mlp", "alpha": alpha}},
    )
    return save_artifact(tmp_path / "art", base, manifest, prior)


def test_artifact_round_trip_serves_the_blend(tmp_path: Path) -> None:
    x, scores, _, _ = three_tasks(300)
    prior = fit_clusters(x, scores, 3)
    path = _blend_artifact(tmp_path, prior, 0.25)
    manifest = Manifest.from_dict(json.loads((path / "manifest.json").read_text()))
    loaded = load_weights(path, manifest)
    probe = torch.from_numpy(x[:20])
    with torch.inference_mode():
        got = loaded.probabilities(probe).numpy()  # type: ignore[operator]
        raw = loaded.base.probabilities(probe).numpy()  # type: ignore[union-attr,operator]
    want = 0.25 * raw + 0.75 * prior_probabilities(prior, x[:20])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(got, 0.25 * raw + 0.75 * 0.5, atol=1e-3)  # the global prior differs


def test_a_recorded_prior_without_its_tensors_is_refused(tmp_path: Path) -> None:
    x, scores, _, _ = three_tasks(300)
    path = _blend_artifact(tmp_path, fit_clusters(x, scores, 3), 0.5)
    manifest = Manifest.from_dict(json.loads((path / "manifest.json").read_text()))
    base = RouterMLP(MLPConfig(in_dim=DIM, n_out=3, hidden=(4,)))
    save_artifact(path, base, manifest)  # weights without the prior. tensors
    with pytest.raises(ArtifactError, match=r"prior|centroids|means"):
        load_weights(path, manifest)


class _Encoder:
    """Embeds 'kind<k>' texts onto axis k (the artifact's clusters)."""

    name, version, dim, fingerprint, supports_images = "fake", "v1", DIM, "f" * 16, False

    def embed(self, conversations: list[Any]) -> np.ndarray:
        out = np.zeros((len(conversations), DIM), dtype=np.float32)
        for i, conv in enumerate(conversations):
            out[i, int(conv.latest_user_text().removeprefix("kind"))] = 3.0
        return out


def test_auto_strategy_routes_by_the_stored_prior(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alpha 0: the served probabilities are the prompt's cluster means, so each kind of
    prompt goes to the model that answers it; ignoring the prior would not."""
    from app.metrics import RouterMetrics
    from app.settings import Settings
    from models.core.conversation import Conversation
    from models.core.routing_config import load_routing_config
    from models.encoders import conversation as encoders
    from models.training.job import write_routing_config
    from strategies.auto.strategy import AutoStrategy
    from strategies.base import StrategyContext

    x, scores, _, _ = three_tasks(600)
    path = _blend_artifact(tmp_path, fit_clusters(x, scores, 3), 0.0)
    config_file = write_routing_config(path / "routing.yaml", ["a", "b", "c"], np.ones(3), {})
    monkeypatch.setattr(encoders, "build_encoder", lambda *a, **k: _Encoder())
    settings = Settings.model_validate({"strategy": "auto", "config": str(config_file)})
    context = StrategyContext(settings=settings, config=load_routing_config(config_file),
                              metrics=RouterMetrics())  # fmt: skip
    strategy = AutoStrategy(context)
    strategy._load()
    probs = strategy.score_batch([Conversation.from_text(f"kind{k}") for k in range(3)])
    assert [int(np.argmax(p)) for p in probs] == [0, 1, 2]


def test_training_with_tasks_ships_a_task_level_prior(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows with a task field: the artifact carries the chosen prior (manifest + tensors)
    and route-by-task chosen on train, which eval applies to the evaluated rows."""
    from safetensors.torch import load_file

    from models.evaluation.report import quality_report
    from models.training import job as train_run
    from models.training.fit_mlp import TrainConfig

    x, scores, tasks, _ = three_tasks(600, seed=4)
    costs = np.full_like(scores, 1e-3)
    monkeypatch.setattr(train_run, "build_encoder", lambda *a, **k: _Encoder())
    monkeypatch.setattr(train_run, "embed_cached", lambda enc, convs, *a, **k: x)
    job = train_run.TrainJob(
        models=["a", "b", "c"], out=tmp_path / "art", progress=False, budgets=[2.0],
        train=TrainConfig(hidden=(8,), epochs=3, patience=2),
    )  # fmt: skip
    report = train_run.run_training(job, [None] * len(x), scores, costs, tasks)  # type: ignore[list-item]
    decision = report["recommended"]["decision"]
    assert decision["mode"] == "router" and decision["prior"] != "global"
    calibration = report["calibration"]
    assert calibration["prior_source"] == decision["prior"] and calibration["prior_model"]
    assert any(
        k.startswith("prior.") for k in load_file(str(tmp_path / "art" / "weights.safetensors"))
    )
    manifest = Manifest.from_dict(json.loads((tmp_path / "art" / "manifest.json").read_text()))
    probs = prior_probabilities(load_weights(tmp_path / "art", manifest), x)
    assert (scores[np.arange(len(x)), probs.argmax(axis=1)]).mean() > 0.8
    tables = report["recommended"]["route_by_task"]
    assert tables["2"]["table"] == {"task0": "a", "task1": "b", "task2": "c"}
    chosen = ["abc"[int(j)] for j in probs.argmax(axis=1)]
    evaluated = quality_report(
        ["a", "b", "c"], scores, costs, chosen, policy={"name": "utility"},
        model_costs=np.ones(3), probs=probs, tasks=tasks, budgets=[2.0],
        train_task_tables=tables, budget_weights={"2": 0.0},
    )  # fmt: skip
    on_train = evaluated["route_by_task"]["chosen_on_train"]["2"]
    best = scores[np.arange(len(x)), [int(t[-1]) for t in tasks]].mean()
    assert on_train["quality"] == pytest.approx(best, abs=1e-4)
    vs = evaluated["operating_points"]["2"]["vs_route_by_task_train"]
    got = evaluated["operating_points"]["2"]["quality"]
    assert vs["gain"] == pytest.approx(got - on_train["quality"], abs=1e-3)
    assert vs["gain_ci95"][0] <= vs["gain"] <= vs["gain_ci95"][1]


def test_an_artifact_without_a_prior_still_loads(tmp_path: Path) -> None:
    """Artifacts written before task-level priors (no prior. tensors, no prior_model, no
    calibration at all): the format the shipped RouterBench artifact had until issue 21
    re-trained it with a cluster prior."""
    from models.routers.artifact import read_manifest

    base = RouterMLP(MLPConfig(in_dim=384, n_out=3, hidden=(8,)))
    old = Manifest(
        encoder={"name": "minilm", "version": "all-MiniLM-L6-v2", "dim": 384},
        models=["a", "b", "c"],
        mlp=shape_of(base),
        recommended={"policy": "utility", "by_budget": {"2": {"cost_weight": 0.02}}},
    )
    save_artifact(tmp_path / "old", base, old)
    manifest = read_manifest(tmp_path / "old")
    assert "prior_model" not in manifest.calibration
    model = load_weights(tmp_path / "old", manifest)
    assert isinstance(model, RouterMLP)
    with torch.inference_mode():
        p = model.probabilities(torch.zeros(2, 384))
    assert p.shape == (2, len(manifest.models))
