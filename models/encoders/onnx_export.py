"""ONNX graphs of a sentence-transformers encoder, made from its weights and cached.

One cache entry per weights: ``CACHE/<name>-<hash>/`` where the hash covers every file of
the model directory (weights, configs, tokenizer) and :data:`EXPORT_VERSION`, so changed
weights (a fine-tuned encoder, a new model version) get a new entry and a fresh export.
An entry holds

* ``model.onnx``: the whole pipeline (transformer, pooling, any dense/normalise modules)
  in fp32, exported with ``torch.onnx.export`` (the TorchScript exporter: a few seconds,
  no extra packages; the dynamo exporter gives the same graph in ~10x the time and needs
  onnxscript), inputs ``input_ids``/``attention_mask`` (and ``token_type_ids`` when the
  tokenizer makes them) with dynamic batch and sequence axes, output
  ``sentence_embedding``;
* ``model.<scheme>.onnx``: its dynamic int8 version (:data:`ONNX_INT8`), quantized from
  the fp32 graph on first use (no torch needed);
* ``tokenizer.json``: the fast tokenizer;
* ``export.json``: what serving needs without torch (fingerprint, dimensions, inputs,
  padding) and a probe embedding that every load is checked against.

Exports are verified against torch before they are kept (tokens identical, embeddings
within 1e-4), written under a lock (several workers start at once) and renamed into
place, so a half-written file is never read. No model hub is involved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from models.encoders.sentence import (
    DEFAULT_INT8,
    EncoderLoadError,
    SentenceEncoder,
    display_name,
    model_path,
)

EXPORT_VERSION = 1  # bump when the export changes: every cache entry is rebuilt
# ONNX Runtime's Linux wheels (1.29 on) collect telemetry unless told not to: on first use
# they write a device id and an event store under ~/.cache/Microsoft and upload events.
# The service connects nowhere it is not asked to and writes only where it is told.
# The switch is read once, when onnxruntime initialises, so it is set before any import.
TELEMETRY_OFF = ("ORT_DISABLE_TELEMETRY", "1")
DEFAULT_ONNX_CACHE = "~/.cache/llm-router/onnx"
META = "export.json"
FP32_FILE = "model.onnx"
TOKENIZER = "tokenizer.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
MAX_EXPORT_DIFF = 1e-4  # fp32 ONNX vs torch, per embedding component (measured: ~2e-7)
# int8 scheme -> onnxruntime.quantization.quantize_dynamic options. Like torch's, only the
# Linear layers' weights (MatMul with a constant B) are int8, one scale per output
# channel; activations are quantized per batch at run time. Chosen on Banking77,
# CLINC150 and the seed dev set (docs/performance.md): 8-bit weights (reduce_range off)
# stay nearest fp32.
ONNX_INT8 = {DEFAULT_INT8: {"per_channel": True, "reduce_range": False}}
# texts the export is verified on and every load is checked with: one word, a padded
# batch, and one past the context (truncated)
PROBE = "Can you explain how binary search works?"
CHECK_BATCHES = (
    ["hi"],
    [PROBE, "a", "Prove that there are infinitely many primes, then write it in Rust."],
    ["word " * 600, "short"],
)
SKIP_DIRS = {"onnx", "openvino", ".git", "__pycache__"}

log = logging.getLogger(__name__)


def weights_hash(path: Path) -> str:
    """sha256 of every file of a model directory (relative names and bytes)."""
    digest = hashlib.sha256(f"llm-router-onnx-{EXPORT_VERSION}".encode())
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and not SKIP_DIRS & set(p.relative_to(path).parts)
    )
    for file in files:
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def cache_entry(cache_dir: str | Path, name_or_path: str) -> Path:
    """This encoder's entry in the cache directory (not created)."""
    source = model_path(name_or_path)
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in display_name(name_or_path))
    return Path(cache_dir).expanduser() / f"{slug}-{weights_hash(source)[:16]}"


def model_file(scheme: str | None) -> str:
    return FP32_FILE if scheme is None else f"model.{scheme}.onnx"


