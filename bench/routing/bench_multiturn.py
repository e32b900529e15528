"""Multi-turn conversations with images: does the router pick the model a user expects?

Replays ``bench/data/multiturn.jsonl`` (hand-labelled: images early and a latest turn that
is unrelated / about the image / with its own image, several images over several turns,
text-only conversations whose latest turn differs) through the real app with the default
config (intent strategy, embedding backend), in recommend mode and in proxy mode. In proxy
mode every model's upstream is one loopback OpenAI-compatible server that answers 400 to
an image part sent to a text-only model, as text-only providers do; a conversation counts
as right only when the answer is a 200 from the expected model, and every body a text
model received is checked for image parts (none allowed) and markers (one per image).

    python -m bench.routing.bench_multiturn            # -> bench/results/multiturn.{json,md}
    python -m bench.routing.bench_multiturn --modes recommend --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml

from app.settings import DEFAULT_CONFIG, Settings
from bench.common import ROOT, md_table, write_results
from tests.helpers import app_client, make_settings
from tests.upstream_server import UpstreamServer, image_parts

DATA = ROOT / "bench" / "data" / "multiturn.jsonl"
HOLDOUT = ROOT / "bench" / "data" / "multiturn-holdout.jsonl"  # written after the rule
MODES = ("recommend", "proxy")


def read_rows(path: Path = DATA) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _images(row: dict[str, Any]) -> int:
    return image_parts({"messages": row["messages"]})


async def run_recommend(rows: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """One decision per conversation, from the recommend-mode response's ``router``."""
    out = []
    async with app_client(settings) as client:
        for row in rows:
            resp = await client.post(
                "/v1/chat/completions", json={"model": "router", "messages": row["messages"]}
            )
            router = resp.json().get("router", {}) if resp.status_code == 200 else {}
            out.append(
                {
                    "status": resp.status_code,
                    "model": router.get("model"),
                    "reason": router.get("reason"),
                    "intent": router.get("intent"),
                    "strip_images": router.get("strip_images"),
                }
            )
    return out


def proxy_config(base_url: str, folder: Path) -> Path:
    """The default routing config with every model's upstream on ``base_url``."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    for model in config["models"]:
        model["base_url"] = base_url
        model.pop("api_key_env", None)
    path = folder / "routing.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


async def run_proxy(rows: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """One proxied answer per conversation from an upstream that refuses images sent to
    text-only models; what each upstream received is checked."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    text_only = {m["name"] for m in config["models"] if not m.get("vision")}
    marker = settings.proxy.image_marker
    out = []
    with UpstreamServer("upstream") as upstream, tempfile.TemporaryDirectory() as tmp:
        upstream.state.text_only.update(text_only)
        path = proxy_config(upstream.base_url, Path(tmp))
        proxied = settings.model_copy(update={"mode": "proxy", "config": path})
        async with app_client(proxied) as client:
            for row in rows:
                seen = len(upstream.state.requests)
                resp = await client.post(
                    "/v1/chat/completions",
                    json={"model": "router", "messages": row["messages"]},
                )
                calls = upstream.state.requests[seen:]
                to_text = [c["body"] for c in calls if c["model"] in text_only]
                out.append(
                    {
                        "status": resp.status_code,
                        "model": resp.headers.get("x-router-model"),
                        "reason": resp.headers.get("x-router-reason"),
                        "intent": resp.headers.get("x-router-intent"),
                        "upstream_calls": len(calls),
                        "images_to_text_models": sum(image_parts(b) for b in to_text),
                        "markers_to_text_models": sum(
                            1
                            for b in to_text
                            for m in b["messages"]
                            if isinstance(m.get("content"), list)
                            for p in m["content"]
                            if p.get("type") == "text" and p.get("text") == marker
                        ),
                        "text_model_bodies": len(to_text),
                    }
                )
    return out


def score(rows: list[dict[str, Any]], results: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Accuracy overall and per category, and every miss."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    misses = []
    for row, got in zip(rows, results, strict=True):
        ok = got["status"] == 200 and got["model"] == row["expected_model"]
        if mode == "proxy" and got.get("text_model_bodies"):
            # a text model got the conversation: no image part, one marker per image
            ok = ok and got["images_to_text_models"] == 0
            ok = ok and got["markers_to_text_models"] >= _images(row)
        per[row["category"]]["n"] += 1
        per[row["category"]]["right"] += ok
        if not ok:
            misses.append({"id": row["id"], "expected": row["expected_model"], **got})
    n = sum(c["n"] for c in per.values())
    right = sum(c["right"] for c in per.values())
    summary: dict[str, Any] = {
        "conversations": n,
        "accuracy": round(right / n, 4) if n else 0.0,
        "per_category": {
            k: {"n": c["n"], "accuracy": round(c["right"] / c["n"], 4)} for k, c in per.items()
        },
        "misses": misses,
        "reasons": dict(Counter(str(r["reason"]) for r in results)),
    }
    if mode == "proxy":
        summary["non_200"] = sum(r["status"] != 200 for r in results)
        summary["image_parts_sent_to_text_models"] = sum(
            r["images_to_text_models"] for r in results
        )
    return summary


async def evaluate(
    modes: tuple[str, ...] = MODES,
    settings: Settings | None = None,
    paths: tuple[Path, ...] = (DATA, HOLDOUT),
) -> dict[str, Any]:
    """Every mode's summary on each labelled set, with the default config (one app per
    mode serves every set)."""
    sets = {path.stem: read_rows(path) for path in paths}
    rows = [row for part in sets.values() for row in part]
    settings = settings or make_settings(strategy="intent", log_level="warning")
    report: dict[str, Any] = {"sets": {}}
    for mode in modes:
        run = run_recommend if mode == "recommend" else run_proxy
        results = await run(rows, settings)
        start = 0
        for (name, part), path in zip(sets.items(), paths, strict=True):
            entry = report["sets"].setdefault(
                name, {"data": str(path.relative_to(ROOT)), "modes": {}}
            )
            entry["modes"][mode] = score(part, results[start : start + len(part)], mode)
            start += len(part)
    return report


def table(report: dict[str, Any]) -> str:
    blocks = []
    for entry in report["sets"].values():
        modes = entry["modes"]
        categories = sorted({c for m in modes.values() for c in m["per_category"]})
        headers = ["mode", "accuracy", *categories, "non-200", "image parts to text models"]
        rows = []
        for mode, summary in modes.items():
            cells = [f"{summary['per_category'][c]['accuracy']:.3f}" for c in categories]
            rows.append(
                [
                    mode,
                    f"{summary['accuracy']:.3f} ({summary['conversations']})",
                    *cells,
                    summary.get("non_200", "-"),
                    summary.get("image_parts_sent_to_text_models", "-"),
                ]
            )
        first = next(iter(modes.values()))["per_category"]
        counts = ", ".join(f"{c} {first[c]['n']}" for c in categories)
        blocks.append(f"### {entry['data']}\n\n{md_table(headers, rows)}\n\nPer category: {counts}")
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--results", default="multiturn", help="bench/results/NAME.{json,md}")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    report = asyncio.run(evaluate(modes))
    print(table(report))
    for name, entry in report["sets"].items():
        for mode, summary in entry["modes"].items():
            for miss in summary["misses"]:
                print(name, mode, "miss:", json.dumps(miss))
    if not args.no_write:
        paths = write_results(args.results, report, table(report))
        print("wrote", *paths)


if __name__ == "__main__":
    main()
