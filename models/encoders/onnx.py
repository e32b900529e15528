"""Sentence encoder on ONNX Runtime: the same sentence-transformers weights as
:class:`~models.encoders.sentence.SentenceEncoder`, exported once and cached
(:mod:`models.encoders.onnx_export`), served without torch.

fp32 matches torch to ~1e-7; int8 quantizes the same Linear layers per output channel.
The graph carries the whole pipeline (mean pooling included); rows are normalised here
as the torch encoder normalises them. ``encode`` is blocking: call it from an encoder
thread (see MicroBatcher).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.encoders.onnx_export import (
    DEFAULT_ONNX_CACHE,
    PROBE,
    TOKENIZER,
    Tokens,
    cache_entry,
    ensure_export,
    model_file,
    session,
)
from models.encoders.sentence import (
    DEFAULT_INT8,
    ONNX,
    PACKAGED,
    EncoderLoadError,
    cut_start,
    display_name,
)

# a loaded graph must reproduce the probe embedding recorded at export (int8 moves it a
# little; a wrong or damaged graph moves it a lot)
PROBE_COSINE = {None: 0.9999, DEFAULT_INT8: 0.95}
# what one more run costs, in padded tokens: ONNX Runtime's fixed cost of a run (~0.4 ms
# for MiniLM-L6 int8 on one thread) over its cost per token in a batch (~0.09 ms)
RUN_OVERHEAD_TOKENS = 4.0


class OnnxSentenceEncoder:
    """Batched, L2-normalised sentence embeddings (float32, shape [n, dim]) from ONNX
    Runtime. A missing, damaged or stale graph is exported again at load; a load that
    still fails raises EncoderLoadError (a startup error, never a request error)."""

    runtime = ONNX

    def __init__(
        self,
        name_or_path: str = PACKAGED,
        quantize: bool | str = False,
        cache_dir: str | Path = DEFAULT_ONNX_CACHE,
        threads: int = 0,
    ) -> None:
        """``quantize``: False, True (the default int8 scheme) or a scheme name;
        ``threads``: intra-op threads (0 = ONNX Runtime's default, one per core)."""
        self.quantization: str | None = None
        if quantize:
            self.quantization = DEFAULT_INT8 if quantize is True else str(quantize)
        self.name = display_name(name_or_path)
        self.entry = cache_entry(cache_dir, name_or_path)
        self._meta, self._session, self._tokens = self._open(name_or_path, threads)
        self.dim = int(self._meta["dim"])
        self.max_seq_length = int(self._meta["max_seq_length"])
        self.fingerprint = str(self._meta["fingerprint"])

    def _open(self, name_or_path: str, threads: int) -> tuple[dict[str, Any], Any, Tokens]:
        """Load the cached graph and tokenizer and check them on the probe; once more
        from a fresh export when that fails."""
        problem = ""
        for rebuild in (False, True):
            meta = ensure_export(self.entry, name_or_path, self.quantization, rebuild)
            try:
                tokens = Tokens(self.entry / TOKENIZER, meta)
                graph = session(self.entry / model_file(self.quantization), threads)
                self._check(meta, tokens, graph)
                return meta, graph, tokens
            except Exception as exc:  # onnxruntime/tokenizers raise their own types: any
                # failure to load or check the cached files means they are not usable
                problem = f"{type(exc).__name__}: {exc}"
        raise EncoderLoadError(
            f"the ONNX graph of '{self.name}' at {self.entry} does not load even after a "
            f"fresh export ({problem[:300]}); set ROUTER_ENCODER__RUNTIME=torch"
        )

    def _check(self, meta: dict[str, Any], tokens: Tokens, graph: Any) -> None:
        got = self._run(tokens, graph, [PROBE])[0]
        want = np.asarray(meta["probe"], dtype=np.float32)
        cosine = float(got @ want / max(float(np.linalg.norm(want)), 1e-12))
        if got.shape != want.shape or not cosine >= PROBE_COSINE[self.quantization]:
            raise EncoderLoadError(f"probe embedding moved (cosine {cosine:.4f})")

    @staticmethod
    def _run(tokens: Tokens, graph: Any, texts: list[str]) -> np.ndarray:
        return OnnxSentenceEncoder._forward(graph, tokens.batch(texts))

    @staticmethod
    def _forward(graph: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
        out = graph.run(None, inputs)[0].astype(np.float32, copy=False)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)  # type: ignore[no-any-return]

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts; rows are unit length. The texts are tokenized once, sorted by
        length and cut into runs of similar length (:func:`length_groups`), so little
        padding is computed: 32 mixed prompts cost ~11% less than one run padded to
        the longest (docs/performance.md)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        rows = self._tokens.split(texts)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["input_ids"]))
        lengths = [len(rows[i]["input_ids"]) for i in order]
        for start, end in length_groups(lengths, max(1, batch_size)):
            picked = order[start:end]
            out[picked] = self._forward(
                self._session, self._tokens.arrays([rows[i] for i in picked])
            )
        return out

    def truncate_start(self, text: str, max_tokens: int | None = None) -> str:
        """Keep the end of ``text`` when it exceeds ``max_tokens`` (default: the encoder's
        context less [CLS] and [SEP]). Token-exact via the encoder's tokenizer."""
        plain = self._tokens.plain
        return cut_start(
            text,
            max_tokens or self.max_seq_length - 2,
            lambda t: plain.encode(t, add_special_tokens=False).ids,
            plain.id_to_token,
            plain.decode,
        )


def length_groups(
    lengths: list[int], max_size: int, run_tokens: float = RUN_OVERHEAD_TOKENS
) -> list[tuple[int, int]]:
    """Cut ``lengths`` (sorted longest first) into contiguous runs ``[start, end)`` of at
    most ``max_size`` that minimise the tokens computed: each run pads to its first
    (longest) row and costs ``run_tokens`` more for being a run. Exact (dynamic
    programming over cut points, O(n * max_size))."""
    n = len(lengths)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest cover of the first j rows
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - max_size), end):
            cost = best[start] + run_tokens + (end - start) * lengths[start]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    runs: list[tuple[int, int]] = []
    end = n
    while end > 0:
        runs.append((cut[end], end))
        end = cut[end]
    return runs[::-1]
