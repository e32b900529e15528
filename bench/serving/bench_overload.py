"""Goodput under overload: successful answers per second with clients that retry at once
on 429, at the concurrency limit and at 2x (and more) the limit, in the same run.

Reports the ratio goodput(2x limit) / goodput(at limit); the target is >= 0.8. The
reject-at-once configuration (``ROUTER_LIMITS__QUEUE_TIMEOUT_S=0``, the old behaviour)
runs in the same run as the baseline.

    python -m bench.serving.bench_overload [--setup intent|fake] [--limit 8] [--duration 10]
        [--factors 1 2 8]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.common import HttpTarget, md_table, router_server, write_results
from bench.serving.workloads import body

SETUPS: dict[str, dict[str, str]] = {
    "intent": {"ROUTER_STRATEGY": "intent", "ROUTER_INTENT__BACKEND": "embedding"},
    "fake": {"ROUTER_STRATEGY": "tests.fakes:FakeStrategy"},
}
QUEUEING = {"queue (default 2 s)": None, "reject at once (0 s)": "0"}


async def _client(target: HttpTarget, payload: bytes, stop: float, counts: dict[str, int]) -> None:
    """One keep-alive connection posting until ``stop``; a 429 is retried at once."""
    reader, writer = await asyncio.open_connection(target.host, target.port)
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    try:
        while time.perf_counter() < stop:
            writer.write(head + payload)
            status = (await reader.readline()).split(b" ", 2)[1].decode()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            key = "ok" if status == "200" else status
            counts[key] = counts.get(key, 0) + 1
    finally:
        writer.close()


async def goodput(target: HttpTarget, payload: bytes, clients: int, duration: float) -> dict:
    counts: dict[str, int] = {}
    stop = time.perf_counter() + duration
    await asyncio.gather(*(_client(target, payload, stop, counts) for _ in range(clients)))
    return {
        "clients": clients,
        "ok": counts.get("ok", 0),
        "rejected_429": counts.get("429", 0),
        "other": sum(v for k, v in counts.items() if k not in ("ok", "429")),
        "goodput_rps": round(counts.get("ok", 0) / duration, 1),
    }


def run(setup: str, limit: int, duration: float, factors: list[int]) -> dict[str, Any]:
    payload = body("short_text")
    results: dict[str, Any] = {}
    for label, queue_timeout in QUEUEING.items():
        env = {**SETUPS[setup], "ROUTER_LIMITS__MAX_CONCURRENCY": str(limit)}
        if queue_timeout is not None:
            env["ROUTER_LIMITS__QUEUE_TIMEOUT_S"] = queue_timeout
        with router_server(env) as target:
            asyncio.run(goodput(target, payload, limit, 2.0))  # warm-up
            rows = {f: asyncio.run(goodput(target, payload, f * limit, duration)) for f in factors}
        base = rows[factors[0]]["goodput_rps"] or 1.0
        for row in rows.values():
            row["ratio_vs_limit"] = round(row["goodput_rps"] / base, 3)
        results[label] = rows
        print(label, rows, flush=True)
    return results


def table(results: dict[str, Any], limit: int) -> str:
    rows = [
        [
            label,
            r["clients"],
            f"{r['clients'] / limit:g}x",
            r["ok"],
            r["rejected_429"],
            r["goodput_rps"],
            r["ratio_vs_limit"],
        ]
        for label, by_factor in results.items()
        for r in by_factor.values()
    ]
    return md_table(
        ["admission", "clients", "load", "200s", "429s", "goodput /s", "goodput vs at limit"],
        rows,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", default="intent", choices=list(SETUPS))
    parser.add_argument("--limit", type=int, default=8, help="ROUTER_LIMITS__MAX_CONCURRENCY")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load level")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 2, 8])
    args = parser.parse_args(argv)
    results = run(args.setup, args.limit, args.duration, args.factors)
    md = (
        f"Strategy {args.setup}, limit {args.limit}, {args.duration:g} s per level, clients "
        "retry a 429 at once; client and server share the machine.\n\n" + table(results, args.limit)
    )
    write_results(
        "overload",
        {"setup": args.setup, "limit": args.limit, "duration_s": args.duration, "results": results},
        md,
    )
    print(md)
    return results


if __name__ == "__main__":
    main()
