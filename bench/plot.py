"""Scaling plots from bench/results/service.json: throughput vs concurrency and latency
vs conversation length, one line per strategy.

    python -m bench.plot
"""

from __future__ import annotations

import json

from bench.common import RESULTS

LENGTH_PREFIX = "conversation_"


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads((RESULTS / "service.json").read_text())["results"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for setup, by_workload in data.items():
        short = by_workload.get("short_text", {})
        if short:
            cs = sorted(short, key=int)
            ax1.plot(
                [int(c) for c in cs],
                [short[c]["throughput_rps"] for c in cs],
                marker="o",
                label=setup,
            )
        lengths = sorted(
            (int(w.removeprefix(LENGTH_PREFIX)), w)
            for w in by_workload
            if w.startswith(LENGTH_PREFIX)
        )
        if lengths:
            ax2.plot(
                [n for n, _ in lengths],
                [by_workload[w]["1"]["p50_ms"] for _, w in lengths],
                marker="o",
                label=setup,
            )
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="concurrency",
        ylabel="decisions/s",
        title="Throughput vs concurrency (short text)",
    )
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="conversation length (≈ tokens)",
        ylabel="p50 latency (ms), concurrency 1",
        title="Latency vs conversation length",
    )
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = RESULTS / "scaling.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
