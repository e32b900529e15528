"""ROUTER_WORKERS=2: real server processes on loopback sharing one port, merged metrics,
all-or-nothing readiness, SIGTERM draining every worker, startup failure exiting non-zero."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import FAKE, server_process, spawn_server, user, wait_until_ready

pytestmark = pytest.mark.slow  # each test spawns a supervisor and two workers

WORKERS = {"ROUTER_WORKERS": "2", "ROUTER_STRATEGY": FAKE, "ROUTER_TORCH_THREADS": "1"}
BODY = {"model": "router", "messages": [user("hello there")]}


def decisions(metrics_text: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^llm_router_decisions_total\{[^}]*\} (\S+)$", metrics_text, re.M)
    )


def worker_pids(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


async def send(base: str, count: int, concurrency: int) -> list[int]:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def one() -> int:
            async with limit:
                return (await client.post("/v1/chat/completions", json=BODY)).status_code

        return await asyncio.gather(*(one() for _ in range(count)))


def test_two_workers_one_scrape_counts_every_decision() -> None:
    requests = 60
    with server_process(WORKERS, timeout=120) as base:
        statuses = asyncio.run(send(base, requests, 16))
        assert statuses == [200] * requests
        for _ in range(6):  # each scrape may land on either worker: all must agree
            text = httpx.get(f"{base}/metrics", timeout=10).text
            assert decisions(text) == requests
            assert "llm_router_ready 1.0" in text
            served = re.search(
                r'^llm_router_requests_total\{endpoint="/v1/chat/completions",'
                r'method="POST",status="200"\} (\S+)$',
                text,
                re.M,
            )
            assert served is not None and float(served.group(1)) == requests
        assert httpx.get(f"{base}/ready", timeout=10).status_code == 200


def start(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    return spawn_server(env)


def wait_ready(proc: subprocess.Popen[str], base: str) -> None:
    wait_until_ready(proc, base, timeout=120)


def test_sigterm_drains_every_worker_and_exits_zero() -> None:
    proc, base = start(WORKERS)
    try:
        wait_ready(proc, base)
        pids = worker_pids(proc.pid)
        assert len(pids) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
        for pid in pids:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_lets_in_flight_requests_finish() -> None:
    proc, base = start(
        {**WORKERS, "ROUTER_STRATEGY": "tests.fakes:SlowFakeStrategy", "FAKE_ROUTE_DELAY_S": "2"}
    )
    try:
        wait_ready(proc, base)

        async def in_flight_then_sigterm() -> list[int]:
            sending = asyncio.ensure_future(send(base, 8, 8))
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                for _ in range(100):  # until all 8 are inside their 2 s decision
                    text = (await client.get("/metrics")).text
                    if "llm_router_requests_in_flight 8.0" in text:
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError("requests never were in flight together")
            proc.send_signal(signal.SIGTERM)
            return await sending

        assert asyncio.run(in_flight_then_sigterm()) == [200] * 8
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_worker_failing_to_start_stops_the_server_non_zero() -> None:
    proc, _ = start({**WORKERS, "ROUTER_STRATEGY": "tests.fakes:FailingStrategy"})
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert "failing on purpose" in out


@pytest.mark.parametrize(
    "bad",
    [
        {"ROUTER_STRATEGY": "nope"},
        {"ROUTER_WORKERS": "zero"},
        {"ROUTER_COST__BASELINE_MODEL": "nope"},  # an unknown baseline model
    ],
)
def test_bad_settings_fail_before_any_worker_starts(bad: dict[str, str]) -> None:
    proc, _ = start({**WORKERS, **bad})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "spawn_main" not in out and "Started server process" not in out


def established_by_pid(port: int, pids: list[int]) -> dict[int, int]:
    """How many ESTABLISHED connections to ``port`` each process holds (from /proc)."""
    inodes: dict[str, None] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes[f"socket:[{inode}]"] = None
    counts = {}
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        counts[pid] = sum(1 for fd in fds.iterdir() if _readlink(fd) in inodes)
    return counts


def _readlink(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return ""


def test_keep_alive_connections_are_spread_over_the_workers() -> None:
    """Each worker listens with SO_REUSEPORT: 32 keep-alive connections opened at once land
    on both workers (one shared listening socket let one worker take nearly all of them,
    so two workers did little more than one)."""

    async def hold(base: str, count: int, until: asyncio.Event, opened: list[int]) -> None:
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

            async def one() -> None:
                r = await client.post("/v1/chat/completions", json=BODY)
                opened.append(r.status_code)

            await asyncio.gather(*(one() for _ in range(count)))
            await until.wait()

    proc, base = spawn_server(WORKERS)
    try:
        wait_until_ready(proc, base, 120)
        port = int(base.rsplit(":", 1)[1])

        async def run() -> dict[int, int]:
            until, opened = asyncio.Event(), []
            task = asyncio.create_task(hold(base, 32, until, opened))
            while len(opened) < 32:
                await asyncio.sleep(0.05)
            counts = established_by_pid(port, worker_pids(proc.pid))
            until.set()
            await task
            return counts

        counts = asyncio.run(run())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert len(counts) == 2 and sum(counts.values()) >= 16, counts
    assert min(counts.values()) >= 4, counts  # binomial(32, 1/2): below 4 has p < 1e-5
