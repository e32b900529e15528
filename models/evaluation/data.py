"""Labelled JSONL for training and evaluation: rows, per-model score/cost matrices.

A row is an object with ``messages`` (or ``text``, a one-turn user message) plus either
``intent`` (intent data) or ``scores`` / ``costs`` per model (quality data).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file (``text`` rows become one user message); a bad line raises
    ValueError naming its line number."""
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc})") from None
            if isinstance(row, dict) and "messages" not in row and isinstance(row.get("text"), str):
                row["messages"] = [{"role": "user", "content": row["text"]}]
            if not isinstance(row, dict) or "messages" not in row:
                raise ValueError(f"{path}:{lineno}: expected an object with 'messages' or 'text'")
            yield row


def score_matrix(
    rows: list[dict[str, Any]], models: list[str], path: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores [n, m] and costs [n, m] (None when no row has costs); every row must score
    every model."""
    scores = np.zeros((len(rows), len(models)), dtype=np.float32)
    costs = np.zeros_like(scores)
    has_costs = any("costs" in r for r in rows)
    for i, row in enumerate(rows):
        got = row.get("scores")
        if not isinstance(got, dict):
            raise ValueError(f"{path}: row {i + 1} has no 'scores' object")
        missing = [m for m in models if m not in got]
        if missing:
            raise ValueError(f"{path}: row {i + 1} has no score for {missing}")
        scores[i] = [float(got[m]) for m in models]
        if has_costs:
            row_costs = row.get("costs") or {}
            if any(m not in row_costs for m in models):
                raise ValueError(f"{path}: row {i + 1} lacks costs for some models")
            costs[i] = [float(row_costs[m]) for m in models]
    return scores, costs if has_costs else None


def tasks_of(rows: list[dict[str, Any]]) -> list[str] | None:
    """Each row's task (``task``, else ``source``) when every row has one, else None."""
    tasks = [r.get("task") or r.get("source") for r in rows]
    if any(not isinstance(t, str) or not t for t in tasks):
        return None
    return [str(t) for t in tasks]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
