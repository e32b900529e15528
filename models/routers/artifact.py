"""Router artifacts: one directory with ``weights.safetensors`` and ``manifest.json``.

The manifest records what the weights mean: the encoder (name, version, dim, weights
fingerprint, text budget), the model names in output order, the MLP shape, the training
data hash and metrics. :func:`check_compatible` refuses an artifact whose encoder or
models do not match the running configuration, naming what differs, so a mismatch is a
startup error and never a silent mis-route. torch is imported only to read/write weights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from models.encoders.conversation import Encoder

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
FORMAT_VERSION = 1


class ArtifactError(RuntimeError):
    """The artifact is missing, unreadable, or does not match the configuration."""


def package_version() -> str:
    """The installed llm-router version (or 'unknown' from a bare checkout)."""
    try:
        return metadata.version("llm-router")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(slots=True)
class Manifest:
    """The JSON half of an artifact."""

    encoder: dict[str, Any]  # name, version, dim, fingerprint, max_tokens, pretrained
    models: list[str]
    mlp: dict[str, Any]  # the router's shape: MLPConfig/KNNConfig.to_dict() ("kind")
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    recommended: dict[str, Any] = field(default_factory=dict)  # policy/cost_weight from val
    calibration: dict[str, Any] = field(default_factory=dict)  # shrinkage: alpha, prior
    created_at: str = ""
    llm_router_version: str = ""
    format: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "created_at": self.created_at,
            "llm_router_version": self.llm_router_version,
            "encoder": self.encoder,
            "models": self.models,
            "mlp": self.mlp,
            "training": self.training,
            "metrics": self.metrics,
            "recommended": self.recommended,
            "calibration": self.calibration,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        try:
            return cls(
                encoder=dict(data["encoder"]),
                models=[str(m) for m in data["models"]],
                mlp=dict(data["mlp"]),
                training=dict(data.get("training", {})),
                metrics=dict(data.get("metrics", {})),
                recommended=dict(data.get("recommended", {})),
                calibration=dict(data.get("calibration", {})),
                created_at=str(data.get("created_at", "")),
                llm_router_version=str(data.get("llm_router_version", "")),
                format=int(data.get("format", FORMAT_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"invalid artifact manifest: missing or bad field {exc}") from None

    @property
    def encoder_label(self) -> str:
        return f"{self.encoder.get('name')} (dim {self.encoder.get('dim')})"


def encoder_record(encoder: Encoder) -> dict[str, Any]:
    """The manifest's description of an encoder."""
    return {
        "name": encoder.name,
        "version": encoder.version,
        "dim": encoder.dim,
        "fingerprint": encoder.fingerprint,
        "max_tokens": getattr(encoder, "max_tokens", None),
    }


