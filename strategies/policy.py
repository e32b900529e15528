"""The failure policy shared by the strategies: a timeout, then fallback or 503.

A classifier or encoder that fails or hangs must not fail the request when the operator
chose ``on_error=fallback``; with ``on_error=error`` the client gets 503. Overload
(429) and shutdown (503) are not classifier faults: they pass through unchanged, for
every strategy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Literal, TypeVar

import structlog

from models.core.errors import OverloadedError, ShuttingDownError, StrategyUnavailableError

if TYPE_CHECKING:
    from strategies.base import StrategyMetrics

T = TypeVar("T")


async def run_with_policy(
    work: Awaitable[T],
    *,
    strategy: str,
    what: str,
    timeout_s: float,
    on_error: Literal["fallback", "error"],
    metrics: StrategyMetrics,
) -> T | None:
    """``work``'s result; None when it failed or timed out and the policy is fallback.

    Raises StrategyUnavailableError (503) under ``on_error=error``; OverloadedError and
    ShuttingDownError always propagate.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await work
    except (OverloadedError, ShuttingDownError):
        raise
    except TimeoutError:
        kind = "timeout"
        structlog.get_logger("llm_router").warning(
            "strategy_timeout", strategy=strategy, timeout_s=timeout_s
        )
    except Exception as exc:  # the failure boundary: any classifier fault follows the policy
        kind = "error"
        structlog.get_logger("llm_router").warning(
            "strategy_failed", strategy=strategy, error_type=type(exc).__name__, exc_info=exc
        )
    metrics.strategy_errors.labels(strategy, kind).inc()
    if on_error == "error":
        raise StrategyUnavailableError(f"{what} unavailable ({kind})")
    return None
