"""The router MLP: conversation vector -> probability that each candidate model answers well.

Multi-label (one sigmoid per model: several models may be good). Input standardisation
(train-set mean/std) lives in buffers so the artifact is self-contained. An artifact may
hold several members trained from different seeds; their probabilities are averaged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

Norm = Literal["layernorm", "batchnorm", "none"]


@dataclass(frozen=True, slots=True)
class MLPConfig:
    """Shape of the router MLP (stored in the artifact manifest)."""

    in_dim: int
    n_out: int
    hidden: tuple[int, ...] = (256, 128)
    dropout: float = 0.2
    norm: Norm = "layernorm"
    members: int = 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MLPConfig:
        return cls(
            in_dim=int(data["in_dim"]),
            n_out=int(data["n_out"]),
            hidden=tuple(int(h) for h in data.get("hidden", (256, 128))),
            dropout=float(data.get("dropout", 0.2)),
            norm=data.get("norm", "layernorm"),
            members=int(data.get("members", 1)),
        )


def _norm_layer(kind: Norm, width: int) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(width)
    if kind == "batchnorm":
        return nn.BatchNorm1d(width)
    return nn.Identity()


def _member(cfg: MLPConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = cfg.in_dim
    for hidden in cfg.hidden:
        layers += [
            nn.Linear(width, hidden),
            _norm_layer(cfg.norm, hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
        ]
        width = hidden
    layers.append(nn.Linear(width, cfg.n_out))
    return nn.Sequential(*layers)


class RouterMLP(nn.Module):
    """``members`` independent MLPs over standardised inputs."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.zeros(cfg.in_dim))
        self.register_buffer("std", torch.ones(cfg.in_dim))
        self.members = nn.ModuleList([_member(cfg) for _ in range(max(1, cfg.members))])

    def set_standardizer(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the training inputs' statistics (std floored to avoid division by zero)."""
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every member: shape [members, batch, n_out]."""
        z = (x - self.mean) / self.std
        return torch.stack([member(z) for member in self.members])

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Mean member probability: shape [batch, n_out]."""
        return torch.sigmoid(self.forward(x)).mean(dim=0)
