"""On-disk cache of conversation embeddings, keyed by content hash.

One ``.npz`` per encoder identity (name, weights fingerprint, text budget) holding the
content hashes and vectors of every conversation embedded so far; re-running training
or evaluation only embeds conversations it has not seen.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from models.core.conversation import Conversation
    from models.encoders.conversation import Encoder

DEFAULT_CACHE_DIR = Path("~/.cache/llm-router/embeddings")


def conversation_hash(conversation: Conversation) -> str:
    """sha256 of roles, texts and image pixels."""
    digest = hashlib.sha256()
    for turn in conversation.turns:
        digest.update(turn.role.encode())
        digest.update(b"\0")
        digest.update(turn.text.encode("utf-8"))
        digest.update(b"\0")
        for image in turn.images:
            digest.update(f"{image.mode}{image.size}".encode())
            digest.update(image.tobytes())
    return digest.hexdigest()


def encoder_key(encoder: Encoder) -> str:
    """File-name-safe identity of what an encoder computes."""
    from models.encoders.conversation import PREPROCESSING_VERSION

    raw = f"{encoder.name}|{encoder.version}|{encoder.fingerprint}|{encoder.dim}|"
    raw += f"{PREPROCESSING_VERSION}|"
    raw += str(getattr(encoder, "max_tokens", ""))
    slug = "".join(c if c.isalnum() else "-" for c in encoder.name)
    return f"{slug}-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


def _load(file: Path, dim: int) -> dict[str, np.ndarray]:
    if not file.is_file():
        return {}
    try:
        with np.load(file) as data:
            keys, vectors = data["keys"], data["vectors"]
    except (OSError, ValueError, KeyError):
        return {}  # a corrupt cache is rebuilt, never trusted
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        return {}
    return {str(k): v for k, v in zip(keys, vectors, strict=True)}


def _save(file: Path, table: dict[str, np.ndarray]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(f".{os.getpid()}.tmp.npz")
    keys = np.array(list(table), dtype=np.str_)
    np.savez(tmp, keys=keys, vectors=np.stack(list(table.values())).astype(np.float32))
    tmp.replace(file)


def embed_cached(
    encoder: Encoder,
    conversations: Sequence[Conversation],
    cache_dir: Path | str | None = DEFAULT_CACHE_DIR,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Embeddings [n, dim] for the conversations; ``cache_dir=None`` disables the cache."""
    hashes = [conversation_hash(c) for c in conversations]
    file = Path(cache_dir).expanduser() / f"{encoder_key(encoder)}.npz" if cache_dir else None
    table = _load(file, encoder.dim) if file is not None else {}
    todo = sorted(
        {h: i for i, h in enumerate(hashes) if h not in table}.items(), key=lambda x: x[1]
    )
    if todo:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"embedding ({encoder.name})", unit="conv")
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            vectors = encoder.embed([conversations[i] for _, i in chunk])
            for (h, _), vector in zip(chunk, vectors, strict=True):
                table[h] = vector
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        if file is not None:
            _save(file, table)
    if not hashes:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.stack([table[h] for h in hashes]).astype(np.float32)


def text_encoder_key(
    encoder_name: str, fingerprint: str, quantized: str | None, runtime: str = "torch"
) -> str:
    """File-name-safe identity of a sentence encoder (intent classifier's text vectors);
    int8 vectors also depend on the runtime (fp32 ones agree across runtimes)."""
    raw = f"{encoder_name}|{fingerprint}|int8={quantized or False}"
    if quantized and runtime != "torch":  # keys from before the ONNX runtime stay valid
        raw += f"|runtime={runtime}"
    slug = "".join(c if c.isalnum() else "-" for c in encoder_name)
    return f"text-{slug}-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


def embed_texts_cached(
    encode: Callable[[list[str]], np.ndarray],
    texts: Sequence[str],
    key: str,
    dim: int,
    cache_dir: Path | str | None = DEFAULT_CACHE_DIR,
    batch_size: int = 256,
) -> np.ndarray:
    """Embeddings [n, dim] of plain texts via ``encode``, cached by text hash under ``key``."""
    hashes = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    file = Path(cache_dir).expanduser() / f"{key}.npz" if cache_dir else None
    table = _load(file, dim) if file is not None else {}
    todo = list({h: i for i, h in enumerate(hashes) if h not in table}.items())
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        vectors = encode([texts[i] for _, i in chunk])
        for (h, _), vector in zip(chunk, vectors, strict=True):
            table[h] = vector
        if file is not None and (start // batch_size) % 20 == 19:
            _save(file, table)  # long jobs survive an interruption
    if todo and file is not None:
        _save(file, table)
    if not hashes:
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack([table[h] for h in hashes]).astype(np.float32)
