"""Lazy strategy registry: names map to ``"module:Class"`` strings, imported on use.

So a process that routes with MiniLM never imports vLLM, and unit tests import neither.
A ``"module:Class"`` value for ``ROUTER_STRATEGY`` loads a custom strategy.
"""

from __future__ import annotations

import importlib

from strategies.base import RoutingStrategy, StrategyContext

STRATEGIES: dict[str, str] = {
    "intent": "strategies.intent.strategy:IntentStrategy",
    "auto": "strategies.auto.strategy:AutoStrategy",
}


class UnknownStrategyError(ValueError):
    """ROUTER_STRATEGY names no known strategy."""


def resolve(name: str) -> type:
    """The strategy class for a registered name or a ``module:Class`` path."""
    target = STRATEGIES.get(name)
    if target is None:
        if ":" not in name:
            raise UnknownStrategyError(
                f"unknown ROUTER_STRATEGY '{name}'; valid: {', '.join(sorted(STRATEGIES))} "
                "(or a 'module:Class' path)"
            )
        target = name
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UnknownStrategyError(
                f"ROUTER_STRATEGY '{name}': no module '{module_name}'"
            ) from None
        raise
    try:
        return getattr(module, class_name)  # type: ignore[no-any-return]
    except AttributeError:
        raise UnknownStrategyError(
            f"ROUTER_STRATEGY '{name}': module '{module_name}' has no '{class_name}'"
        ) from None


def create_strategy(name: str, context: StrategyContext) -> RoutingStrategy:
    """Build (but do not start) the named strategy."""
    cls = resolve(name)
    strategy = cls(context)
    if not isinstance(strategy, RoutingStrategy):
        raise UnknownStrategyError(f"ROUTER_STRATEGY '{name}' does not implement RoutingStrategy")
    return strategy
