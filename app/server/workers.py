"""Several worker processes on one port (``ROUTER_WORKERS``), so one server uses every core.

One Python process routes on one core at a time (the GIL, plus the event loop's own
parsing and JSON work), so the supervisor here claims the address and spawns N workers,
each listening on it with SO_REUSEPORT so the kernel spreads connections evenly between
them (where SO_REUSEPORT is missing they share one listening socket). Each worker is a
whole app (its own strategy and batcher).
They share two things through a fresh temporary directory: prometheus-client's
multiprocess files (one scrape shows every worker's metrics) and one readiness marker
per worker (``/ready`` is 200 only when every worker is). SIGTERM or SIGINT drains them
all; SIGHUP makes each reload the routing config (app/server/reload.py); a worker that
dies stops the rest, and the server exits non-zero so whatever runs
it restarts the whole group.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.connection import wait
from pathlib import Path
from types import FrameType
from typing import Any

from app.api.readiness import WorkerGroup
from app.metrics import MULTIPROC_ENV
from app.server.cpus import usable_cpus
from app.server.serving import build_server, uvicorn_options
from app.settings import Settings
from models.core.errors import ConfigError

# how long the supervisor waits past the drain timeout before killing a worker
KILL_GRACE_S = 5


def worker_count(settings: Settings) -> int:
    """How many worker processes ``ROUTER_WORKERS`` asks for ('auto' = usable cores)."""
    return usable_cpus() if settings.workers == "auto" else int(settings.workers)


def check_workers(settings: Settings, count: int) -> None:
    """Refuse a worker count the strategy cannot use (each worker loads its own model)."""
    if count > 1 and settings.strategy == "intent" and settings.intent.backend == "vllm":
        raise ConfigError(
            f"ROUTER_WORKERS={settings.workers}: the in-process vLLM backend runs one engine "
            "per process and each worker would start its own on the same GPU. Use "
            "ROUTER_WORKERS=1 with one router process per GPU, or the remote backend "
            "(ROUTER_INTENT__BACKEND=remote) and scale the routers freely."
        )


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT (not yet listening)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _worker_main(settings: Settings, listen: socket.socket | tuple[str, int]) -> None:
    """One worker process: the whole app, serving on the supervisor's socket, or on its own
    SO_REUSEPORT socket for the supervisor's (host, port)."""

    sock = listen if isinstance(listen, socket.socket) else _reuse_port_socket(*listen)
    server, fatal = build_server(settings)
    # uvicorn re-raises the signal it caught once drained; a no-op handler lets the
    # worker report its own exit status instead of dying by SIGTERM
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    server.run(sockets=[sock])
    if fatal:
        print(f"llm-router: error: strategy failed to start: {fatal[0]}", file=sys.stderr)
    sys.exit(1 if fatal or not server.started else 0)


def serve_workers(settings: Settings, count: int) -> int:
    """Run ``count`` workers on one port until SIGTERM/SIGINT (SIGHUP: every worker
    reloads the routing config); the exit status to return."""
    import uvicorn
    from prometheus_client.multiprocess import mark_process_dead

    shared = tempfile.mkdtemp(prefix="llm-router-workers-")
    os.environ[MULTIPROC_ENV] = shared  # before any worker imports prometheus_client
    settings = settings.model_copy(update={"workers": count})
    group = WorkerGroup(Path(shared), count)
    listen: socket.socket | tuple[str, int]
    if hasattr(socket, "SO_REUSEPORT"):
        # Each worker listens on its own SO_REUSEPORT socket and the kernel spreads new
        # connections across them evenly. One shared listening socket lets whichever
        # worker is awake accept most of a client's keep-alive connections, so one worker
        # did most of the work. This socket only claims the address (and learns the port
        # when it is 0); it never listens, so no connection waits on it.
        try:
            sock = _reuse_port_socket(settings.host, settings.port)
        except OSError as exc:
            print(
                f"llm-router: error: cannot listen on {settings.host}:{settings.port}: "
                f"{exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
        listen = (settings.host, int(sock.getsockname()[1]))
    else:
        sock = uvicorn.Config(
            "app.server.factory:create_app", **uvicorn_options(settings)
        ).bind_socket()
        listen = sock
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker_main, args=(settings, listen), name=f"llm-router-worker-{i}")
        for i in range(count)
    ]
    stopping = {"signal": 0, "failed": False, "reloads": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping["signal"] = signum

    def on_reload(signum: int, frame: FrameType | None) -> None:
        stopping["reloads"] += 1

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    # workers inherit an ignored SIGHUP (the default would end them) until their app
    # installs its reload handler; the supervisor's own handler passes SIGHUP on to them
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        for worker in workers:
            worker.start()
        signal.signal(signal.SIGHUP, on_reload)
        _supervise(workers, stopping, group, shared, mark_process_dead, settings.drain_timeout_s)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sock.close()
        shutil.rmtree(shared, ignore_errors=True)
        os.environ.pop(MULTIPROC_ENV, None)
    failed = stopping["failed"] or any(w.exitcode not in (0, None) for w in workers)
    return 1 if failed else 0


def _supervise(
    workers: list[Any],
    stopping: dict[str, Any],
    group: WorkerGroup,
    shared: str,
    mark_process_dead: Any,
    drain_timeout_s: float,
) -> None:
    """Wait for a signal or a worker's death, then stop every worker and wait for them
    (each may drain for ``drain_timeout_s``, then is killed)."""
    running = {w.sentinel: w for w in workers}
    signalled = False
    reloads = 0
    while running:
        if stopping["reloads"] > reloads and not stopping["signal"]:
            reloads = stopping["reloads"]  # SIGHUP: each worker reloads its own config
            for worker in running.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGHUP)
        for sentinel in wait(list(running), timeout=0.2):
            worker = running.pop(sentinel)  # type: ignore[call-overload]
            worker.join()
            mark_process_dead(worker.pid, shared)
            group.mark_gone(worker.pid)
            if not stopping["signal"]:
                stopping["failed"] = True  # a worker died on its own: stop the group
                stopping["signal"] = signal.SIGTERM
        if stopping["signal"] and not signalled:
            signalled = True
            for worker in running.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
            deadline = time.monotonic() + drain_timeout_s + KILL_GRACE_S
            for worker in list(running.values()):
                worker.join(max(0.0, deadline - time.monotonic()))
                if worker.is_alive():
                    worker.kill()
                    worker.join()
