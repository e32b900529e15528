"""What cost accounting adds per proxied answer, in-process (no HTTP, so no noise from the
other processes on a shared machine): reading usage from a plain body and from a relayed
SSE stream, and counting it (tokens, dollars, baseline).

    python -m bench.serving.bench_usage [--repeat 20000]

The stream is the one tests/upstream_server.py sends for bench_proxy's prompt when usage
is asked for (``"usage": null`` on every chunk, then the usage chunk), fed chunk by chunk
as the relay does; ``drop`` is the case of a client that did not ask (the router asked).
"""

from __future__ import annotations

import argparse
import sys
import timeit

import orjson

from app.metrics import RouterMetrics
from app.proxy.accounting import Accounting, resolve_baseline
from app.proxy.usage import StreamUsage, body_usage
from bench.common import md_table, write_results
from models.core.routing_config import RoutingConfig
from tests.upstream_server import _chunk, count_usage

PROMPT = {"messages": [{"role": "user", "content": "hello, how are you today?"}]}
CONFIG = {
    "models": [
        {"name": "primary", "input_price_per_1m": 0.04, "output_price_per_1m": 0.16},
        {"name": "frontier", "input_price_per_1m": 1.25, "output_price_per_1m": 10.0},
    ]
}


def cases() -> dict[str, object]:
    content = "upstream says: hello, how are you today?"
    usage = count_usage(PROMPT, content)
    events = [_chunk(0, "m", {"role": "assistant", "content": ""}, usage=None)]
    events += [_chunk(0, "m", {"content": " " + w}, usage=None) for w in content.split(" ")]
    events += [_chunk(0, "m", {}, "stop", usage=None), _chunk(0, "m", None, usage=usage)]
    events.append(b"data: [DONE]\n\n")
    body = orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": usage,
        }
    )
    config = RoutingConfig.model_validate(CONFIG)
    accounting = Accounting(config, RouterMetrics(), resolve_baseline(config, "", True))

    def plain() -> None:
        charge = accounting.charge("primary", body_usage(body, ""))
        assert charge is not None
        charge.headers()

    def stream(drop: bool) -> None:
        reader = StreamUsage(drop)
        for event in events:
            reader.feed(event)
        reader.finish()
        assert accounting.charge("primary", reader.usage) is not None

    return {
        "plain answer: read body + count + headers": plain,
        f"stream, client asked ({len(events)} events): read + count": lambda: stream(False),
        f"stream, router asked ({len(events)} events): read + drop + count": lambda: stream(True),
        "reference: orjson.loads of the plain body": lambda: orjson.loads(body),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20000)
    parser.add_argument("--name", default="usage-accounting")
    args = parser.parse_args(argv)
    rows, results = [], []
    for name, fn in cases().items():
        best = min(timeit.repeat(fn, number=args.repeat, repeat=5)) / args.repeat  # type: ignore[arg-type]
        results.append({"case": name, "us_per_answer": round(best * 1e6, 2)})
        rows.append([name, results[-1]["us_per_answer"]])
        print(results[-1], flush=True)
    notes = [
        "Best of 5 repeats of --repeat calls each, one process, CPU only (no HTTP).",
        "The accounting runs once per answer; the stream reading once per network chunk.",
    ]
    table = md_table(["case", "µs per answer"], rows)
    write_results(
        args.name,
        {"results": results, "repeat": args.repeat, "notes": notes},
        table + "\n\n" + "\n".join(f"* {n}" for n in notes),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
