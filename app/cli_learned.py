"""CLI for the learned (auto) router: ``llm-router train`` and quality/cost ``eval``.

Data: JSONL lines ``{"messages": [...], "scores": {model: 0..1}, "costs": {model: cost}}``
(``costs`` optional). Rows are normalised exactly as the HTTP edge does.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from models.embed_cache import DEFAULT_CACHE_DIR

if TYPE_CHECKING:
    from app.config import RoutingConfig
    from app.settings import Settings
    from strategies.base import Conversation

DEFAULT_BUDGETS = "0.35,2.0"


def score_matrix(
    rows: list[dict[str, Any]], models: list[str], path: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores [n, m] and costs [n, m] (None when no row has costs); every row must score
    every model."""
    scores = np.zeros((len(rows), len(models)), dtype=np.float32)
    costs = np.zeros_like(scores)
    has_costs = any("costs" in r for r in rows)
    for i, row in enumerate(rows):
        got = row.get("scores")
        if not isinstance(got, dict):
            raise ValueError(f"{path}: row {i + 1} has no 'scores' object")
        missing = [m for m in models if m not in got]
        if missing:
            raise ValueError(f"{path}: row {i + 1} has no score for {missing}")
        scores[i] = [float(got[m]) for m in models]
        if has_costs:
            row_costs = row.get("costs") or {}
            if any(m not in row_costs for m in models):
                raise ValueError(f"{path}: row {i + 1} lacks costs for some models")
            costs[i] = [float(row_costs[m]) for m in models]
    return scores, costs if has_costs else None


async def _conversations(rows: list[dict[str, Any]], settings: Settings) -> list[Conversation]:
    from app.evaluate import conversation_of

    return [await conversation_of(row, settings) for row in rows]


def conversations(rows: list[dict[str, Any]], settings: Settings) -> list[Conversation]:
    """Normalise every row's messages (images decoded, limits applied)."""
    return asyncio.run(_conversations(rows, settings))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


# -- train -----------------------------------------------------------------------------


def add_train_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``train`` on the top-level subparsers."""
    p = sub.add_parser("train", help="train a router artifact on quality-labelled JSONL")
    p.add_argument("data", help="JSONL: messages + per-model scores (+ optional costs)")
    p.add_argument("--out", required=True, help="artifact directory to write")
    p.add_argument("--encoder", default="minilm", help="'minilm' or 'open_clip:<model>'")
    p.add_argument("--pretrained", help="open_clip pretrained tag or local checkpoint path")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--max-tokens", type=int, help="text budget in tokens (default: encoder's)")
    p.add_argument("--epochs", type=int, default=100, help="max epochs (early stopping)")
    p.add_argument("--patience", type=int, default=8, help="epochs without val improvement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--hidden", type=ints, default=(256, 128), help="e.g. 256,128")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--norm", choices=["layernorm", "batchnorm", "none"], default="layernorm")
    p.add_argument("--members", type=int, default=1, help="ensemble size (seeds)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--soft-labels", action="store_true", help="scores as soft BCE targets")
    p.add_argument("--label-threshold", type=float, default=0.5)
    p.add_argument(
        "--budgets",
        type=floats,
        default=floats(DEFAULT_BUDGETS),
        help="cost-per-1k budgets for which to pick cost_weight on validation",
    )
    p.add_argument(
        "--cache-dir",
        default=str(DEFAULT_CACHE_DIR),
        help="embedding cache ('' disables)",
    )
    p.add_argument(
        "--write-config",
        action="store_true",
        help="also write routing.yaml (models, mean costs per 1k) in --out",
    )
    p.add_argument(
        "--vision-models",
        type=lambda s: [m for m in s.split(",") if m],
        default=[],
        help="models marked vision: true in the written routing.yaml",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)
    return p


def cmd_train(args: argparse.Namespace) -> int:
    from app.cli import load_settings
    from app.evaluate import read_jsonl
    from models.train_run import TrainJob, run_training

    path = Path(args.data)
    rows = list(read_jsonl(path))
    if not rows or not isinstance(rows[0].get("scores"), dict):
        raise ValueError(f"{path}: rows need per-model 'scores'")
    models = list(rows[0]["scores"])
    scores, costs = score_matrix(rows, models, str(path))
    convs = conversations(rows, load_settings())
    job = TrainJob.from_args(args, models, data_path=path, data_sha256=file_sha256(path))
    report = run_training(job, convs, scores, costs)
    print(
        f"artifact written to {args.out}: val loss {report['metrics']['val_loss']:.4f}, "
        f"best epoch {report['metrics']['best_epoch']}, mean val AUC "
        f"{report['metrics'].get('val_mean_auc')}"
    )
    for budget, rec in report.get("recommended", {}).get("by_budget", {}).items():
        print(
            f"  budget {budget}/1k: cost_weight {rec['cost_weight']:.4g} -> val quality "
            f"{rec['quality']:.3f} at {rec['cost_per_1k']:.3f}/1k"
        )
    return 0


# -- eval ------------------------------------------------------------------------------


def add_quality_eval_args(p: argparse.ArgumentParser) -> None:
    """Options of ``eval`` that only quality/cost data uses."""
    p.add_argument(
        "--policy",
        choices=["threshold_cost", "utility"],
        help="override auto.policy (quality data)",
    )
    p.add_argument("--cost-weight", type=float, help="override auto.cost_weight")
    p.add_argument(
        "--budgets",
        type=floats,
        default=floats(DEFAULT_BUDGETS),
        help="cost-per-1k budgets for best-under-budget points (quality data)",
    )
    p.add_argument("--plot", help="PNG plot path (default: --out with .png)")


def run_quality_eval(
    args: argparse.Namespace, settings: Settings, config: RoutingConfig, rows: list[dict[str, Any]]
) -> int:
    """Replay quality/cost rows through the configured strategy; print and write the report."""
    from app.quality_eval import replay_quality
    from models.eval_report import plot_report

    overrides = {"policy": args.policy, "cost_weight": args.cost_weight}
    auto = config.auto.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    config = config.model_copy(update={"auto": auto})
    report = replay_quality(
        rows, conversations(rows, settings), settings, config, args.budgets, str(args.data)
    )
    pol, base = report["policy"], report["baselines"]
    best = base["single"][base["best"]]
    print(
        f"{report['examples']} prompts, strategy {settings.strategy}, policy "
        f"{pol['name']} (cost_weight {pol['cost_weight']}): quality {pol['quality']:.4f} "
        f"at {pol['cost_per_1k']:.4f}/1k; best single {base['best']} {best['quality']:.4f} "
        f"at {best['cost_per_1k']:.4f}/1k; oracle {base['oracle']['quality']:.4f}"
    )
    print(
        f"APGR {report['apgr']}, CPT {report['cpt']}, cost to match best "
        f"{report['cost_to_match_best']}; latency p50 {report['latency']['p50_ms']} ms, "
        f"p95 {report['latency']['p95_ms']} ms"
    )
    if args.out:
        Path(args.out).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        plot = args.plot or str(Path(args.out).with_suffix(".png"))
        plot_report(report, plot)
        print(f"report written to {args.out}, plot to {plot}")
    return 0
