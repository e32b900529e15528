"""What each proxied answer cost: its tokens, their price on the model that answered, and
what the same token counts would have cost on the baseline model (docs/cost.md).

Prices come from the routing config (models/core/pricing.py). An answer without usage is
counted as missing, never an error. Answers from models without prices count tokens but
neither cost nor baseline, so ``1 - cost / baseline`` compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.core.errors import ConfigError
from models.core.pricing import Usage, default_baseline_model, usage_cost

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

    from app.metrics import RouterMetrics
    from models.core.routing_config import ModelConfig, RoutingConfig

BASELINE_ENV = "ROUTER_COST__BASELINE_MODEL"


def resolve_baseline(config: RoutingConfig, name: str, proxy: bool) -> ModelConfig | None:
    """The baseline model: ``name`` (ROUTER_COST__BASELINE_MODEL), else the most expensive
    text model. None when it has no prices and no model has any (no cost is counted then).

    Raises ConfigError for a name that is not configured, and in proxy mode for a
    baseline without prices while other models have them (savings would be meaningless).
    """
    chosen = name.strip() or default_baseline_model(config)
    if chosen not in config.model_names:
        raise ConfigError(
            f"{BASELINE_ENV}: unknown model '{chosen}'; configured models: {config.model_names}"
        )
    model = config.model(chosen)
    if model.priced:
        return model
    priced = [m.name for m in config.models if m.priced]
    if proxy and priced:
        how = "" if name.strip() else f" (the default: set {BASELINE_ENV} to choose another)"
        raise ConfigError(
            f"{BASELINE_ENV}: baseline model '{chosen}'{how} has no prices "
            "(input_price_per_1m, output_price_per_1m in the routing config), so savings "
            f"cannot be counted; models with prices: {priced}"
        )
    return None


def usd(value: float) -> str:
    """USD as a plain decimal, exact to 1e-12 (no exponent, no trailing zeros)."""
    return f"{value:.12f}".rstrip("0").rstrip(".") or "0"


@dataclass(frozen=True, slots=True)
class Charge:
    """One answer's tokens and cost (None: the model has no prices)."""

    usage: Usage
    cost_usd: float | None

    def headers(self) -> dict[str, str]:
        """``x-router-tokens`` and, for a model with prices, ``x-router-cost-usd``."""
        u = self.usage
        out = {
            "x-router-tokens": f"prompt={u.prompt_tokens},completion={u.completion_tokens},"
            f"cached={u.cached_tokens}"
        }
        if self.cost_usd is not None:
            out["x-router-cost-usd"] = usd(self.cost_usd)
        return out

    def log_fields(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "cached_tokens": self.usage.cached_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 12),
        }


class Accounting:
    """Counts answers' tokens and dollars into the metrics."""

    def __init__(
        self, config: RoutingConfig, metrics: RouterMetrics, baseline: ModelConfig | None
    ) -> None:
        self.metrics, self.baseline = metrics, baseline
        # every model's series from the start (so rate() works), bound once
        self.series = {m.name: _Series(metrics, m) for m in config.models}

    def charge(self, model: str, usage: Usage | None) -> Charge | None:
        """Count one successful answer of ``model``; None when it reported no usage."""
        series = self.series[model]
        if usage is None:
            series.missing.inc()
            return None
        series.prompt.inc(usage.prompt_tokens)
        series.completion.inc(usage.completion_tokens)
        if usage.cached_tokens:
            self.metrics.tokens.labels(model, "cached").inc(usage.cached_tokens)
        cost = usage_cost(series.model, usage)
        if cost is not None and series.spend is not None:
            spent, per_request = series.spend
            spent.inc(cost)
            per_request.observe(cost)
            if self.baseline is not None:
                self.metrics.baseline_cost.inc(usage_cost(self.baseline, usage) or 0.0)
        return Charge(usage, cost)


class _Series:
    """One model's metric children (labels resolved once, not per answer)."""

    def __init__(self, metrics: RouterMetrics, model: ModelConfig) -> None:
        self.model = model
        self.prompt = metrics.tokens.labels(model.name, "prompt")
        self.completion = metrics.tokens.labels(model.name, "completion")
        self.missing = metrics.usage_missing.labels(model.name)
        self.spend: tuple[Counter, Histogram] | None = None
        if model.priced:
            self.spend = metrics.cost.labels(model.name), metrics.request_cost.labels(model.name)