def read_meta(entry: Path) -> dict[str, Any] | None:
    """The entry's export.json, or None when absent, unreadable or from another version."""
    try:
        meta = json.loads((entry / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    complete = isinstance(meta, dict) and meta.get("format") == EXPORT_VERSION
    return meta if complete and (entry / FP32_FILE).is_file() else None


@contextlib.contextmanager
def entry_lock(entry: Path) -> Iterator[None]:
    """Exclusive lock on an entry while it is checked or written (workers start at once)."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fh = open(entry.parent / f".{entry.name}.lock", "a+b")  # noqa: SIM115
    except OSError as exc:
        raise EncoderLoadError(unwritable(entry, exc)) from None
    try:
        with contextlib.suppress(ImportError):
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # releases the lock


def unwritable(entry: Path, exc: OSError) -> str:
    return (
        f"cannot write the ONNX encoder cache at '{entry.parent}' ({exc.strerror or exc}): "
        "set ROUTER_ENCODER__CACHE_DIR to a writable directory, build the cache beforehand "
        "(llm-router export-onnx), or set ROUTER_ENCODER__RUNTIME=torch"
    )


def ensure_export(
    entry: Path, name_or_path: str, scheme: str | None, rebuild: bool = False
) -> dict[str, Any]:
    """The entry's metadata, exporting (and quantizing ``scheme``) first when missing.
    ``rebuild`` discards the entry first (a file that no longer loads)."""
    if scheme is not None and scheme not in ONNX_INT8:
        raise EncoderLoadError(
            f"the onnx runtime has no int8 scheme {scheme!r} (ROUTER_ENCODER__RUNTIME=torch has)"
        )
    meta = None if rebuild else read_meta(entry)
    if meta is not None and (entry / model_file(scheme)).is_file():
        return meta  # the common case: nothing to write, no lock (read-only caches work)
    with entry_lock(entry):
        if rebuild:
            shutil.rmtree(entry, ignore_errors=True)
        meta = read_meta(entry)
        try:
            if meta is None:
                meta = export(name_or_path, entry)
            if scheme is not None and not (entry / model_file(scheme)).is_file():
                quantize(entry, scheme)
        except OSError as exc:
            raise EncoderLoadError(unwritable(entry, exc)) from None
    return meta


def _wrapper(model: Any, inputs: list[str]) -> Any:
    import torch

    class Pipeline(torch.nn.Module):
        """token tensors -> the sentence-transformers pipeline's sentence embedding."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]

    return Pipeline().eval()


def export(name_or_path: str, entry: Path) -> dict[str, Any]:
    """Export the fp32 pipeline into ``entry`` (verified against torch); its metadata."""
    import torch

    ort = load_onnxruntime()

    encoder = SentenceEncoder(name_or_path)
    model = encoder._model
    backend = getattr(model.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise EncoderLoadError(
            f"'{name_or_path}' has no fast tokenizer, which the onnx runtime needs; "
            "set ROUTER_ENCODER__RUNTIME=torch"
        )
    features = _tokenize(model, CHECK_BATCHES[1])
    inputs = [k for k in INPUTS if k in features]
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    tmp.chmod(0o755)  # readable by the serving user when built at image build time
    try:
        backend.save(str(tmp / TOKENIZER))
        meta: dict[str, Any] = {
            "format": EXPORT_VERSION,
            "name": encoder.name,
            "dim": encoder.dim,
            "fingerprint": encoder.fingerprint,
            "max_seq_length": encoder.max_seq_length,
            "inputs": inputs,
            "pad_id": int(model.tokenizer.pad_token_id or 0),
            "pad_type_id": int(getattr(model.tokenizer, "pad_token_type_id", 0) or 0),
            "pad_token": str(model.tokenizer.pad_token or "[PAD]"),
            "padding_side": str(getattr(model.tokenizer, "padding_side", "right")),
            "truncation_side": str(getattr(model.tokenizer, "truncation_side", "right")),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "opset": OPSET,
        }
        args = tuple(features[k] for k in inputs)
        axes = {k: {0: "batch", 1: "sequence"} for k in inputs}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
            torch.onnx.export(
                _wrapper(model, inputs), args, str(tmp / FP32_FILE), dynamo=False,
                input_names=inputs, output_names=["sentence_embedding"],
                dynamic_axes={**axes, "sentence_embedding": {0: "batch"}}, opset_version=OPSET,
            )  # fmt: skip
        tokens = Tokens(tmp / TOKENIZER, meta)
        graph = session(tmp / FP32_FILE, threads=0)
        meta["max_abs_diff"] = _verify(encoder, tokens, graph, inputs)
        meta["probe"] = [round(float(v), 7) for v in encoder.encode([PROBE])[0]]
        (tmp / META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to ONNX at %s", encoder.name, entry)
    return meta


def _tokenize(model: Any, texts: list[str]) -> Any:
    """sentence-transformers' own features for ``texts`` (``preprocess`` from v6 on)."""
    return (getattr(model, "preprocess", None) or model.tokenize)(texts)


def _verify(encoder: SentenceEncoder, tokens: Any, graph: Any, inputs: list[str]) -> float:
    """Largest difference between the ONNX and torch embeddings on :data:`CHECK_BATCHES`;
    EncoderLoadError when the tokens or embeddings differ."""
    worst = 0.0
    for texts in CHECK_BATCHES:
        ours = tokens.batch(texts)
        theirs = _tokenize(encoder._model, texts)
        for name in inputs:
            if not np.array_equal(ours[name], theirs[name].numpy()):
                raise EncoderLoadError(
                    f"the onnx runtime tokenizes '{encoder.name}' differently from "
                    f"sentence-transformers ({name}); set ROUTER_ENCODER__RUNTIME=torch"
                )
        got = graph.run(None, ours)[0]
        got = got / np.linalg.norm(got, axis=1, keepdims=True)
        worst = max(worst, float(np.abs(got - encoder.encode(texts)).max()))
    if worst > MAX_EXPORT_DIFF:
        raise EncoderLoadError(
            f"the ONNX export of '{encoder.name}' differs from torch by {worst:.2g} "
            f"(more than {MAX_EXPORT_DIFF}); set ROUTER_ENCODER__RUNTIME=torch"
        )
    return worst


def quantize(entry: Path, scheme: str) -> Path:
    """Write the entry's int8 graph for ``scheme`` from its fp32 one."""
    load_onnxruntime()  # telemetry off before the quantizer imports it
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = entry / model_file(scheme)
    tmp = entry / f".{out.name}.{os.getpid()}.tmp"
    root = logging.getLogger()
    root.addFilter(_no_preprocessing_hint)
    try:
        quantize_dynamic(
            str(entry / FP32_FILE), str(tmp), weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"], extra_options={"MatMulConstBOnly": True},
            **ONNX_INT8[scheme],
        )  # fmt: skip
        os.replace(tmp, out)
    finally:
        root.removeFilter(_no_preprocessing_hint)
        tmp.unlink(missing_ok=True)
    return out


def _no_preprocessing_hint(record: logging.LogRecord) -> bool:
    """quantize_dynamic's 'consider pre-processing' warning: the graph is used as exported."""
    return "pre-processing" not in record.getMessage()


class Tokens:
    """The fast tokenizer, called as the sentence-transformers pipeline calls it: special
    tokens added, truncated at ``max_seq_length``, padded to the longest in the batch.
    Texts are tokenized once (:meth:`split`) and padded per run (:meth:`arrays`), so a
    caller can group them by length first."""

    def __init__(self, file: Path, meta: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.plain = Tokenizer.from_file(str(file))
        self.plain.no_padding()
        self.plain.no_truncation()
        self._cut = Tokenizer.from_str(self.plain.to_str())
        self._cut.enable_truncation(
            int(meta["max_seq_length"]), direction=meta.get("truncation_side", "right")
        )
        self._left = meta.get("padding_side", "right") == "left"
        self._pad = {
            "input_ids": int(meta["pad_id"]),
            "attention_mask": 0,
            "token_type_ids": int(meta.get("pad_type_id", 0)),
        }
        self._inputs = list(meta["inputs"])

    def split(self, texts: list[str]) -> list[dict[str, list[int]]]:
        """Each text's unpadded inputs (ids, mask, type ids), truncated."""
        return [
            {"input_ids": e.ids, "attention_mask": e.attention_mask,
             "token_type_ids": e.type_ids}
            for e in self._cut.encode_batch(texts)
        ]  # fmt: skip

    def arrays(self, rows: list[dict[str, list[int]]]) -> dict[str, np.ndarray]:
        """The graph's inputs for tokenized ``rows`` (int64 arrays [n, longest]), padded
        as the tokenizer pads."""
        longest = max((len(r["input_ids"]) for r in rows), default=0)
        out = {}
        for name in self._inputs:
            grid = np.full((len(rows), longest), self._pad[name], dtype=np.int64)
            for i, row in enumerate(rows):
                values = row[name]
                if self._left:
                    grid[i, longest - len(values) :] = values
                else:
                    grid[i, : len(values)] = values
            out[name] = grid
        return out

    def batch(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The graph's inputs for ``texts`` (int64 arrays [n, longest])."""
        return self.arrays(self.split(texts))


def load_onnxruntime() -> Any:
    """The onnxruntime module, imported with its telemetry off (:data:`TELEMETRY_OFF`);
    every use of onnxruntime here goes through this."""
    os.environ[TELEMETRY_OFF[0]] = TELEMETRY_OFF[1]
    import onnxruntime as ort

    ort.disable_telemetry_events()
    return ort


def session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (0 = its default),
    one inter-op thread and no spinning: idle pool threads would take the CPU from the
    event loop and from the other workers."""
    ort = load_onnxruntime()

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
