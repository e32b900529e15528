"""Reloading the routing config and the artifact it names, on SIGHUP, without a restart.

The new config is read and validated, and a new strategy is built and warmed up beside the
running one, which keeps answering meanwhile. Only when the new one is ready are the two
swapped, in one step; requests that were routing on the old strategy finish on it, and it
is closed once they have (or after ``drain_timeout_s``). A config that does not validate,
or a strategy that fails to start, is logged and counted
(``llm_router_config_reloads_total{result="error"}``), and the old one keeps serving: a
reload can never take a serving router down. Environment settings are not re-read; the
routing config file (``ROUTER_CONFIG``) and the artifact are. With several workers the
supervisor passes SIGHUP on to each, and each reloads itself.

A reload builds the new strategy before closing the old, so for a while both are loaded:
twice the encoder's memory (with the in-process vLLM backend, two engines on the GPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable

from app.api.state import RouterState
from app.logs import get_logger
from app.proxy.accounting import resolve_baseline
from app.server.startup import strategy_context
from models.core.errors import ConfigError
from models.core.routing_config import load_routing_config
from strategies.registry import create_strategy


class Reloader:
    """Runs one reload at a time; a SIGHUP during a reload asks for one more after it."""

    def __init__(self, state: RouterState, on_fatal: Callable[[str], None] | None) -> None:
        self.state, self.on_fatal = state, on_fatal
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._closing: set[asyncio.Task[None]] = set()

    def request(self) -> None:
        """Ask for a reload (the SIGHUP handler); returns at once."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="config-reload")

    async def _run(self) -> None:
        while True:
            self._again = False
            await self.reload()
            if not self._again:
                return

    async def reload(self) -> bool:
        """Read, validate and start the new config; swap it in. False (and the old config
        still serving) when anything fails."""
        state, log = self.state, get_logger()
        began = time.perf_counter()
        path = state.settings.config
        try:
            config = load_routing_config(path)
            baseline = resolve_baseline(
                config, state.settings.cost.baseline_model, state.settings.mode == "proxy"
            )
        except ConfigError as exc:
            return self._failed("invalid_config", str(exc))
        if state.strategy is None or not state.started:
            return self._failed("not_started", "the strategy has not started yet")
        try:
            strategy = create_strategy(
                state.settings.strategy, strategy_context(state, config, self.on_fatal)
            )
        except Exception as exc:  # a config the strategy cannot use (e.g. no intents)
            return self._failed("strategy_error", f"{type(exc).__name__}: {exc}")
        try:
            await strategy.start()
        except Exception as exc:  # the reload boundary: the old strategy keeps serving
            with contextlib.suppress(Exception):
                await strategy.aclose()
            return self._failed("strategy_error", f"{type(exc).__name__}: {exc}")
        old = state.strategy
        state.config, state.strategy = config, strategy  # one step: no await in between
        state.baseline = baseline
        if state.proxy is not None:
            state.proxy.use_config(config, baseline)
        if state.sessions is not None:  # sessions keep their models; new costs rank them
            state.sessions.config = config
        state.metrics.config_reloads.labels("success").inc()
        log.info(
            "config_reloaded",
            config=str(path),
            strategy=state.settings.strategy,
            load_s=round(time.perf_counter() - began, 3),
        )
        closing = asyncio.get_running_loop().create_task(self._close(old), name="old-strategy")
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        return True

    async def _close(self, old: object) -> None:
        """Close the replaced strategy once no request routes on it any more."""
        drained = await self.state.users.wait_idle(old, self.state.settings.drain_timeout_s)
        if not drained:
            get_logger().warning("old_strategy_closed_busy", in_flight=self.state.users.busy(old))
        aclose = getattr(old, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()

    def _failed(self, kind: str, detail: str) -> bool:
        self.state.metrics.config_reloads.labels("error").inc()
        get_logger().error("config_reload_failed", kind=kind, error=detail)
        return False

    async def aclose(self) -> None:
        """Stop a reload in progress and close strategies still being replaced."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task in list(self._closing):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def install_signal_handler(self) -> Callable[[], None]:
        """Reload on SIGHUP (the serving process's event loop); returns the undo."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.request)

        def undo() -> None:
            loop.remove_signal_handler(signal.SIGHUP)

        return undo
