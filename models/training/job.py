"""One training run end to end: encode (cached) -> train -> pick cost_weight on validation
-> write the artifact, its metrics report and optionally a matching routing config."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from models.encoders.cache import embed_cached
from models.encoders.conversation import build_encoder
from models.evaluation.metrics import best_under_budget, route_by_task
from models.routers.artifact import Manifest, encoder_record, save_artifact
from models.routers.registry import KINDS, shape_of
from models.routers.task_prior import fit_prior, prior_probabilities
from models.training.candidates import (
    fit_final,
    folds_of,
    prior_names,
    validation_predictions,
    validation_priors,
)
from models.training.evidence import MARGIN, MIN_SAVING
from models.training.fit_mlp import TrainConfig, targets
from models.training.operating import FRACTIONS, fraction_budgets, refresh_decision
from models.training.routing_out import write_routing_config
from models.training.selection import (
    GLOBAL,
    PER_1K,
    choose,
    keep_within_budgets,
    sig,
)

if TYPE_CHECKING:
    from models.core.conversation import Conversation
    from models.core.routing_config import RoutingConfig

__all__ = ["TrainJob", "run_training", "train_route_by_task", "write_routing_config"]

REPORT = "report.json"
ROUTING = "routing.yaml"


@dataclass(slots=True)
class TrainJob:
    """What to train and where to write it."""

    models: list[str]
    out: Path
    encoder: str = "minilm"
    pretrained: str | None = None
    device: str = "cpu"
    max_tokens: int | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    budgets: Sequence[float] | None = None  # $/1k; None: fractions of the best model's cost
    fractions: Sequence[float] = FRACTIONS
    margin: float = MARGIN  # non-inferiority margin (quality, 0..1) against the best model
    min_saving: float = MIN_SAVING  # relative cost saving a non-inferior router must make
    base_config: RoutingConfig | None = None  # upstreams etc. copied into routing.yaml
    cache_dir: str | None = None
    write_config: bool = False
    vision_models: Sequence[str] = ()
    progress: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    model: str = "auto"  # mlp, knn or auto (chosen on validation)
    folds: int = 0  # 0: 5-fold CV below 2,000 rows, else one held-out split
    confidence: float = 0.9  # bootstrap P(gain > 0) the router needs over the best single
    prior: str = "auto"  # global, task, cluster or auto (all available, chosen on validation)
    per_budget_alpha: bool = True  # each budget's own alpha (router and prior shared)

    @classmethod
    def from_args(
        cls,
        args: argparse.Namespace,
        models: list[str],
        *,
        data_path: Path,
        data_sha256: str,
        base_config: RoutingConfig | None = None,
    ) -> TrainJob:
        cfg = TrainConfig(
            hidden=tuple(args.hidden),
            dropout=args.dropout,
            norm=args.norm,
            members=args.members,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            patience=args.patience,
            val_fraction=args.val_fraction,
            seed=args.seed,
            soft_labels=args.soft_labels,
            label_threshold=args.label_threshold,
        )
        return cls(
            models=models,
            out=Path(args.out),
            encoder=args.encoder,
            pretrained=args.pretrained,
            device=args.device,
            max_tokens=args.max_tokens,
            train=cfg,
            budgets=args.budgets,
            fractions=args.cost_fractions or FRACTIONS,
            margin=args.margin,
            min_saving=args.min_saving,
            base_config=base_config,
            cache_dir=args.cache_dir or None,
            write_config=args.write_config,
            vision_models=args.vision_models,
            progress=not args.no_progress,
            data={"file": data_path.name, "sha256": data_sha256},
            model=args.model,
            folds=args.folds,
            confidence=args.confidence,
            prior=args.prior,
            per_budget_alpha=args.per_budget_alpha,
        )


@dataclass(slots=True)
class _Validated:
    """What validation saw: the rows scored, every candidate's predictions there, and the
    choice made from them (``choose``'s result)."""

    rows: np.ndarray
    candidates: dict[str, Any]
    chosen: dict[str, Any]
    prior: np.ndarray  # global success rate per model
    model_costs: np.ndarray  # mean cost per 1k prompts
    cost_rows: np.ndarray
    has_costs: bool
    budgets: list[float]  # the $/1k operating points validation chose cost weights for


def _validate(
    job: TrainJob,
    x: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray | None,
    tasks: Sequence[str] | None,
) -> _Validated:
    """Compare candidate routers and priors on validation and choose how far to trust
    the best (never worse than the best single model)."""
    kinds = KINDS if job.model == "auto" else (job.model,)
    val_sets = folds_of(len(x), job.folds, job.train.val_fraction, job.train.seed)
    rows, candidates = validation_predictions(x, scores, job.models, kinds, job.train, val_sets)
    prior_kinds = ("task", "cluster") if job.prior == "auto" else (job.prior,)
    names = [p for p in prior_names(len(x), tasks, prior_kinds) if p != GLOBAL]
    priors = validation_priors(x, scores, tasks, names, job.train, val_sets)
    has_costs = costs is not None
    cost_rows = costs if costs is not None else np.zeros_like(scores)
    model_costs = cost_rows.mean(axis=0) * PER_1K  # config unit: per 1k prompts
    prior = targets(scores, job.train).mean(axis=0)
    budgets, points = _operating_points(job, scores, cost_rows, has_costs)
    chosen = choose(
        candidates,
        prior,
        scores[rows],
        cost_rows[rows],
        model_costs,
        job.models,
        budgets,
        job.confidence,
        priors,
        per_budget="alpha" if job.per_budget_alpha and has_costs else None,
        explicit=job.budgets is not None,
        margin=job.margin,
        min_saving=job.min_saving,
    )
    chosen["validation"] = "holdout" if len(val_sets) == 1 else f"{len(val_sets)}-fold CV"
    if points:
        chosen["operating_points"] = points
        for key, fraction in points.get("fractions", {}).items():
            chosen["by_budget"][key]["fraction"] = fraction
    return _Validated(rows, candidates, chosen, prior, model_costs, cost_rows, has_costs, budgets)


def _operating_points(
    job: TrainJob, scores: np.ndarray, costs: np.ndarray, has_costs: bool
) -> tuple[list[float], dict[str, Any]]:
    """The $/1k budgets to choose operating points for, and how they were set: the job's
    explicit budgets, else fractions of the best single model's mean cost on these rows."""
    if not has_costs:
        return [], {}
    if job.budgets is not None:
        return [float(b) for b in job.budgets], {"basis": "explicit budgets ($/1k)"}
    return fraction_budgets(scores, costs, job.models, job.fractions)


def _calibrate(
    job: TrainJob,
    x: np.ndarray,
    scores: np.ndarray,
    tasks: Sequence[str] | None,
    val: _Validated,
) -> tuple[dict[str, Any], Any]:
    """The served blend: alpha (and each budget's), the prior and, when the router leans
    on it, the task-level prior refitted on every row; then every budget checked again
    with that refitted prior (one that now overspends moves back within it, and the
    served budget is judged again on what will be served)."""
    decision, chosen = val.chosen["decision"], val.chosen
    router = decision["mode"] == "router"
    budget_alpha = {
        b: e["pick"]["alpha"]
        for b, e in chosen["by_budget"].items()
        if e.get("pick") and e.get("router") and router
    }
    task_prior = None
    alphas = [decision["alpha"], *budget_alpha.values()]
    if decision["prior"] != GLOBAL and min(alphas) < 1.0:
        task_prior = fit_prior(
            decision["prior"], x, targets(scores, job.train), tasks, job.train.seed
        )
    if val.has_costs and router:
        rows = val.rows
        prior_rows = val.prior if task_prior is None else prior_probabilities(task_prior, x[rows])
        keep_within_budgets(
            chosen["by_budget"],
            val.candidates,
            prior_rows,
            decision,
            scores[rows],
            val.cost_rows[rows],
            val.model_costs,
            job.models,
        )
        refresh_decision(chosen, explicit=job.budgets is not None)
    calibration: dict[str, Any] = {
        "alpha": decision["alpha"],
        "prior": [round(float(p), 6) for p in val.prior],
        "prior_source": decision["prior"],
    }
    if decision["mode"] != "router":  # the refit check left no winner: a single model
        return calibration, None
    if budget_alpha:  # serving picks one with auto.budget_per_1k
        calibration["budget_alpha"] = budget_alpha
    if task_prior is not None:
        calibration["prior_model"] = task_prior.cfg.to_dict()
    return calibration, task_prior


def run_training(
    job: TrainJob,
    conversations: Sequence[Conversation],
    scores: np.ndarray,
    costs: np.ndarray | None,
    tasks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Embed, compare candidate routers and priors on validation, decide how far to trust
    the chosen one (never worse than the best single model), refit it, and write
    ``job.out``; returns the report (also written as report.json). ``tasks`` (one per row,
    from the data's task/source field) let a task head learn a task-level prior that
    serving predicts from the prompt alone."""
    encoder = build_encoder(job.encoder, job.pretrained, job.device, job.max_tokens)
    x = embed_cached(encoder, conversations, job.cache_dir, progress=job.progress)
    val = _validate(job, x, scores, costs, tasks)
    model, fit_metrics = fit_final(
        val.chosen["decision"]["router"], x, scores, job.models, job.train
    )
    recommended = {"policy": "utility", **val.chosen}
    if tasks is not None and val.has_costs:
        recommended["route_by_task"] = train_route_by_task(
            tasks, scores, val.cost_rows, job.models, val.budgets
        )
    calibration, task_prior = _calibrate(job, x, scores, tasks, val)
    manifest = Manifest(
        encoder={**encoder_record(encoder), "pretrained": job.pretrained},
        models=list(job.models),
        mlp=shape_of(model),
        training={
            **job.train.to_dict(),
            "model": job.model,
            "data": job.data,
            "n_rows": len(scores),
        },
        metrics={k: v for k, v in fit_metrics.items() if k != "val_loss_history"},
        recommended=recommended,
        calibration=calibration,
    )
    save_artifact(job.out, model, manifest, task_prior)
    report = {**manifest.to_dict(), "metrics": fit_metrics}
    (job.out / REPORT).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if job.write_config:
        write_routing_config(
            job.out / ROUTING,
            job.models,
            val.model_costs if val.has_costs else None,
            recommended,
            job.vision_models,
            job.base_config,
        )
    return report


def train_route_by_task(
    tasks: Sequence[str],
    scores: np.ndarray,
    costs: np.ndarray,
    models: Sequence[str],
    budgets: Sequence[float],
) -> dict[str, Any]:
    """The lookup-table baseline chosen on the training rows: per budget, each task's model
    (best training quality within the budget). ``eval`` applies it to the evaluated rows,
    an honest counterpart to route-by-task chosen on the evaluated data."""
    points = route_by_task(tasks, scores, costs)
    out: dict[str, Any] = {}
    for budget in budgets:
        best: dict[str, Any] | None = best_under_budget(points, budget / PER_1K)
        if best is None:
            continue
        out[f"{budget:g}"] = {
            "table": {task: models[int(j)] for task, j in best["table"].items()},
            "quality": round(float(best["quality"]), 4),
            "cost_per_1k": sig(float(best["cost"]) * PER_1K),
        }
    return out
