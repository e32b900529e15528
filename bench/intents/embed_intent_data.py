"""Embed Banking77 and CLINC150 once with the serving intent encoder (cached to disk).

PYTHONPATH=. .venv/bin/python -m bench.intents.embed_intent_data [--no-quantize] [--runtime torch]
"""

from __future__ import annotations

import argparse
import time

from bench.intents import intent_data
from models.encoders.runtime import EncoderRuntime
from models.intents.head import TextEmbedder

CACHE = ".cache/embeddings"
ONNX_CACHE = ".cache/onnx"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-quantize", action="store_true")
    parser.add_argument("--runtime", choices=["onnx", "torch"], default="onnx")
    args = parser.parse_args()
    embedder = TextEmbedder(
        quantize=not args.no_quantize,
        cache_dir=CACHE,
        runtime=EncoderRuntime(args.runtime, ONNX_CACHE),
    )
    jobs = [("banking77", s) for s in ("train", "test")]
    jobs += [("clinc150", s) for s in ("train", "val", "test")]
    for name, split in jobs:
        texts, _ = getattr(intent_data, name)(split)
        start = time.perf_counter()
        x = embedder.embed(texts)
        print(f"{name}/{split}: {x.shape} in {time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
