"""Split RouteLLM's GSM8K routing data (2 models, no costs) into train (every 3rd row,
440 rows, the issue's "~400 rows" case) and test (the other 879) under .cache/gsm8k/.

    PYTHONPATH=. python -m bench.routing.gsm8k_split
    llm-router train .cache/gsm8k/train.jsonl --out .cache/gsm-auto --max-tokens 128 --write-config
    ROUTER_STRATEGY=auto llm-router eval .cache/gsm8k/test.jsonl \\
        --config .cache/gsm-auto/routing.yaml --out bench/results/gsm8k-auto-eval.json
"""

from __future__ import annotations

from pathlib import Path

from bench.intents.intent_data import data_root

OUT = Path(".cache/gsm8k")


def main() -> None:
    lines = (data_root() / "routellm" / "gsm8k.jsonl").read_text(encoding="utf-8").splitlines()
    OUT.mkdir(parents=True, exist_ok=True)
    train = [line for i, line in enumerate(lines) if i % 3 == 0]
    test = [line for i, line in enumerate(lines) if i % 3 != 0]
    (OUT / "train.jsonl").write_text("\n".join(train) + "\n", encoding="utf-8")
    (OUT / "test.jsonl").write_text("\n".join(test) + "\n", encoding="utf-8")
    print(f"{len(train)} train / {len(test)} test rows in {OUT}")


if __name__ == "__main__":
    main()
