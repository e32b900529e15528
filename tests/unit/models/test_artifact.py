"""Router artifacts: save/load round trip, and every mismatch is a clear error."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from models.routers.artifact import (  # noqa: E402
    ArtifactError,
    Manifest,
    check_compatible,
    encoder_record,
    load_weights,
    read_manifest,
    save_artifact,
)
from models.routers.mlp import MLPConfig, RouterMLP  # noqa: E402

MODELS = ["big", "small"]


@dataclass
class StubEncoder:
    name: str = "open_clip:tiny"
    version: str = "tiny.pt"
    dim: int = 16
    fingerprint: str = "abc123"
    supports_images: bool = True
    max_tokens: int = 75


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    model = RouterMLP(MLPConfig(in_dim=16, n_out=2, hidden=(8,), members=2))
    manifest = Manifest(
        encoder=encoder_record(StubEncoder()), models=list(MODELS), mlp=model.cfg.to_dict()
    )
    return save_artifact(tmp_path / "art", model, manifest)


def test_round_trip_gives_identical_probabilities(artifact: Path) -> None:
    manifest = read_manifest(artifact)
    assert manifest.models == MODELS and manifest.encoder["dim"] == 16
    assert manifest.created_at and manifest.llm_router_version
    data = json.loads((artifact / "manifest.json").read_text())
    assert {"encoder", "models", "mlp", "training", "metrics", "created_at"} <= set(data)
    first = load_weights(artifact, manifest)
    second = load_weights(artifact, manifest)
    x = torch.from_numpy(np.random.default_rng(0).random((3, 16), dtype=np.float32))
    with torch.inference_mode():
        p = first.probabilities(x)
        assert torch.equal(p, second.probabilities(x))
    assert p.shape == (3, 2) and bool(((p > 0) & (p < 1)).all())
    assert not first.training  # eval mode once at load


def test_matching_encoder_and_models_pass(artifact: Path) -> None:
    check_compatible(read_manifest(artifact), StubEncoder(), ["big", "small", "extra"])


def test_wrong_encoder_names_both_sides(artifact: Path) -> None:
    with pytest.raises(ArtifactError) as exc:
        check_compatible(read_manifest(artifact), StubEncoder(name="minilm", dim=384), MODELS)
    message = str(exc.value)
    assert "open_clip:tiny (dim 16)" in message
    assert "ROUTER_AUTO__ENCODER is minilm (dim 384)" in message


def test_wrong_dim_is_refused(artifact: Path) -> None:
    with pytest.raises(ArtifactError, match=r"dim 16\).*dim 32"):
        check_compatible(read_manifest(artifact), StubEncoder(dim=32), MODELS)


def test_other_weights_are_refused(artifact: Path) -> None:
    with pytest.raises(ArtifactError, match=r"fingerprint abc123.*ROUTER_AUTO__PRETRAINED"):
        check_compatible(read_manifest(artifact), StubEncoder(fingerprint="zzz"), MODELS)


def test_model_not_in_config_is_named(artifact: Path) -> None:
    with pytest.raises(ArtifactError) as exc:
        check_compatible(read_manifest(artifact), StubEncoder(), ["big", "other"])
    assert "artifact model 'small' is not in the routing config" in str(exc.value)
    assert "configured: big, other" in str(exc.value)


def test_missing_or_broken_artifacts(tmp_path: Path, artifact: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        read_manifest(tmp_path / "nowhere")
    (artifact / "weights.safetensors").unlink()
    with pytest.raises(ArtifactError, match="needs both"):
        read_manifest(artifact)


def test_weights_that_do_not_fit_the_manifest(artifact: Path) -> None:
    manifest = read_manifest(artifact)
    manifest.mlp["hidden"] = [4]
    with pytest.raises(ArtifactError, match="cannot load weights"):
        load_weights(artifact, manifest)
