"""How much of the intent dev set is near-duplicated by the routing config's examples,
and the accuracy on the rest (an honest number when both were written by similar
hands: common phrasings like "tell me a joke" turn up in both).

    llm-router eval bench/data/intent-dev.jsonl --out report.json
    python -m bench.intents.intent_overlap report.json [--config app/default_config.yaml]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.settings import DEFAULT_CONFIG
from bench.common import ROOT
from models.core.routing_config import load_routing_config
from models.encoders.sentence import SentenceEncoder
from models.evaluation.data import read_jsonl

DEV = ROOT / "bench" / "data" / "intent-dev.jsonl"
NEAR = 0.85  # cosine similarity (MiniLM) at which a dev turn counts as a config example


def latest_user_text(messages: list[dict]) -> str:
    for m in reversed(messages):
        if m["role"] == "user":
            c = m["content"]
            if isinstance(c, str):
                return c
            return " ".join(p.get("text", "") for p in c if p.get("type") == "text")
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="JSON report written by `llm-router eval --out`")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    args = parser.parse_args()
    config = load_routing_config(args.config)
    examples = [t for intent in config.intents for t in intent.examples]
    rows = list(read_jsonl(DEV))
    enc = SentenceEncoder()
    sims = enc.encode([latest_user_text(r["messages"]) for r in rows]) @ enc.encode(examples).T
    near = {r["id"] for r, s in zip(rows, sims.max(axis=1), strict=True) if s >= NEAR}
    report = json.loads(Path(args.report).read_text())
    wrong = {e["id"] for e in report["errors"]}
    rest = [r["id"] for r in rows if r["id"] not in near]
    acc = sum(i not in wrong for i in rest) / len(rest)
    print(
        f"{len(near)} of {len(rows)} dev conversations are near-duplicates (cos >= {NEAR}) "
        f"of a config example; intent accuracy on the other {len(rest)}: {acc:.3f} "
        f"(all: {report['accuracy']:.3f})"
    )


if __name__ == "__main__":
    main()
