"""``create_app(settings)``: builds the FastAPI app; its lifespan loads one strategy.

Config and strategy name are checked when the app is built (a bad config never
serves). Loading and warming the strategy runs in the background so ``/health``
answers at once and ``/ready`` says 503 until the strategy is warm; a failure there
is fatal (``on_fatal`` lets the server exit non-zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI

from app import __version__
from app.api.admission import Admission
from app.api.middleware import RouterMiddleware
from app.api.readiness import WorkerGroup
from app.api.routes import ENDPOINTS, router
from app.api.state import RouterState
from app.capture.writer import CaptureWriter, check_capture_dir
from app.errors import install_error_handlers
from app.images.loader import ImageLoader
from app.logs import configure_logging
from app.metrics import RouterMetrics
from app.proxy.accounting import resolve_baseline
from app.proxy.upstream import upstream_client
from app.server.reload import Reloader
from app.server.startup import backend_label, start_strategy
from app.settings import Settings, get_settings
from models.core.routing_config import RoutingConfig, load_routing_config
from strategies.registry import resolve
from strategies.sessions import SessionRouter


def init_app_state(settings: Settings, config: RoutingConfig) -> RouterState:
    """The state every handler shares, before the lifespan opens its clients."""
    metrics = RouterMetrics()
    state = RouterState(
        settings=settings, config=config, metrics=metrics, workers=WorkerGroup.from_env(settings)
    )
    limits = settings.limits
    state.admission = Admission(
        limits.max_concurrency, limits.max_queued, limits.queue_timeout_s, metrics
    )
    if settings.sessions.policy != "off":
        state.sessions = SessionRouter(settings.sessions, config)
    return state


async def _close(state: RouterState, starting: asyncio.Task[None]) -> None:
    """Undo the lifespan, in reverse order: the strategy, then the proxy and clients."""
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await starting
    state.metrics.ready.set(0)
    if state.workers is not None:
        state.workers.mark_gone()
    if state.strategy is not None:
        with contextlib.suppress(Exception):
            await state.strategy.aclose()
        # release the strategy's native runtimes (ONNX Runtime, torch) now, while the
        # process is whole: left to interpreter exit, tearing down ONNX Runtime beside
        # torch crashed processes (exit 139)
        gc.collect()
    if state.proxy is not None:
        await state.proxy.aclose()
    if state.http is not None:
        await state.http.aclose()
    if state.images is not None:
        await state.images.aclose()
    if state.capture is not None:  # what is queued is written before the process exits
        await asyncio.to_thread(state.capture.close)


def _lifespan(
    state: RouterState, reloader: Reloader, on_fatal: Callable[[str], None] | None, sighup: bool
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Open the clients, start the strategy in the background (and reload it on SIGHUP when
    ``sighup``); close all on the way out."""
    settings = state.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.metrics.info.labels(
            __version__, settings.strategy, settings.mode, backend_label(settings)
        ).set(1)
        state.http = upstream_client(settings.proxy)
        state.images = ImageLoader(settings)
        if settings.capture.path is not None:
            state.capture = CaptureWriter(settings.capture, state.metrics)
        if settings.mode == "proxy":
            from app.proxy.forward import Proxy

            state.proxy = Proxy(
                state.http, state.metrics, settings.proxy, state.config, state.baseline
            )
        starting = asyncio.create_task(start_strategy(state, on_fatal), name="strategy-start")
        undo = reloader.install_signal_handler() if sighup else None
        try:
            yield
        finally:
            if undo is not None:
                undo()
            await reloader.aclose()
            await _close(state, starting)

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    config: RoutingConfig | None = None,
    on_fatal: Callable[[str], None] | None = None,
    reload_on_sighup: bool = False,
) -> FastAPI:
    """Build the service. Raises ConfigError / UnknownStrategyError on bad settings.

    ``reload_on_sighup``: the serving process reloads the routing config on SIGHUP
    (:mod:`app.server.reload`); ``app.state.reloader.reload()`` does it on demand."""
    settings = settings or get_settings()
    configure_logging(settings.log_format, settings.log_level)
    config = config or load_routing_config(settings.config)
    resolve(settings.strategy)  # an unknown name fails now, listing the valid ones
    baseline = resolve_baseline(config, settings.cost.baseline_model, settings.mode == "proxy")
    check_capture_dir(settings.capture)
    state = init_app_state(settings, config)
    state.baseline = baseline
    reloader = Reloader(state, on_fatal)
    app = FastAPI(
        title="llm-router",
        version=__version__,
        lifespan=_lifespan(state, reloader, on_fatal, reload_on_sighup),
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.router = state
    app.state.reloader = reloader
    install_error_handlers(app)
    app.include_router(router)
    if settings.playground:
        from app.api.playground import router as playground_router

        app.include_router(playground_router)
    app.add_middleware(
        RouterMiddleware,  # type: ignore[arg-type]
        metrics=state.metrics,
        max_body_bytes=settings.limits.max_body_bytes,
        endpoints=ENDPOINTS,
    )
    return app
