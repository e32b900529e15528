"""Lexical features for the trained intent head: TF-IDF-weighted word uni/bi-grams and
character 3-5-grams (within words), over a vocabulary fixed at training time.

Frozen sentence embeddings blur near-synonymous intents that differ in one word ("card
arrival" vs "card delivery estimate", "balance" vs "transactions"); the words themselves
separate them. Computing the features is pure Python + numpy (tens of microseconds per
message), so the head stays cheap at serve time. The same code builds the training rows
and the served rows, and its state (vocabulary, idf, block weights) is saved with the
head.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

WORD = re.compile(r"\w+(?:'\w+)?")
CHAR_NGRAMS = (3, 4, 5)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def word_grams(tokens: Sequence[str]) -> list[str]:
    """Unigrams and bigrams."""
    grams = [f"w {t}" for t in tokens]
    grams += [f"w {a} {b}" for a, b in itertools.pairwise(tokens)]
    return grams


def char_grams(tokens: Sequence[str]) -> list[str]:
    """Character n-grams of each word padded with spaces (a word shorter than n gives
    itself once)."""
    grams: list[str] = []
    for token in tokens:
        padded = f" {token} "
        for n in CHAR_NGRAMS:
            if len(padded) <= n:
                grams.append(f"c {padded}")
                break
            grams += [f"c {padded[i : i + n]}" for i in range(len(padded) - n + 1)]
    return grams


@dataclass(slots=True)
class SparseRows:
    """CSR rows: row i's features are ``indices[indptr[i]:indptr[i+1]]`` with ``values``."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n_features: int

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def dense(self) -> np.ndarray:
        out = np.zeros((len(self), self.n_features), dtype=np.float32)
        for i in range(len(self)):
            lo, hi = self.indptr[i], self.indptr[i + 1]
            out[i, self.indices[lo:hi]] = self.values[lo:hi]
        return out

    def matmul(self, weight: np.ndarray) -> np.ndarray:
        """``rows @ weight`` for a dense [n_features, k] matrix (gathers only the rows
        present)."""
        out = np.zeros((len(self), weight.shape[1]), dtype=np.float32)
        for i in range(len(self)):
            lo, hi = self.indptr[i], self.indptr[i + 1]
            if hi > lo:
                out[i] = self.values[lo:hi] @ weight[self.indices[lo:hi]]
        return out


@dataclass(slots=True)
class LexicalFeatures:
    """Vocabulary + idf of word and character n-grams; ``transform`` gives each block
    L2-normalised, scaled by its weight (word_weight, char_weight)."""

    vocabulary: dict[str, int]
    idf: np.ndarray  # [n_features]
    word_weight: float = 1.0
    char_weight: float = 1.0

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        min_df: int = 2,
        max_features: int = 40_000,
        word_weight: float = 1.0,
        char_weight: float = 1.0,
    ) -> LexicalFeatures:
        """Keep the n-grams seen in at least ``min_df`` texts (the ``max_features`` most
        frequent; ties in name order, so the vocabulary is deterministic)."""
        df: Counter[str] = Counter()
        n = 0
        for text in texts:
            tokens = words(text)
            df.update(set(word_grams(tokens)) | set(char_grams(tokens)))
            n += 1
        kept = sorted((g for g, c in df.items() if c >= min_df), key=lambda g: (-df[g], g))
        kept = sorted(kept[:max_features])
        vocabulary = {g: i for i, g in enumerate(kept)}
        idf = np.array([math.log((1 + n) / (1 + df[g])) + 1.0 for g in kept], dtype=np.float32)
        return cls(vocabulary, idf, word_weight, char_weight)

    @property
    def n_features(self) -> int:
        return len(self.vocabulary)

    def _block(self, grams: list[str], weight: float) -> tuple[list[int], list[float]]:
        counts = Counter(g for g in grams if g in self.vocabulary)
        if not counts or weight == 0.0:
            return [], []
        idx = [self.vocabulary[g] for g in counts]
        val = np.array([1.0 + math.log(c) for c in counts.values()]) * self.idf[idx]
        val *= weight / max(float(np.linalg.norm(val)), 1e-12)
        return idx, val.tolist()

    def transform(self, texts: Sequence[str]) -> SparseRows:
        indptr = [0]
        indices: list[int] = []
        values: list[float] = []
        for text in texts:
            tokens = words(text)
            for grams, weight in (
                (word_grams(tokens), self.word_weight),
                (char_grams(tokens), self.char_weight),
            ):
                idx, val = self._block(grams, weight)
                indices += idx
                values += val
            indptr.append(len(indices))
        return SparseRows(
            np.asarray(indptr, dtype=np.int64),
            np.asarray(indices, dtype=np.int64),
            np.asarray(values, dtype=np.float32),
            self.n_features,
        )

    def state(self) -> dict[str, Any]:
        """JSON-able settings (the vocabulary is saved in its own file, idf as a tensor)."""
        return {
            "word_weight": self.word_weight,
            "char_weight": self.char_weight,
            "char_ngrams": list(CHAR_NGRAMS),
            "word_ngrams": [1, 2],
            "n_features": self.n_features,
        }
