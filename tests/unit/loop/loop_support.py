"""Shared setup for the collect/label tests: a real loopback upstream (tests/
upstream_server.py) scripted per model, a routing config pointing at it, JSONL helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.cli.main import main
from tests.upstream_server import Scripted, UpstreamServer

# USD per 1M tokens (input, output)
PRICES = {"cheap": (0.5, 1.5), "strong": (3.0, 15.0), "judge": (1.0, 2.0)}


def write_config(tmp_path: Path, url: str, **model_extra: dict[str, Any]) -> Path:
    """cheap, strong and judge on ``url``, priced; ``model_extra[name]`` adds keys."""
    models = []
    for name, (inp, out) in PRICES.items():
        entry = {"name": name, "base_url": url, "input_price_per_1m": inp}
        entry |= {"output_price_per_1m": out, **model_extra.get(name, {})}
        models.append(entry)
    path = tmp_path / "routing.yaml"
    path.write_text(json.dumps({"models": models}))  # JSON is YAML
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def user_text(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def usage_of(body: dict[str, Any], answer: str) -> dict[str, int]:
    """Deterministic token counts: characters of the prompt and of the answer."""
    return {"prompt_tokens": len(user_text(body)), "completion_tokens": len(answer)}


def echo(body: dict[str, Any], n: int) -> Scripted:
    """Every model answers '<model>: <prompt>' with usage_of's counts."""
    answer = f"{body['model']}: {user_text(body)}"
    return Scripted(content=answer, usage=usage_of(body, answer))


def cost_of(model: str, usage: dict[str, int]) -> float:
    inp, out = PRICES[model]
    return (usage["prompt_tokens"] * inp + usage["completion_tokens"] * out) / 1e6


def prompts(n: int, reference: bool = False) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"id": f"q{i}", "messages": [{"role": "user", "content": f"q{i}?"}]}
        if reference:
            row["reference"] = str(i)
        rows.append(row)
    return rows


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([*args, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def calls(server: UpstreamServer, model: str | None = None) -> list[tuple[str, str]]:
    """(model, prompt text) of every request the upstream received."""
    return [
        (r["model"], user_text(r["body"]))
        for r in server.state.requests
        if model is None or r["model"] == model
    ]
