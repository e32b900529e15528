"""Tokens and dollars: what an answer used, and what it cost at the routing config's prices.

One source of prices for every part of the product: the proxy counts spend and savings
with them, ``collect`` and ``label`` turn recorded usage into per-model costs for
training, and evaluation reports read the same numbers. Prices are USD per million
tokens, as providers publish them (``input_price_per_1m``, ``output_price_per_1m`` and,
where a provider discounts cached prompt tokens, ``cached_input_price_per_1m``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.core.routing_config import ModelConfig, RoutingConfig, request_cost_per_1k


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one answer, as the upstream reported them."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # part of prompt_tokens served from the provider's cache

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
        }


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value >= 0 else None


def parse_usage(data: Any) -> Usage | None:
    """The ``usage`` object of an OpenAI chat-completions answer (a whole body or the
    usage chunk of a stream), or None when it is absent or not numbers. Never raises:
    a malformed usage from an upstream is counted as missing, not an error."""
    if not isinstance(data, Mapping):
        return None
    prompt, completion = _count(data.get("prompt_tokens")), _count(data.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = data.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    return Usage(prompt, completion, min(cached or 0, prompt))


def usage_cost(model: ModelConfig, usage: Usage) -> float | None:
    """USD for ``usage`` at the model's prices; None when the model has no prices."""
    if model.input_price_per_1m is None or model.output_price_per_1m is None:
        return None
    cached_price = model.cached_input_price_per_1m
    if cached_price is None:
        cached_price = model.input_price_per_1m
    fresh = usage.prompt_tokens - usage.cached_tokens
    micro = fresh * model.input_price_per_1m + usage.cached_tokens * cached_price
    micro += usage.completion_tokens * model.output_price_per_1m
    return micro / 1e6


def default_baseline_model(config: RoutingConfig) -> str:
    """What savings are measured against when no baseline is configured: the most
    expensive text model (priced models by their cost for the config's typical request,
    else by ``cost``), or the most expensive model when every one has vision."""
    mix = config.typical_request
    pool = [m for m in config.models if not m.vision] or list(config.models)

    def price(m: ModelConfig) -> tuple[bool, float]:
        if m.priced:
            return True, request_cost_per_1k(m, mix.prompt_tokens, mix.completion_tokens)
        return False, m.cost

    return max(pool, key=price).name