def save_artifact(
    out_dir: Path | str,
    model: torch.nn.Module,
    manifest: Manifest,
    prior: torch.nn.Module | None = None,
) -> Path:
    """Write weights + manifest into ``out_dir`` (created if needed). ``prior`` (a task-level
    prior, recorded in ``manifest.calibration['prior_model']``) is stored beside the router's
    tensors under the ``prior.`` prefix."""
    from safetensors.torch import save_file

    from models.routers.registry import PRIOR_PREFIX

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest.created_at = manifest.created_at or datetime.now(UTC).isoformat(timespec="seconds")
    manifest.llm_router_version = manifest.llm_router_version or package_version()
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if prior is not None:
        for k, v in prior.state_dict().items():
            tensors[PRIOR_PREFIX + k] = v.detach().cpu().contiguous()
    save_file(tensors, str(out / WEIGHTS), metadata={"format": str(FORMAT_VERSION)})
    (out / WEIGHTS).chmod(0o644)  # safetensors writes 0600; containers run as another user
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False)
    (out / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return out


def read_manifest(path: Path | str) -> Manifest:
    """The manifest of the artifact directory ``path``; ArtifactError if absent/invalid."""
    root = Path(path)
    file = root / MANIFEST
    if not root.is_dir():
        raise ArtifactError(f"router artifact directory '{root}' does not exist")
    if not file.is_file() or not (root / WEIGHTS).is_file():
        raise ArtifactError(f"router artifact '{root}' needs both {MANIFEST} and {WEIGHTS}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read {file}: {exc}") from None
    return Manifest.from_dict(data)


def budget_names(manifest: Manifest) -> list[str]:
    """The $/1k budgets the artifact recorded an operating point for ("0.35", "2", ...)."""
    by_budget = manifest.recommended.get("by_budget") or {}
    return [b for b, v in by_budget.items() if b != "none" and (v or {}).get("router")]


def budget_operating_point(manifest: Manifest, budget_per_1k: float) -> tuple[float, float]:
    """(alpha, cost_weight) chosen on validation for one recorded budget: the budget's own
    alpha where training chose one per budget (``calibration.budget_alpha``), else the
    artifact's one alpha. ArtifactError naming the recorded budgets if it is not one."""
    key = f"{budget_per_1k:g}"
    known = budget_names(manifest)
    if key not in known:
        recorded = ", ".join(known) if known else "none"
        raise ArtifactError(
            f"auto.budget_per_1k {key} is not a budget the artifact recorded an operating "
            f"point for (recorded $/1k budgets: {recorded})"
        )
    cost_weight = float(manifest.recommended["by_budget"][key]["router"]["cost_weight"])
    per_budget = manifest.calibration.get("budget_alpha") or {}
    alpha = per_budget.get(key, manifest.calibration.get("alpha", 1.0))
    return float(alpha), cost_weight


def load_weights(
    path: Path | str, manifest: Manifest, device: str = "cpu", alpha: float | None = None
) -> torch.nn.Module:
    """The router of an artifact (MLP or kNN, with its recorded shrinkage toward the global
    or a task-level prior), in eval mode on ``device``; it has ``probabilities(x)``.
    ``alpha`` replaces the recorded one (a budget's, see :func:`budget_operating_point`)."""
    from safetensors.torch import load_file

    from models.routers.registry import PRIOR_PREFIX, build_router, with_calibration

    try:
        model = build_router(manifest.mlp)
        state = load_file(str(Path(path) / WEIGHTS))
        prior_state = {
            k.removeprefix(PRIOR_PREFIX): v for k, v in state.items() if k.startswith(PRIOR_PREFIX)
        }
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith(PRIOR_PREFIX)})
        wrapped = with_calibration(model, manifest.calibration, prior_state, alpha)
    except Exception as exc:  # corrupt file, bad shape record or shape mismatch
        raise ArtifactError(f"cannot load weights of router artifact '{path}': {exc}") from None
    wrapped.to(device)
    wrapped.eval()
    return wrapped


def check_encoder(
    manifest: Manifest, encoder: Encoder, setting: str = "ROUTER_AUTO__ENCODER"
) -> None:
    """Refuse an artifact trained with another encoder (name, dim or weights)."""
    want = manifest.encoder
    if want.get("name") != encoder.name or int(want.get("dim", -1)) != encoder.dim:
        raise ArtifactError(
            f"artifact was trained with encoder {manifest.encoder_label} but {setting} is "
            f"{encoder.name} (dim {encoder.dim})"
        )
    fingerprint = want.get("fingerprint")
    if fingerprint and fingerprint != encoder.fingerprint:
        raise ArtifactError(
            f"artifact was trained with {encoder.name} weights '{want.get('version')}' "
            f"(fingerprint {fingerprint}) but the configured encoder loaded "
            f"'{encoder.version}' (fingerprint {encoder.fingerprint}); check "
            "ROUTER_AUTO__PRETRAINED"
        )


def check_models(manifest: Manifest, configured: Sequence[str]) -> None:
    """Every model the artifact scores must exist in the routing config."""
    known = set(configured)
    missing = [m for m in manifest.models if m not in known]
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        noun = "model" if len(missing) == 1 else "models"
        verb = "is" if len(missing) == 1 else "are"
        raise ArtifactError(
            f"artifact {noun} {names} {verb} not in the routing config "
            f"(configured: {', '.join(configured)})"
        )
    n_out = int(manifest.mlp.get("n_out", len(manifest.models)))
    if n_out != len(manifest.models):
        raise ArtifactError(
            f"artifact manifest lists {len(manifest.models)} models but the MLP has {n_out} outputs"
        )


def check_compatible(manifest: Manifest, encoder: Encoder, configured: Sequence[str]) -> None:
    """Both checks: encoder identity and model names."""
    check_encoder(manifest, encoder)
    check_models(manifest, configured)
