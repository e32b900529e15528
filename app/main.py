"""``create_app(settings)``: builds the FastAPI app; its lifespan loads one strategy.

Config and strategy name are checked when the app is built (a bad config never
serves). Loading and warming the strategy runs in the background so ``/health``
answers at once and ``/ready`` says 503 until the strategy is warm; a failure there
is fatal (``on_fatal`` lets the server exit non-zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from app import __version__
from app.config import RoutingConfig, load_routing_config
from app.errors import install_error_handlers
from app.logs import configure_logging, get_logger
from app.metrics import RouterMetrics
from app.middleware import RouterMiddleware
from app.routes import ENDPOINTS, router
from app.settings import Settings, get_settings
from strategies.base import RoutingStrategy, StrategyContext
from strategies.registry import create_strategy, resolve


@dataclass
class RouterState:
    """Everything the request handlers share, built by create_app and the lifespan."""

    settings: Settings
    config: RoutingConfig
    metrics: RouterMetrics
    strategy: RoutingStrategy | None = None
    start_error: str | None = None
    http: httpx.AsyncClient | None = None
    proxy: Any = None
    active: int = 0
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def ready(self) -> bool:
        return self.strategy is not None and self.strategy.ready


def _backend_label(settings: Settings) -> str:
    if settings.strategy == "intent":
        return settings.intent.backend
    if settings.strategy == "auto":
        return settings.auto.encoder
    return "custom"


def _set_torch_threads(requested: int) -> None:
    """Bound torch's thread pool when the strategy uses torch (its default, one thread
    per core, fights the event loop for CPU and gives long latency tails)."""
    threads = requested or max(1, (os.cpu_count() or 2) - 1)
    torch = sys.modules.get("torch")
    if torch is None:  # torch reads this when it first starts its thread pool
        os.environ["OMP_NUM_THREADS"] = str(threads)
    else:
        torch.set_num_threads(threads)


async def _start_strategy(state: RouterState, on_fatal: Callable[[str], None] | None) -> None:
    log = get_logger()
    began = time.perf_counter()

    def fatal(message: str) -> None:  # after startup too, e.g. the vLLM engine died
        state.start_error = message
        if on_fatal is not None:
            on_fatal(message)

    context = StrategyContext(
        settings=state.settings, config=state.config, metrics=state.metrics, on_fatal=fatal
    )
    try:
        _set_torch_threads(state.settings.torch_threads)
        strategy = create_strategy(state.settings.strategy, context)
        state.strategy = strategy
        await strategy.start()
    except Exception as exc:  # any load failure stops the service with a clear message
        state.start_error = f"{type(exc).__name__}: {exc}"
        log.error("strategy_start_failed", strategy=state.settings.strategy, error=str(exc))
        if on_fatal is not None:
            on_fatal(state.start_error)
        return
    state.metrics.ready.set(1)
    log.info(
        "strategy_ready",
        strategy=state.settings.strategy,
        backend=_backend_label(state.settings),
        load_s=round(time.perf_counter() - began, 3),
    )


def create_app(
    settings: Settings | None = None,
    *,
    config: RoutingConfig | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """Build the service. Raises ConfigError / UnknownStrategyError on bad settings."""
    settings = settings or get_settings()
    configure_logging(settings.log_format, settings.log_level)
    config = config or load_routing_config(settings.config)
    resolve(settings.strategy)  # an unknown name fails now, listing the valid ones
    metrics = RouterMetrics()
    state = RouterState(settings=settings, config=config, metrics=metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics.info.labels(
            __version__, settings.strategy, settings.mode, _backend_label(settings)
        ).set(1)
        state.http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.proxy.timeout_s, connect=settings.proxy.connect_timeout_s
            ),
            limits=httpx.Limits(max_connections=settings.proxy.max_connections),
            follow_redirects=False,
        )
        if settings.mode == "proxy":
            from app.proxy import Proxy

            state.proxy = Proxy(state)
        task = asyncio.create_task(_start_strategy(state, on_fatal), name="strategy-start")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            metrics.ready.set(0)
            if state.strategy is not None:
                with contextlib.suppress(Exception):
                    await state.strategy.aclose()
            await state.http.aclose()

    app = FastAPI(
        title="llm-router",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.router = state
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(
        RouterMiddleware,  # type: ignore[arg-type]
        metrics=metrics,
        max_body_bytes=settings.limits.max_body_bytes,
        endpoints=ENDPOINTS,
    )
    return app
