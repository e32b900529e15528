"""Offline replay: normalise labelled rows exactly as the HTTP edge does, run the
configured strategy over them without a server, and hand the decisions to the report
builders in ``models/`` (``models.evaluation.report`` for quality/cost, ``intent_report`` for
intents). The only evaluation code in ``app/``: it needs the edge's normalisation.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.api.intake import normalise
from app.api.schemas import ChatCompletionRequest
from app.metrics import RouterMetrics
from app.settings import Settings
from models.core.conversation import Conversation
from models.core.routing_config import OTHER_INTENT, RoutingConfig
from models.evaluation.data import read_jsonl, score_matrix, tasks_of
from models.evaluation.report import intent_report, latency_percentiles, quality_report
from strategies.base import RouteOptions, RoutingDecision, RoutingStrategy, StrategyContext
from strategies.registry import create_strategy

if TYPE_CHECKING:
    from models.routers.artifact import Manifest

__all__ = ["evaluate_intents", "evaluate_quality", "read_jsonl", "started_strategy"]


async def conversation_of(row: dict[str, Any], settings: Settings) -> Conversation:
    """Normalise a dataset row exactly as the HTTP edge would."""
    request = ChatCompletionRequest.model_validate({"messages": row["messages"]})
    return await normalise(request, settings)


@asynccontextmanager
async def started_strategy(settings: Settings, config: RoutingConfig):  # type: ignore[no-untyped-def]
    """The configured strategy, loaded and warm, closed on exit."""
    context = StrategyContext(settings=settings, config=config, metrics=RouterMetrics())
    strategy: RoutingStrategy = create_strategy(settings.strategy, context)
    await strategy.start()
    try:
        yield strategy
    finally:
        await strategy.aclose()
        del strategy
        gc.collect()  # native runtimes released now, not at interpreter exit (see factory)


async def timed_route(
    strategy: RoutingStrategy, conversation: Conversation
) -> tuple[RoutingDecision, float]:
    start = time.perf_counter()
    decision = await strategy.route(conversation, RouteOptions())
    return decision, time.perf_counter() - start


async def replay(
    rows: Sequence[dict[str, Any]], settings: Settings, config: RoutingConfig
) -> tuple[list[RoutingDecision], list[float], Manifest | None, float]:
    """Decisions and single-decision latencies (one at a time), plus the strategy's
    artifact manifest (auto) and the cost_weight requests started from."""
    decisions, latencies = [], []
    async with started_strategy(settings, config) as strategy:
        for row in rows:
            decision, seconds = await timed_route(strategy, await conversation_of(row, settings))
            decisions.append(decision)
            latencies.append(seconds)
        manifest = getattr(strategy, "manifest", None)
        cost_weight = getattr(strategy, "cost_weight", config.auto.cost_weight)
    return decisions, latencies, manifest, cost_weight


async def budget_probabilities(
    rows: Sequence[dict[str, Any]],
    settings: Settings,
    config: RoutingConfig,
    manifest: Manifest,
    models: list[str],
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """For each recorded budget whose alpha (``calibration.budget_alpha``) differs from the
    one the replay served: the probabilities served with ``auto.budget_per_1k`` set to that
    budget (the strategy's own scoring, in batches), columns in ``models`` order."""
    from models.routers.artifact import budget_names, budget_operating_point

    per_budget = manifest.calibration.get("budget_alpha") or {}
    if not per_budget:
        return {}
    budget = config.auto.budget_per_1k
    served = (
        budget_operating_point(manifest, budget)[0]
        if budget is not None
        else float(manifest.calibration.get("alpha", 1.0))
    )
    convs = [await conversation_of(row, settings) for row in rows]
    columns = [manifest.models.index(m) for m in models]
    out: dict[str, np.ndarray] = {}
    by_alpha: dict[float, np.ndarray] = {}
    for key in budget_names(manifest):
        alpha = float(per_budget.get(key, served))
        if alpha == served:
            continue
        if alpha not in by_alpha:
            auto = config.auto.model_copy(update={"budget_per_1k": float(key)})
            budget_config = config.model_copy(update={"auto": auto})
            async with started_strategy(settings, budget_config) as strategy:
                parts = [
                    np.stack(strategy.score_batch(convs[i : i + batch_size]))
                    for i in range(0, len(convs), batch_size)
                ]
            by_alpha[alpha] = np.concatenate(parts)[:, columns].astype(np.float64)
        out[key] = by_alpha[alpha]
    return out


def percentiles(latencies: list[float]) -> dict[str, float]:
    """The latency percentiles plus the mean, in milliseconds."""
    mean = float((np.asarray(latencies) * 1000.0).mean()) if latencies else 0.0
    return {**latency_percentiles(latencies), "mean_ms": round(mean, 3)}


def head_summary(path: Path) -> dict[str, Any]:
    """What the trained intent head decides with: features, C, threshold and how they
    were chosen (from its manifest)."""
    from models.intents.head import load_head

    head, manifest = load_head(path)
    metrics = manifest.get("metrics", {})
    keys = ("features", "word_weight", "char_weight", "c", "validation", "val_accuracy")
    return {
        "labels": len(head.labels),
        "threshold": head.threshold,
        "oos_share": metrics.get("oos_share"),
        "lexical_features": head.lexical.n_features if head.lexical is not None else 0,
        **{k: metrics.get(k, "embedding" if k == "features" else None) for k in keys},
    }


async def evaluate_intents(
    rows: list[dict[str, Any]], settings: Settings, config: RoutingConfig
) -> dict[str, Any]:
    """Replay intent-labelled rows: accuracy, per-intent precision/recall, out-of-scope
    recall, confusion, model accuracy, latency."""
    targets = {i.name: i.model for i in config.intents}
    decisions, latencies, _, _ = await replay(rows, settings, config)
    gold = [str(row.get("intent") or OTHER_INTENT) for row in rows]
    pred = [d.intent or OTHER_INTENT for d in decisions]
    report = intent_report(
        gold,
        pred,
        [targets.get(g, config.default_model()) for g in gold],
        [d.model for d in decisions],
    )
    report["latency"] = percentiles(latencies)
    report["strategy"] = settings.strategy
    report["backend"] = settings.intent.backend
    report["intent_classifier"] = config.intent_classifier
    if config.intent_classifier and settings.intent.backend == "embedding":
        report["intent_head"] = head_summary(config.resolve_path(config.intent_classifier))
    report["errors"] = [
        {"id": row.get("id"), "gold": g, "predicted": p}
        for row, g, p in zip(rows, gold, pred, strict=True)
        if g != p
    ]
    return report


def _default_budgets(manifest: Manifest | None) -> list[float]:
    """The $/1k budgets the artifact recorded operating points for, else RouterBench's."""
    from app.cli.args import DEFAULT_BUDGETS, floats
    from models.routers.artifact import budget_names

    recorded = budget_names(manifest) if manifest is not None else []
    return [float(b) for b in recorded] or floats(DEFAULT_BUDGETS)


def _probabilities(decisions: list[RoutingDecision], models: list[str]) -> np.ndarray | None:
    """Per-model probabilities from decision scores (NaN = not a candidate), or None when
    the scores are not keyed by model (e.g. intent scores)."""
    if not any(d.scores for d in decisions) or any(set(d.scores) - set(models) for d in decisions):
        return None
    probs = np.full((len(decisions), len(models)), np.nan, dtype=np.float64)
    for i, d in enumerate(decisions):
        for j, m in enumerate(models):
            if m in d.scores:
                probs[i, j] = d.scores[m]
    return probs


async def evaluate_quality(
    rows: list[dict[str, Any]],
    settings: Settings,
    config: RoutingConfig,
    budgets: Sequence[float] | None,
    path: str,
) -> dict[str, Any]:
    """Route every row, then score the choices against the rows' per-model scores.
    ``budgets`` None: the artifact's recorded operating points (else RouterBench's)."""
    models = [m for m in config.model_names if m in rows[0].get("scores", {})]
    if not models:
        raise ValueError(f"{path}: no configured model has scores in the data")
    scores, costs = score_matrix(rows, models, path)
    model_costs = np.array([config.model(m).cost for m in models], dtype=np.float64)
    if costs is None:  # no per-row costs: measure with the config's costs
        costs = np.tile(model_costs, (len(rows), 1)).astype(np.float32)
    decisions, latencies, manifest, cost_weight = await replay(rows, settings, config)
    recommended = manifest.recommended if manifest is not None else {}
    if budgets is None:
        budgets = _default_budgets(manifest)
    unknown = sorted({d.model for d in decisions} - set(models))
    if unknown:
        raise ValueError(f"{path}: the router chose {unknown}, which have no scores in the data")
    policy = {
        "strategy": settings.strategy,
        "name": config.auto.policy if settings.strategy == "auto" else settings.strategy,
        "cost_weight": cost_weight,
        "budget_per_1k": config.auto.budget_per_1k,
    }
    decision = recommended.get("decision", {})
    weights = {
        b: v["router"]["cost_weight"]
        for b, v in recommended.get("by_budget", {}).items()
        if v.get("router") and b != "none"
    }
    fixed = decision.get("model") if decision.get("mode") == "single" else None
    probs = _probabilities(decisions, models)
    per_budget: dict[str, np.ndarray] = {}
    if manifest is not None and probs is not None and fixed is None and weights:
        per_budget = await budget_probabilities(rows, settings, config, manifest, models)
        for key, p in per_budget.items():  # the same candidates the replay scored
            per_budget[key] = np.where(np.isnan(probs), np.nan, p)
    report = quality_report(
        models,
        scores,
        costs,
        [d.model for d in decisions],
        policy=policy,
        model_costs=model_costs,
        probs=probs,
        budget_probs=per_budget,
        budget_alpha=manifest.calibration.get("budget_alpha") if manifest is not None else None,
        latencies_s=latencies,
        reasons=[d.reason for d in decisions],
        budgets=budgets,
        tasks=tasks_of(list(rows)),
        budget_weights=weights if config.auto.policy == "utility" else None,
        fixed_model=fixed if fixed in models else None,
        train_task_tables=recommended.get("route_by_task"),
    )
    if recommended:
        report["training_decision"] = {
            k: recommended.get(k) for k in ("decision", "validation", "by_budget", "n_val")
        }
    return report
