"""Router models behind one interface (``probabilities(x) -> [batch, n_models]``): the MLP,
the kNN router, and the shrinkage toward per-model priors chosen at training time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from models.knn_router import KNNConfig, KNNRouter
from models.router_mlp import MLPConfig, RouterMLP

KINDS = ("mlp", "knn")


class ShrunkRouter(nn.Module):
    """``alpha * p + (1 - alpha) * prior``: trust in the prompt-level prediction, chosen on
    validation (alpha 1 = the router as trained)."""

    prior: torch.Tensor

    def __init__(self, base: nn.Module, alpha: float, prior: Sequence[float]) -> None:
        super().__init__()
        self.base = base
        self.alpha = float(alpha)
        self.register_buffer("prior", torch.tensor(list(prior), dtype=torch.float32))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        p: torch.Tensor = self.base.probabilities(x)  # type: ignore[operator]
        return self.alpha * p + (1.0 - self.alpha) * self.prior.to(p.dtype)


def build_router(shape: dict[str, Any]) -> RouterMLP | KNNRouter:
    """An untrained router of the shape recorded in a manifest (``kind`` mlp by default)."""
    if shape.get("kind", "mlp") == "knn":
        return KNNRouter(KNNConfig.from_dict(shape))
    return RouterMLP(MLPConfig.from_dict(shape))


def shape_of(model: nn.Module) -> dict[str, Any]:
    """The manifest's description of a router's shape."""
    cfg: Any = model.cfg
    data: dict[str, Any] = cfg.to_dict()
    data.setdefault("kind", "mlp")
    return data


def with_calibration(model: nn.Module, calibration: dict[str, Any]) -> nn.Module:
    """Wrap ``model`` in its shrinkage when the manifest records one below 1."""
    alpha = float(calibration.get("alpha", 1.0))
    prior = calibration.get("prior")
    if alpha >= 1.0 or not prior:
        return model
    return ShrunkRouter(model, alpha, prior).eval()
