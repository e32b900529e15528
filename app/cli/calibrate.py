"""``llm-router calibrate``: move a trained router's operating point to one target (a strong
model's share, a $/1k budget, or a quality floor) on the user's own prompts, and write the
routing config that serves it. The computation is :mod:`models.training.calibrate`; this
module reads the prompts, scores them with the served strategy, and writes the YAML."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from app.cli.common import UsageError, load_settings
from app.cli.replay import conversation_of, read_jsonl, started_strategy
from app.settings import Settings
from models.core.errors import StrategyError
from models.core.routing_config import RoutingConfig, load_routing_config, parse_routing_config
from models.evaluation.data import score_matrix
from models.training.calibrate import Target, calibrate
from strategies.base import RouteOptions, eligible_models

BATCH = 64
PATH_KEYS = ("intent_classifier", "examples_file")


def add_calibrate_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``calibrate`` on the top-level subparsers."""
    p = sub.add_parser(
        "calibrate",
        help="move a trained router's operating point to a target on your prompts",
        description="Exactly one target: --strong-model M --strong-share S (unlabelled "
        "prompts suffice), --budget-per-1k USD, or --quality-floor Q (labelled rows).",
    )
    p.add_argument("prompts", help="JSONL: messages (or text) per row; + scores/costs if labelled")
    p.add_argument("--config", required=True, help="routing config of the auto router")
    p.add_argument("--out", required=True, help="where to write the calibrated routing config")
    p.add_argument("--strong-model", help="the model whose share --strong-share sets")
    p.add_argument("--strong-share", type=float, help="share of prompts (0..1) to --strong-model")
    p.add_argument(
        "--budget-per-1k",
        type=float,
        help="expected cost per 1k prompts: the rows' costs when they have them, else the "
        "config's cost of the chosen model",
    )
    p.add_argument(
        "--quality-floor",
        type=float,
        help="the cheapest point whose quality on the labelled rows is at least this "
        "fraction of the best single model's (e.g. 0.95)",
    )
    return p


def target_of(args: argparse.Namespace) -> Target:
    """The one target the arguments name; UsageError for none, two, or a bad value."""
    share = args.strong_model is not None or args.strong_share is not None
    given = [
        name
        for name, on in (
            ("--strong-model/--strong-share", share),
            ("--budget-per-1k", args.budget_per_1k is not None),
            ("--quality-floor", args.quality_floor is not None),
        )
        if on
    ]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise UsageError(
            "calibrate needs exactly one target: --strong-model M --strong-share S, "
            f"--budget-per-1k USD or --quality-floor Q (got {what})"
        )
    if share:
        if args.strong_model is None or args.strong_share is None:
            raise UsageError("--strong-model and --strong-share go together")
        if not 0.0 <= args.strong_share <= 1.0:
            raise UsageError(f"--strong-share must be between 0 and 1, got {args.strong_share:g}")
        return Target("share", float(args.strong_share), args.strong_model)
    if args.budget_per_1k is not None:
        if args.budget_per_1k <= 0:
            raise UsageError(f"--budget-per-1k must be above 0, got {args.budget_per_1k:g}")
        return Target("budget", float(args.budget_per_1k))
    if not 0.0 < args.quality_floor <= 2.0:
        raise UsageError(f"--quality-floor must be in (0, 2], got {args.quality_floor:g}")
    return Target("quality", float(args.quality_floor))


async def served_probabilities(
    rows: list[dict[str, Any]], settings: Settings, config: RoutingConfig
) -> tuple[np.ndarray, list[str]]:
    """The served strategy's probabilities for every row (NaN where a model may not answer
    that row, as serving would skip it) and its models, in the artifact's order."""
    convs = [await conversation_of(row, settings) for row in rows]
    async with started_strategy(settings, config) as strategy:
        models = list(strategy.manifest.models)
        batches = [convs[i : i + BATCH] for i in range(0, len(convs), BATCH)]
        parts = [np.stack(strategy.score_batch(batch)) for batch in batches]
    probs = np.concatenate(parts).astype(np.float64)
    for i, conv in enumerate(convs):
        allowed = set(eligible_models(config, conv, RouteOptions()))
        for j, m in enumerate(models):
            if m not in allowed:
                probs[i, j] = np.nan
    return probs, models


def _relocated(value: str, config: RoutingConfig, out: Path) -> str:
    """A path from the config, relative to ``out``'s directory (it was relative to the
    input config's); absolute paths stay."""
    if Path(value).expanduser().is_absolute():
        return value
    target = config.resolve_path(value).resolve()
    try:
        return os.path.relpath(target, out.resolve().parent)
    except ValueError:  # another drive (Windows)
        return str(target)


