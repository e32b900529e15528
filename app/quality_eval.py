"""Replay quality/cost-labelled conversations through a strategy and build the report.

Any strategy works for system quality, cost and latency; AUC and the cost_weight sweep
need per-model probabilities, i.e. a strategy whose decision scores are keyed by model
(auto). Decisions run one at a time, so latencies are single decisions'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from app.cli_learned import score_matrix
from app.evaluate import started_strategy, timed_route
from models.eval_report import quality_report

if TYPE_CHECKING:
    from app.config import RoutingConfig
    from app.settings import Settings
    from strategies.base import Conversation, RoutingDecision


async def _replay(
    conversations: Sequence[Conversation], settings: Settings, config: RoutingConfig
) -> tuple[list[RoutingDecision], list[float]]:
    decisions, latencies = [], []
    async with started_strategy(settings, config) as strategy:
        for conversation in conversations:
            decision, seconds = await timed_route(strategy, conversation)
            decisions.append(decision)
            latencies.append(seconds)
    return decisions, latencies


def _probabilities(decisions: list[RoutingDecision], models: list[str]) -> np.ndarray | None:
    """Per-model probabilities from decision scores (NaN = not a candidate), or None when
    the scores are not keyed by model (e.g. intent scores)."""
    if not any(d.scores for d in decisions):
        return None
    if any(set(d.scores) - set(models) for d in decisions):
        return None
    probs = np.full((len(decisions), len(models)), np.nan, dtype=np.float64)
    for i, d in enumerate(decisions):
        for j, m in enumerate(models):
            if m in d.scores:
                probs[i, j] = d.scores[m]
    return probs


def replay_quality(
    rows: list[dict[str, Any]],
    conversations: Sequence[Conversation],
    settings: Settings,
    config: RoutingConfig,
    budgets: Sequence[float],
    path: str,
) -> dict[str, Any]:
    """Route every row, then score the choices against the rows' per-model scores."""
    import asyncio

    models = [m for m in config.model_names if m in rows[0].get("scores", {})]
    if not models:
        raise ValueError(f"{path}: no configured model has scores in the data")
    scores, costs = score_matrix(rows, models, path)
    model_costs = np.array([config.model(m).cost for m in models], dtype=np.float64)
    if costs is None:  # no per-row costs: measure with the config's costs
        costs = np.tile(model_costs, (len(rows), 1)).astype(np.float32)
    decisions, latencies = asyncio.run(_replay(conversations, settings, config))
    unknown = sorted({d.model for d in decisions} - set(models))
    if unknown:
        raise ValueError(f"{path}: the router chose {unknown}, which have no scores in the data")
    policy = {
        "strategy": settings.strategy,
        "name": config.auto.policy,
        "cost_weight": config.auto.cost_weight,
    }
    if settings.strategy != "auto":
        policy["name"] = settings.strategy
    return quality_report(
        models,
        scores,
        costs,
        [d.model for d in decisions],
        policy=policy,
        model_costs=model_costs,
        probs=_probabilities(decisions, models),
        latencies_s=latencies,
        reasons=[d.reason for d in decisions],
        budgets=budgets,
    )
