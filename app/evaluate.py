"""Offline evaluation helpers shared by the CLI: load labelled JSONL, run a strategy
over it without a server, and score intent classification."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.config import OTHER_INTENT, RoutingConfig
from app.conversation import normalise
from app.metrics import RouterMetrics
from app.schemas import ChatCompletionRequest
from app.settings import Settings
from models.eval_report import latency_percentiles
from strategies.base import (
    Conversation,
    RouteOptions,
    RoutingDecision,
    RoutingStrategy,
    StrategyContext,
)
from strategies.registry import create_strategy


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; a bad line raises ValueError naming its line number."""
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc})") from None
            if not isinstance(row, dict) or "messages" not in row:
                raise ValueError(f"{path}:{lineno}: expected an object with 'messages'")
            yield row


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


async def timed_route(
    strategy: RoutingStrategy, conversation: Conversation
) -> tuple[RoutingDecision, float]:
    start = time.perf_counter()
    decision = await strategy.route(conversation, RouteOptions())
    return decision, time.perf_counter() - start


def percentiles(latencies: list[float]) -> dict[str, float]:
    """The quality report's latency percentiles plus the mean, in milliseconds."""
    mean = float((np.asarray(latencies) * 1000.0).mean()) if latencies else 0.0
    return {**latency_percentiles(latencies), "mean_ms": round(mean, 3)}


def intent_report(
    gold: list[str], predicted: list[str], models_gold: list[str], models_pred: list[str]
) -> dict[str, Any]:
    """Accuracy, per-intent precision/recall/F1, confusion matrix, model-level accuracy."""
    labels = sorted(set(gold) | set(predicted))
    pairs = Counter(zip(gold, predicted, strict=True))
    per_intent = {}
    for label in labels:
        tp = pairs[(label, label)]
        pred_n = sum(1 for p in predicted if p == label)
        gold_n = sum(1 for g in gold if g == label)
        precision = tp / pred_n if pred_n else 0.0
        recall = tp / gold_n if gold_n else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_intent[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": gold_n,
        }
    n = len(gold)
    return {
        "examples": n,
        "accuracy": round(sum(g == p for g, p in zip(gold, predicted, strict=True)) / n, 4),
        "model_accuracy": round(
            sum(g == p for g, p in zip(models_gold, models_pred, strict=True)) / n, 4
        ),
        "per_intent": per_intent,
        "labels": labels,
        "confusion": {g: {p: pairs[(g, p)] for p in labels} for g in labels},
    }


async def evaluate_intents(
    rows: list[dict[str, Any]], settings: Settings, config: RoutingConfig
) -> dict[str, Any]:
    """Replay intent-labelled rows through the configured strategy (one at a time, so the
    latency is a single decision's)."""
    targets = {i.name: i.model for i in config.intents}
    gold, pred, mgold, mpred, latencies = [], [], [], [], []
    errors: list[dict[str, Any]] = []
    async with started_strategy(settings, config) as strategy:
        for row in rows:
            conversation = await conversation_of(row, settings)
            decision, seconds = await timed_route(strategy, conversation)
            label = str(row["intent"])
            predicted = decision.intent or OTHER_INTENT
            gold.append(label)
            pred.append(predicted)
            mgold.append(targets.get(label, config.default_model()))
            mpred.append(decision.model)
            latencies.append(seconds)
            if predicted != label:
                errors.append({"id": row.get("id"), "gold": label, "predicted": predicted})
    report = intent_report(gold, pred, mgold, mpred)
    report["latency"] = percentiles(latencies)
    report["strategy"] = settings.strategy
    report["backend"] = settings.intent.backend
    report["errors"] = errors
    return report
