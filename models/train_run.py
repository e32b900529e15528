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

from models.artifact import Manifest, encoder_info, save_artifact
from models.embed_cache import embed_cached
from models.encoders import build_encoder
from models.eval_report import PER_1K
from models.evaluation import best_under_budget, sweep
from models.training import TrainConfig, predict, train_router

if TYPE_CHECKING:
    from strategies.base import Conversation

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
    budgets: Sequence[float] = (0.35, 2.0)
    cache_dir: str | None = None
    write_config: bool = False
    vision_models: Sequence[str] = ()
    progress: bool = True
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, models: list[str], *, data_path: Path, data_sha256: str
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
            cache_dir=args.cache_dir or None,
            write_config=args.write_config,
            vision_models=args.vision_models,
            progress=not args.no_progress,
            data={"file": data_path.name, "sha256": data_sha256},
        )


def recommend_cost_weight(
    probs: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    model_costs: np.ndarray,
    budgets: Sequence[float],
) -> dict[str, Any]:
    """On validation rows: the utility policy's curve and, per budget ($/1k), the
    cost_weight with the best quality within it."""
    curve = sweep(probs, scores, costs, model_costs)
    by_budget: dict[str, Any] = {}
    for budget in budgets:
        best = best_under_budget(curve, budget / PER_1K)
        if best is not None:
            by_budget[f"{budget:g}"] = {
                "cost_weight": best["cost_weight"],
                "quality": round(best["quality"], 4),
                "cost_per_1k": round(best["cost"] * PER_1K, 4),
            }
    return {"policy": "utility", "by_budget": by_budget}


def run_training(
    job: TrainJob,
    conversations: Sequence[Conversation],
    scores: np.ndarray,
    costs: np.ndarray | None,
) -> dict[str, Any]:
    """Train and write ``job.out``; returns the report (also written as report.json)."""
    encoder = build_encoder(job.encoder, job.pretrained, job.device, job.max_tokens)
    x = embed_cached(encoder, conversations, job.cache_dir, progress=job.progress)
    result = train_router(x, scores, job.models, job.train, progress=job.progress)
    metrics = dict(result.metrics)
    aucs = [v for v in metrics["val_auc"].values() if v is not None]
    metrics["val_mean_auc"] = round(float(np.mean(aucs)), 4) if aucs else None
    recommended: dict[str, Any] = {}
    model_costs = None
    if costs is not None:
        model_costs = costs[result.train_idx].mean(axis=0) * PER_1K  # config unit: per 1k
        if len(result.val_idx):
            val = result.val_idx
            recommended = recommend_cost_weight(
                predict(result.model, x[val]), scores[val], costs[val], model_costs, job.budgets
            )
    manifest = Manifest(
        encoder={**encoder_info(encoder), "pretrained": job.pretrained},
        models=list(job.models),
        mlp=result.model.cfg.to_dict(),
        training={**job.train.to_dict(), "data": job.data, "n_rows": len(scores)},
        metrics={k: v for k, v in metrics.items() if k != "val_loss_history"},
        recommended=recommended,
    )
    save_artifact(job.out, result.model, manifest)
    report = {**manifest.to_dict(), "metrics": metrics}
    (job.out / REPORT).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if job.write_config:
        write_routing_config(
            job.out / ROUTING, job.models, model_costs, recommended, job.vision_models
        )
    return report


def write_routing_config(
    path: Path,
    models: Sequence[str],
    model_costs: np.ndarray | None,
    recommended: dict[str, Any],
    vision_models: Sequence[str] = (),
) -> Path:
    """A routing config for the artifact in the same directory (``auto.artifact: .``)."""
    import yaml

    by_budget = recommended.get("by_budget", {})
    weights = [v["cost_weight"] for v in by_budget.values()]
    cost_weight = weights[-1] if weights else 0.0  # the last (usually largest) budget
    data = {
        "models": [
            {
                "name": m,
                "cost": round(float(model_costs[j]), 6) if model_costs is not None else 1.0,
                "threshold": 0.5,
                "vision": m in vision_models,
            }
            for j, m in enumerate(models)
        ],
        "auto": {"artifact": ".", "policy": "utility", "cost_weight": round(cost_weight, 6)},
    }
    header = (
        "# Routing config for the router artifact in this directory (written by llm-router\n"
        "# train --write-config). cost: mean USD per 1k prompts in the training data.\n"
        "# cost_weight was chosen on the validation split for the last budget; per budget\n"
        "# (override per request with the router.cost_weight extension field):\n"
        + "".join(
            f"#   <= {b}/1k: cost_weight {v['cost_weight']:.6g}\n" for b, v in by_budget.items()
        )
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
