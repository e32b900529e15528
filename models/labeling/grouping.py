"""Graded answers -> the rows ``llm-router train`` reads.

One training row per prompt: ``messages``, ``scores`` (model -> 0..1) and ``costs``
(model -> USD of that answer), plus ``id``, ``reference`` and ``task`` / ``source`` when
the prompt had them. ``train`` needs every model scored on every row, so a prompt that
lacks a score for some model (its call failed, it has no reference, the judge gave no
usable verdict, the model was never run on it) is left out and counted under the reason.
Costs are written only when every model's answers can be priced (see ``answer_cost``);
a prompt where one answer's cost is unknown (the upstream reported no usage) is left out
too, since ``train`` needs costs on every row or on none.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from models.core.pricing import parse_usage, usage_cost
from models.core.routing_config import ModelConfig, RoutingConfig

# why a prompt has no training row (keys of Dropped.counts)
NO_ANSWER = "no answer from some model"
FAILED = "some model's call failed"
NO_SCORE = "no score for some answer"
NO_COST = "cost unknown for some answer"


@dataclass(slots=True)
class Dropped:
    """Prompts left out of the training rows, by reason."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def answer_text(row: dict[str, Any]) -> str:
    answer = row.get("answer")
    return answer if isinstance(answer, str) else ""


def priced_models(
    by_prompt: dict[str, dict[str, dict[str, Any]]],
    models: list[str],
    config: RoutingConfig | None,
) -> tuple[bool, list[str]]:
    """Whether costs can be written, and the models that prevent it: a model is priced
    when ``config`` gives it prices, or (not in ``config``) every usable answer of it
    recorded a ``cost_usd``."""
    unpriced = []
    for model in models:
        cfg = _model_config(config, model)
        if cfg is not None:
            if not cfg.priced:
                unpriced.append(model)
            continue
        rows = [a[model] for a in by_prompt.values() if model in a]
        if any(r.get("status") == "ok" and not _is_number(r.get("cost_usd")) for r in rows):
            unpriced.append(model)
    return not unpriced, unpriced


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _model_config(config: RoutingConfig | None, model: str) -> ModelConfig | None:
    if config is None:
        return None
    try:
        return config.model(model)
    except KeyError:
        return None


def answer_cost(row: dict[str, Any], config: RoutingConfig | None) -> float | None:
    """USD for one answer: its usage at ``config``'s prices for the model when given, else
    the cost ``collect`` recorded; None when unknown."""
    cfg = _model_config(config, str(row.get("model")))
    if cfg is not None:
        usage = parse_usage(row.get("usage"))
        return None if usage is None else usage_cost(cfg, usage)
    cost = row.get("cost_usd")
    return float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None


def missing_reason(answers: dict[str, dict[str, Any]], models: list[str]) -> str | None:
    """Why this prompt cannot become a training row before any grading, or None."""
    if any(m not in answers for m in models):
        return NO_ANSWER
    if any(answers[m].get("status") != "ok" for m in models):
        return FAILED
    return None


def training_row(
    answers: dict[str, dict[str, Any]],
    models: list[str],
    scores: dict[str, float | None],
    config: RoutingConfig | None,
    with_costs: bool,
) -> tuple[dict[str, Any] | None, str | None]:
    """The training row of one prompt (its answers by model, each answer's score), or
    None and the reason it is left out."""
    reason = missing_reason(answers, models)
    if reason is not None:
        return None, reason
    if any(scores.get(m) is None for m in models):
        return None, NO_SCORE
    first = answers[models[0]]
    row: dict[str, Any] = {"id": first["id"], "messages": first["messages"]}
    row["scores"] = {m: float(scores[m]) for m in models}  # type: ignore[arg-type]
    if with_costs:
        costs = {m: answer_cost(answers[m], config) for m in models}
        if any(c is None for c in costs.values()):
            return None, NO_COST
        row["costs"] = costs
    for key in ("reference", "task", "source"):
        if first.get(key) is not None:
            row[key] = first[key]
    return row, None
