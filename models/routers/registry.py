"""Router models behind one interface (``probabilities(x) -> [batch, n_models]``): the MLP,
the kNN router, and the shrinkage chosen at training time, toward the global per-model
priors or toward a task-level prior (task head or clusters, :mod:`models.routers.task_prior`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from models.routers.knn import KNNConfig, KNNRouter
from models.routers.mlp import MLPConfig, RouterMLP
from models.routers.task_prior import build_prior

PRIOR_PREFIX = "prior."  # safetensors keys of the task-level prior

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


class PriorBlendRouter(nn.Module):
    """``alpha * p(x) + (1 - alpha) * prior(x)`` with a prompt-dependent prior (the
    predicted task's or the nearest cluster's mean scores); alpha 0 = route by the prior."""

    def __init__(self, base: nn.Module, alpha: float, prior: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.alpha = float(alpha)
        self.prior = prior

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        q: torch.Tensor = self.prior.probabilities(x)  # type: ignore[operator]
        if self.alpha <= 0.0:
            return q
        p: torch.Tensor = self.base.probabilities(x)  # type: ignore[operator]
        return self.alpha * p + (1.0 - self.alpha) * q.to(p.dtype)


def with_calibration(
    model: nn.Module,
    calibration: dict[str, Any],
    prior_state: dict[str, torch.Tensor] | None = None,
    alpha: float | None = None,
) -> nn.Module:
    """Wrap ``model`` in its recorded shrinkage: toward the task-level prior whose shape is
    ``calibration.prior_model`` (tensors in ``prior_state``), else toward the global prior
    when alpha is below 1. A recorded prior without its tensors is an error. ``alpha``
    (e.g. one budget's, from ``calibration.budget_alpha``) replaces the recorded alpha."""
    alpha = float(calibration.get("alpha", 1.0) if alpha is None else alpha)
    shape = calibration.get("prior_model")
    if shape:
        prior = build_prior(shape)
        prior.load_state_dict(prior_state or {})  # strict: missing tensors raise
        return PriorBlendRouter(model, alpha, prior).eval()
    prior_vec = calibration.get("prior")
    if alpha >= 1.0 or not prior_vec:
        return model
    return ShrunkRouter(model, alpha, prior_vec).eval()
