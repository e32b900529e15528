"""kNN router: labelled prompts as memory; a prompt's per-model success probability is
the mean score of its ``k`` most similar training prompts (cosine similarity).

Same interface as :class:`models.routers.mlp.RouterMLP` (``probabilities(x)``), so serving
does not care which router an artifact holds. Memory vectors are stored unit length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True, slots=True)
class KNNConfig:
    """Shape of the kNN router (stored in the artifact manifest)."""

    in_dim: int
    n_out: int
    n_memory: int
    k: int = 20

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "knn", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KNNConfig:
        return cls(int(data["in_dim"]), int(data["n_out"]), int(data["n_memory"]), int(data["k"]))


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def unit_tensor(x: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`unit` (the served side)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


class KNNRouter(nn.Module):
    """Memory of (unit embedding, per-model score) pairs."""

    memory: torch.Tensor
    targets: torch.Tensor

    def __init__(self, cfg: KNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("memory", torch.zeros(cfg.n_memory, cfg.in_dim))
        self.register_buffer("targets", torch.zeros(cfg.n_memory, cfg.n_out))

    @classmethod
    def fit(cls, x: np.ndarray, scores: np.ndarray, k: int) -> KNNRouter:
        model = cls(KNNConfig(x.shape[1], scores.shape[1], len(x), min(k, len(x))))
        model.memory.copy_(torch.from_numpy(unit(x)))
        model.targets.copy_(torch.from_numpy(np.clip(scores, 0, 1).astype(np.float32)))
        return model.eval()

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Mean neighbour score per model: shape [batch, n_out]."""
        sims = unit_tensor(x) @ self.memory.T
        idx = sims.topk(self.cfg.k, dim=1).indices
        return self.targets[idx].mean(dim=1)


def knn_probabilities(sims: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Numpy twin of :meth:`KNNRouter.probabilities` given a similarity matrix [n, memory]
    (cross-validation uses it with held-out columns masked to -inf)."""
    k = min(k, sims.shape[1])
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return targets[idx].mean(axis=1)  # type: ignore[no-any-return]
