"""Synthetic routing data of issue 21 (prompts of distinct kinds with per-model scores and
costs), written as JSONL for ``llm-router train / eval / calibrate``; the integration test
tests/integration/auto/test_cost_aware_e2e.py runs the same data.

    PYTHONPATH=. python -m bench.routing.synthetic_kinds      # -> .cache/synthetic/*.jsonl
    llm-router train .cache/synthetic/issue-train.jsonl --out .cache/syn-issue --write-config
    llm-router eval .cache/synthetic/issue-test.jsonl --strategy auto \\
        --config .cache/syn-issue/routing.yaml --out bench/results/cost-aware-synthetic-eval.json
    llm-router train .cache/synthetic/graded-train.jsonl --out .cache/syn-graded \\
        --write-config --model knn
    llm-router calibrate .cache/synthetic/graded-prompts.jsonl \\
        --config .cache/syn-graded/routing.yaml --strong-model large --strong-share 0.25 \\
        --out .cache/syn-graded-25/routing.yaml
    llm-router eval .cache/synthetic/graded-test.jsonl --strategy auto \\
        --config .cache/syn-graded-25/routing.yaml --out bench/results/cost-aware-calib-eval.json

* ``issue``: two kinds (arithmetic, creative writing). The small model is right on every
  arithmetic prompt and no writing prompt; the large one on all arithmetic and ~91% of
  writing. Costs 0.002 and 0.05 $/1k.
* ``graded``: four kinds (arithmetic, writing, translation, proofs) where the small
  model's success falls (100/70/35/0%); the large one is right 95% of the time.

Train and test prompts use different phrasings of each kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(".cache/synthetic")

TOPICS = (
    "the sea", "autumn leaves", "a lost cat", "the moon", "a lighthouse", "winter mornings",
    "a city at night", "an old clock", "a mountain village", "the first snow", "a red kite",
    "a quiet library", "a summer storm", "a fox in the woods", "a train journey",
)  # fmt: skip
ARITHMETIC = {
    "train": ("What is {a} plus {b}?", "Compute {a} times {b}.", "How much is {a} minus {b}?"),
    "test": ("Add {a} and {b} and tell me the result.", "Calculate the product of {a} and {b}.",
             "Subtract {b} from {a}; what remains?"),
}  # fmt: skip
WRITING = {
    "train": ("Write a short poem about {t}.", "Compose a story about {t}.",
              "Write a song about {t}."),
    "test": ("Draft a haiku on the theme of {t}.", "Create a bedtime tale featuring {t}.",
             "Pen a few rhyming lines inspired by {t}."),
}  # fmt: skip
CHEAP, LARGE = 2e-6, 5e-5  # USD per prompt: 0.002 and 0.05 $/1k


def prompts(split: str, n: int, seed: int) -> list[tuple[int, str]]:
    """(kind, text): kind 0 arithmetic, kind 1 creative writing, alternating."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = i % 2
        if kind == 0:
            template = ARITHMETIC[split][i // 2 % 3]
            text = template.format(a=int(rng.integers(2, 999)), b=int(rng.integers(2, 999)))
        else:
            text = WRITING[split][i // 2 % 3].format(t=TOPICS[int(rng.integers(len(TOPICS)))])
        out.append((kind, text))
    return out


def issue_rows(split: str, n: int, seed: int) -> list[dict[str, Any]]:
    """The small model is right on every arithmetic prompt and no writing prompt; the
    large one on all arithmetic and ~91% of writing (0.955 overall)."""
    rng = np.random.default_rng(seed + 1)
    return [
        {
            "messages": [{"role": "user", "content": text}],
            "scores": {"small": float(kind == 0), "large": float(kind == 0 or rng.random() < 0.91)},
            "costs": {"small": CHEAP, "large": LARGE},
        }
        for kind, text in prompts(split, n, seed)
    ]


def graded_rows(split: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Four kinds where the small model's success falls: arithmetic 100%, writing 70%,
    translation 35%, proofs 0%; the large one is right 95% of the time."""
    kinds = {
        0: ARITHMETIC[split],
        1: WRITING[split],
        2: {"train": ("Translate '{t}' into French.", "How do you say '{t}' in German?"),
            "test": ("Give me the Spanish for '{t}'.", "Render '{t}' in Italian.")}[split],
        3: {"train": ("Prove that there are infinitely many primes congruent to {a} mod 4.",
                      "Prove that the square root of {a} is irrational."),
            "test": ("Show rigorously that {a} has a unique prime factorisation.",
                     "Give a formal proof that the sum of the first {a} odd numbers is a square.")
            }[split],
    }  # fmt: skip
    small_rate = (1.0, 0.7, 0.35, 0.0)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        kind = i % 4
        templates = kinds[kind]
        text = templates[i // 4 % len(templates)].format(
            a=int(rng.integers(2, 99)), b=int(rng.integers(2, 99)),
            t=TOPICS[int(rng.integers(len(TOPICS)))],
        )  # fmt: skip
        small, large = rng.random() < small_rate[kind], rng.random() < 0.95
        rows.append({
            "messages": [{"role": "user", "content": text}],
            "scores": {"small": float(small), "large": float(large)},
            "costs": {"small": CHEAP, "large": LARGE},
        })  # fmt: skip
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def main() -> None:
    files = {
        "issue-train": issue_rows("train", 300, seed=0),
        "issue-test": issue_rows("test", 200, seed=7),
        "graded-train": graded_rows("train", 400, seed=1),
        "graded-prompts": [{"messages": r["messages"]} for r in graded_rows("train", 200, seed=2)],
        "graded-test": graded_rows("test", 200, seed=3),
    }
    for name, rows in files.items():
        print(write_jsonl(OUT / f"{name}.jsonl", rows), len(rows))


if __name__ == "__main__":
    main()
