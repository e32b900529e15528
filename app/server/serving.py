"""The uvicorn server for one process of the app: the options every process shares, and
SIGTERM as "drain, then exit 0"."""

from __future__ import annotations

import signal
from typing import Any

from app.server.factory import create_app
from app.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config keyword arguments shared by ``serve`` and each worker."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": settings.drain_timeout_s,
    }


def _drain_server(config: Any) -> Any:
    """A uvicorn server for which SIGTERM means "drain, then exit 0".

    uvicorn re-raises a captured SIGTERM after its graceful shutdown, so a clean drain
    ended as "killed by SIGTERM" (exit 143) and orchestrators logged it as a failure.
    SIGINT keeps uvicorn's behaviour (Ctrl-C: exit 130).
    """
    import signal

    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM:
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list) and signal.SIGTERM in captured:
                    captured.remove(signal.SIGTERM)

    return DrainingServer(config)


def build_server(settings: Settings) -> tuple[Any, list[str]]:
    """The uvicorn server for one process of the app (SIGTERM drains it), and the list a
    fatal strategy error lands in (a failed start, a dead engine), which stops it."""
    import uvicorn

    fatal: list[str] = []
    servers: list[uvicorn.Server] = []

    def on_fatal(message: str) -> None:
        fatal.append(message)
        for server in servers:
            server.should_exit = True

    app = create_app(settings, on_fatal=on_fatal, reload_on_sighup=True)
    # SIGHUP reloads the config once the app's lifespan runs; until then it must not end
    # the process (its default action), e.g. a supervisor passing one on during startup
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    servers.append(_drain_server(uvicorn.Config(app, **uvicorn_options(settings))))
    return servers[0], fatal
