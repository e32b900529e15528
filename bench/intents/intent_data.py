"""Public intent data sets (Banking77, CLINC150) as (texts, labels) splits.

Paths default to the project's shared data directory; ``ROUTER_BENCH_DATA`` overrides it.
Out-of-scope CLINC150 queries are labelled ``other`` (the router's out-of-scope intent).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

OTHER = "other"


def data_root() -> Path:
    return Path(os.environ.get("ROUTER_BENCH_DATA", "/work/shared/data"))


def banking77(split: str) -> tuple[list[str], list[str]]:
    """``split`` is train or test."""
    with (data_root() / "banking77" / f"{split}.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def clinc150(split: str) -> tuple[list[str], list[str]]:
    """``split`` is train, val or test; in-scope rows plus that split's out-of-scope rows."""
    data = json.loads((data_root() / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    rows = data[split] + data[f"oos_{split}"]
    return [t for t, _ in rows], [OTHER if i == "oos" else i for _, i in rows]
