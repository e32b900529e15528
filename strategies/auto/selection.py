"""Selection policies: turn per-model success probabilities into one chosen model.

Pure functions (no torch), shared by :class:`strategies.auto.strategy.AutoStrategy`, offline
evaluation and the benchmarks, so what is measured is what is served.

* ``threshold_cost`` (the reference rule): a model qualifies when its probability
  reaches its threshold; the cheapest qualified model wins (ties: higher probability);
  when none qualifies, the most probable model wins.
* ``utility``: the model with the largest ``p - cost_weight * cost`` wins (ties: higher
  probability, then lower cost).

An artifact whose router did not beat the best single model on validation names that
model (``fixed_model``): it is chosen whenever it is a candidate (reason ``single_model``),
and the policy only ranks the fallbacks.

The proxy falls back along :func:`fallback_ranking`, the routing config's
``fallback_order`` applied after the chosen model (``cheapest``: the models that reach their
threshold, cheapest first, then the rest, most probable first; ``strongest``: most probable
first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from models.core.routing_config import RoutingConfig
    from strategies.base import RouteOptions

Policy = Literal["threshold_cost", "utility"]
POLICIES: tuple[str, ...] = ("threshold_cost", "utility")


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """Everything a policy needs besides the probabilities."""

    policy: Policy
    thresholds: Mapping[str, float]
    costs: Mapping[str, float]
    cost_weight: float = 0.0
    fixed_model: str | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen model, why, and every candidate best-first (proxy fallback order)."""

    model: str
    reason: str
    ranking: list[str]


def policy_params(
    config: RoutingConfig,
    options: RouteOptions | None = None,
    fixed_model: str | None = None,
    cost_weight: float | None = None,
) -> PolicyParams:
    """Thresholds, costs and cost weight from the routing config (``cost_weight``, e.g. the
    configured budget's from the artifact, replaces ``auto.cost_weight``), with the
    request's overrides applied on top."""
    thresholds = {m.name: m.threshold for m in config.models}
    costs = {m.name: m.cost for m in config.models}
    cost_weight = config.auto.cost_weight if cost_weight is None else cost_weight
    if options is not None:
        thresholds.update(options.thresholds)
        costs.update(options.costs)
        if options.cost_weight is not None:
            cost_weight = options.cost_weight
    return PolicyParams(config.auto.policy, thresholds, costs, cost_weight, fixed_model)


def select(
    probs: Mapping[str, float], candidates: Sequence[str], params: PolicyParams
) -> Selection:
    """Apply ``params.policy`` to the candidates' probabilities.

    Raises ValueError when there is no candidate (the caller decides what that means).
    """
    if not candidates:
        raise ValueError("no candidate model to select from")
    missing = [m for m in candidates if m not in probs]
    if missing:
        raise ValueError(f"no probability for candidate model(s) {missing}")
    if params.policy == "utility":
        choice = _utility(probs, candidates, params)
    elif params.policy == "threshold_cost":
        choice = _threshold_cost(probs, candidates, params)
    else:
        raise ValueError(
            f"unknown selection policy '{params.policy}' (valid: {', '.join(POLICIES)})"
        )
    fixed = params.fixed_model
    if fixed is None or fixed not in candidates:
        return choice
    return Selection(fixed, "single_model", [fixed, *(m for m in choice.ranking if m != fixed)])


def _cost(params: PolicyParams, model: str) -> float:
    return float(params.costs.get(model, 0.0))


def _threshold_cost(
    probs: Mapping[str, float], candidates: Sequence[str], params: PolicyParams
) -> Selection:
    qualified = [m for m in candidates if probs[m] >= params.thresholds.get(m, 0.5)]
    rest = [m for m in candidates if m not in qualified]
    qualified.sort(key=lambda m: (_cost(params, m), -probs[m]))
    rest.sort(key=lambda m: (-probs[m], _cost(params, m)))
    if qualified:
        return Selection(qualified[0], "threshold_cost", qualified + rest)
    return Selection(rest[0], "none_qualified", rest)


def _utility(
    probs: Mapping[str, float], candidates: Sequence[str], params: PolicyParams
) -> Selection:
    lam = params.cost_weight

    def key(m: str) -> tuple[float, float, float]:
        return (-(probs[m] - lam * _cost(params, m)), -probs[m], _cost(params, m))

    ranking = sorted(candidates, key=key)
    return Selection(ranking[0], "utility", ranking)


def fallback_ranking(
    probs: Mapping[str, float],
    chosen: str,
    candidates: Sequence[str],
    params: PolicyParams,
    order: Literal["cheapest", "strongest"],
) -> list[str]:
    """``chosen`` first, then the other candidates in the order the proxy falls back:
    ``cheapest``, the capable ones (probability at least their threshold) cheapest first,
    then the rest most probable first (the ``threshold_cost`` ranking, whichever policy
    chose); ``strongest``, most probable first."""
    rest = [m for m in candidates if m != chosen]
    by_probability = sorted(rest, key=lambda m: (-probs[m], _cost(params, m)))
    if order == "strongest":
        return [chosen, *by_probability]
    capable = [m for m in rest if probs[m] >= params.thresholds.get(m, 0.5)]
    capable.sort(key=lambda m: (_cost(params, m), -probs[m]))
    return [chosen, *capable, *(m for m in by_probability if m not in capable)]
