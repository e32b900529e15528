"""Building and starting the strategy: at startup, and again on a reload (SIGHUP).

A load failure at startup is fatal (``on_fatal`` lets the server exit non-zero); a failure
on reload is not (:mod:`app.server.reload` keeps the running strategy).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.api.state import RouterState
from app.logs import adopt_library_loggers, get_logger
from app.server.cpus import set_torch_threads, torch_threads
from app.settings import Settings
from models.core.routing_config import RoutingConfig
from strategies.base import StrategyContext
from strategies.registry import create_strategy


def backend_label(settings: Settings) -> str:
    if settings.strategy == "intent":
        return settings.intent.backend
    if settings.strategy == "auto":
        return settings.auto.encoder
    return "custom"


def strategy_context(
    state: RouterState, config: RoutingConfig, on_fatal: Callable[[str], None] | None
) -> StrategyContext:
    """What a strategy is built from; ``on_fatal`` is what its engine's death calls."""

    def fatal(message: str) -> None:  # after startup too, e.g. the vLLM engine died
        state.start_error = message
        state.failure = "the classifier engine died; the process is exiting"
        if on_fatal is not None:
            on_fatal(message)

    return StrategyContext(
        settings=state.settings,
        config=config,
        metrics=state.metrics,
        on_fatal=fatal,
        threads=torch_threads(state.settings),
    )


async def start_strategy(state: RouterState, on_fatal: Callable[[str], None] | None) -> None:
    log = get_logger()
    began = time.perf_counter()
    context = strategy_context(state, state.config, on_fatal)
    try:
        set_torch_threads(context.threads, passive=state.settings.encoder.runtime == "onnx")
        strategy = create_strategy(state.settings.strategy, context)
        state.strategy = strategy
        await strategy.start()
    except Exception as exc:  # any load failure stops the service with a clear message
        adopt_library_loggers()
        state.start_error = f"{type(exc).__name__}: {exc}"
        state.failure = "the strategy failed to start; see the server log"
        log.error("strategy_start_failed", strategy=state.settings.strategy, error=str(exc))
        if on_fatal is not None:
            on_fatal(state.start_error)
        return
    state.started = True
    adopt_library_loggers()  # model libraries imported while loading may add handlers
    state.metrics.ready.set(1)
    if state.workers is not None:
        state.workers.mark_ready()
    log.info(
        "strategy_ready",
        strategy=state.settings.strategy,
        backend=backend_label(state.settings),
        load_s=round(time.perf_counter() - began, 3),
    )
