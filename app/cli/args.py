"""Arguments of the offline subcommands (train, train-intents, eval options); the
commands themselves are in app/cli/main.py and call into models/."""

from __future__ import annotations

import argparse
from typing import Any

from models.encoders.cache import DEFAULT_CACHE_DIR

DEFAULT_BUDGETS = "0.35,0.5,1,2"  # RouterBench's $/1k scale (eval's default without an artifact)
DEFAULT_FRACTIONS = "0.25,0.5,0.75,1"


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def fractions(text: str) -> list[float]:
    values = floats(text)
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions in (0, 1] expected, got {text!r}")
    return values


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


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
    points = p.add_mutually_exclusive_group()
    points.add_argument(
        "--budgets",
        type=floats,
        default=None,
        help="explicit $/1k budgets to pick cost_weight for on validation; the last one "
        "decides router vs single model and is served (default: --cost-fractions)",
    )
    points.add_argument(
        "--cost-fractions",
        type=fractions,
        default=None,
        help="operating points as fractions of the best single model's mean cost in the "
        f"data (default {DEFAULT_FRACTIONS})",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.01,
        help="non-inferiority margin: a router whose quality is, with --confidence, at "
        "most this much below the best single model's (0..1 scores) and that saves cost wins",
    )
    p.add_argument(
        "--min-saving",
        type=float,
        default=0.05,
        help="relative cost saving over the best single model such a router must reach, "
        "with --confidence",
    )
    p.add_argument(
        "--cache-dir",
        default=str(DEFAULT_CACHE_DIR),
        help="embedding cache ('' disables)",
    )
    p.add_argument(
        "--write-config",
        action="store_true",
        help="also write routing.yaml (models, mean costs per 1k, served operating point) in --out",
    )
    p.add_argument(
        "--config",
        help="the routing config the data was collected with: each model's upstream "
        "(base_url, api_key_env, upstream_model, headers, timeout_s), vision and prices "
        "are copied into the written routing.yaml",
    )
    p.add_argument(
        "--vision-models",
        type=lambda s: [m for m in s.split(",") if m],
        default=[],
        help="models marked vision: true in the written routing.yaml",
    )
    p.add_argument(
        "--model",
        choices=["auto", "mlp", "knn"],
        default="auto",
        help="router kind; auto compares the MLP and kNN (several k) on validation",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=0,
        help="validation: k-fold CV (0 = 5 folds below 2,000 rows, else --val-fraction holdout)",
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=0.9,
        help="bootstrap confidence the router needs on validation: P(gain > 0) over the "
        "best single model the budget allows, or the one-sided bound of --margin and "
        "--min-saving; else the artifact always picks that model (0: off, raw router)",
    )
    p.add_argument(
        "--prior",
        choices=["auto", "global", "task", "cluster"],
        default="auto",
        help="what the router's probabilities are shrunk toward: the per-model mean "
        "(global), a task head trained on the rows' task/source field (task), k-means "
        "clusters of the embeddings (cluster); auto compares them on validation",
    )
    p.add_argument(
        "--per-budget-alpha",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="choose the shrinkage alpha separately for each budget on validation (the "
        "router and prior stay shared); auto.budget_per_1k in the routing config serves one",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


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
        default=None,
        help="cost-per-1k budgets for best-under-budget points (quality data; default: "
        f"the artifact's recorded operating points, else {DEFAULT_BUDGETS})",
    )
    p.add_argument("--plot", help="PNG plot path (default: --out with .png)")


def add_train_intents_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``train-intents`` on the top-level subparsers."""
    p = sub.add_parser(
        "train-intents",
        help="fit an intent classifier on labelled messages for a routing config",
    )
    p.add_argument("data", help='JSONL: {"messages": [...] or "text": ..., "intent": NAME}')
    p.add_argument("--config", help="base routing config (models, intents); ROUTER_CONFIG")
    p.add_argument("--out", required=True, help="directory for intent-head/ and routing.yaml")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--oos-share",
        type=float,
        help="expected share of out-of-scope traffic: weights validation rows when choosing "
        "the 'other' threshold (default: the validation data's own mix)",
    )
    p.add_argument(
        "--features",
        choices=("auto", "embedding", "lexical"),
        default="auto",
        help="auto: add TF-IDF word/character n-gram features of the message when "
        "validation accuracy says they help; embedding: sentence embedding only; "
        "lexical: always add them",
    )
    p.add_argument(
        "--fine-tune",
        type=non_negative_int,
        default=0,
        metavar="EPOCHS",
        help="fine-tune the sentence encoder on the rows for EPOCHS epochs first (helps most "
        "with few examples per intent; the tuned encoder is saved with the head and served "
        "instead of ROUTER_INTENT__ENCODER); 0: keep the encoder frozen",
    )
    p.add_argument(
        "--fine-tune-device",
        help="torch device to fine-tune on, e.g. cuda while serving on cpu (default: "
        "ROUTER_INTENT__DEVICE); the head is still fitted on the serving device's embeddings",
    )
    p.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE_DIR), help="embedding cache ('' disables)"
    )
    return p