def calibrated_yaml(config: RoutingConfig, result: dict[str, Any], out: Path) -> str:
    """The input config with the auto operating point changed (and paths still pointing
    where they did), validated as the service would load it."""
    assert config.source is not None
    data = yaml.safe_load(config.source.read_text(encoding="utf-8"))
    auto = dict(data.get("auto") or {})
    auto.pop("budget_per_1k", None)
    auto["policy"] = "utility"
    auto["cost_weight"] = float(f"{result['cost_weight']:.10g}")
    if auto.get("artifact"):
        auto["artifact"] = _relocated(str(auto["artifact"]), config, out)
    data["auto"] = auto
    for key in PATH_KEYS:
        if data.get(key):
            data[key] = _relocated(str(data[key]), config, out)
    target = result["target"]
    what = {
        "share": f"{target['value']:g} of the prompts to {target['model']}",
        "budget": f"at most {target['value']:g}/1k",
        "quality": f"at least {target['value']:g} x the best single model's quality",
    }[target["kind"]]
    header = (
        f"# Calibrated by llm-router calibrate from {config.source.name}: {what}, on "
        f"{result['n_prompts']} prompts -> auto.cost_weight {auto['cost_weight']:g}\n"
    )
    text = header + yaml.safe_dump(data, sort_keys=False)
    parse_routing_config(text, out)  # the written file must load as the service loads it
    return text


def print_result(result: dict[str, Any], policy_was: str) -> None:
    changed = "" if policy_was == "utility" else f" (policy was {policy_was})"
    if "note" in result:
        print(f"note: {result['note']}")
    print(
        f"operating point on {result['n_prompts']} prompts: policy utility{changed}, "
        f"cost_weight {result['cost_weight']:.6g}"
    )
    for model, share in sorted(result["shares"].items(), key=lambda kv: -kv[1]["share"]):
        lo, hi = share["ci95"]
        print(f"  {model:<28} share {share['share']:.1%} [95% {lo:.1%}-{hi:.1%}]")
    lo, hi = result["cost_per_1k_ci95"]
    print(
        f"  expected cost {result['cost_per_1k']:.4g}/1k [95% {lo:.4g}-{hi:.4g}] "
        f"({result['cost_source']})"
    )
    if "quality" in result:
        lo, hi = result["quality_ci95"]
        best = result["best_single"]
        print(
            f"  expected quality {result['quality']:.4f} [95% {lo:.3f}-{hi:.3f}]; best single "
            f"{best['model']} {best['quality']:.4f} at {best['cost_per_1k']:.4g}/1k"
        )
    else:
        print(f"  predicted quality {result['predicted_quality']:.4f} (the router's own estimate)")


def _router_models(settings: Settings, config: RoutingConfig, path: str) -> list[str]:
    """The artifact's models, read from its manifest before any scoring; UsageError for an
    intent config or an artifact that always routes to one model."""
    from models.routers.artifact import ArtifactError, read_manifest

    artifact = settings.auto.artifact or config.auto.artifact
    if not artifact:
        kind = "an intent-strategy config" if config.intents else "not an auto-router config"
        raise UsageError(
            f"--config {path} is {kind} (no auto.artifact): calibrate moves a trained "
            "router's operating point; train one with llm-router train --write-config"
        )
    root = Path(artifact).expanduser() if settings.auto.artifact else config.resolve_path(artifact)
    try:
        manifest = read_manifest(root)
    except ArtifactError as exc:
        raise UsageError(f"--config {path}: {exc}") from None
    decision = manifest.recommended.get("decision") or {}
    if decision.get("mode") == "single":
        raise UsageError(
            f"the artifact always routes to {decision.get('model')} (training chose the single "
            "model): there is no operating point to move; retrain with more or other data"
        )
    return list(manifest.models)


def cmd_calibrate(args: argparse.Namespace) -> int:
    target = target_of(args)
    settings = load_settings(strategy="auto", config=args.config)
    config = load_routing_config(args.config)
    models = _router_models(settings, config, args.config)
    if target.kind == "share" and target.model not in models:
        raise UsageError(
            f"--strong-model {target.model}: unknown (router models: {', '.join(models)})"
        )
    try:
        rows = list(read_jsonl(Path(args.prompts)))
    except OSError as exc:
        raise UsageError(f"{args.prompts}: {exc.strerror or exc}") from None
    if not rows:
        raise UsageError(f"{args.prompts} has no rows")
    scores = costs = None
    if all(isinstance(r.get("scores"), dict) for r in rows):
        scores, costs = score_matrix(rows, models, args.prompts)
    # score as the written config will serve: its own cost_weight, no budget (whose alpha
    # would differ from the artifact's default one)
    auto = config.auto.model_copy(update={"budget_per_1k": None, "policy": "utility"})
    try:
        probs, served_models = asyncio.run(
            served_probabilities(rows, settings, config.model_copy(update={"auto": auto}))
        )
    except StrategyError as exc:  # e.g. the artifact does not match the encoder or config
        raise UsageError(f"--config {args.config}: {exc.message}") from None
    assert served_models == models
    model_costs = np.array([config.model(m).cost for m in models], dtype=np.float64)
    result = calibrate(probs, model_costs, models, target, scores, costs)
    out = Path(args.out)
    text = calibrated_yaml(config, result, out)
    print_result(result, config.auto.policy)
    out.write_text(text, encoding="utf-8")
    print(f"routing config written to {out}")
    return 0
