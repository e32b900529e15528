"""The routing config: the shipped default matches the spec, and a bad file fails with a
message that names the key and its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from app.settings import DEFAULT_CONFIG
from models.core.errors import ConfigError
from models.core.routing_config import load_routing_config

NANO = "nvidia/nvidia-nemotron-nano-9b-v2"
VL = "nvidia/nemotron-nano-12b-v2-vl"

GOOD_MODELS = """\
models:
  - name: big
    cost: 1.0
  - name: eyes
    cost: 0.5
    vision: true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_routing_config(write(tmp_path, text))
    return str(info.value)


def test_default_config_reproduces_the_spec_table() -> None:
    config = load_routing_config(DEFAULT_CONFIG)
    assert {i.name: i.model for i in config.intents} == {
        "hard_question": "gpt-5-chat",
        "chit_chat": NANO,
        "try_again": "gpt-5-chat",
        "image_understanding": VL,
        "image_question": VL,
        "other": NANO,
    }
    for intent in config.intents:
        assert intent.description.strip()
        assert len(intent.examples) >= 5, f"{intent.name} needs example utterances"


def test_default_config_costs_thresholds_and_vision() -> None:
    config = load_routing_config(DEFAULT_CONFIG)
    got = {m.name: (m.threshold, m.cost, m.vision) for m in config.models}
    assert got == {
        "gpt-5-chat": (0.5, 1.0, False),
        VL: (0.65, 0.5, True),
        NANO: (0.6, 0.3, False),
    }
    assert config.default_model() == NANO  # the 'other' intent's model
    assert config.vision_model() == VL


def test_a_valid_file_loads(tmp_path: Path) -> None:
    config = load_routing_config(
        write(
            tmp_path,
            GOOD_MODELS
            + """\
intents:
  - name: look
    description: about images
    examples: ["what is this [image]"]
    model: eyes
auto:
  artifact: artifacts/router
""",
        )
    )
    assert config.model_names == ["big", "eyes"]
    assert config.intents[0].model == "eyes"
    assert config.resolve_path("artifacts/router") == tmp_path / "artifacts/router"


def test_intent_with_unknown_model_names_key_and_line(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        GOOD_MODELS
        + """\
intents:
  - name: chat
    description: small talk
    model: tiny
""",
    )
    assert "intents[0].model" in message
    assert "line 10" in message  # the line of `model: tiny`
    assert "'tiny'" in message
    assert "routing.yaml" in message


def test_second_intent_with_unknown_model_names_its_index(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        GOOD_MODELS
        + """\
intents:
  - name: a
    description: a
    model: big
  - name: b
    description: b
    model: ghost
""",
    )
    assert "intents[1].model" in message
    assert "line 13" in message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, "models:\n  - name: a\n   cost: [1\n")
    assert "not valid YAML" in message
    assert "line 3" in message


def test_duplicate_model_names(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_MODELS + "  - name: big\n    cost: 2\n")
    assert "models" in message
    assert "duplicate" in message
    assert "big" in message


def test_vision_fallback_model_must_see_images(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_MODELS + "vision_fallback_model: big\n")
    assert "vision_fallback_model" in message
    assert "line 7" in message
    assert "vision" in message


def test_fallback_model_must_be_configured(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD_MODELS + "fallback_model: nowhere\n")
    assert "fallback_model" in message
    assert "nowhere" in message


@pytest.mark.parametrize(
    "text,key,line",
    [
        ("models:\n  - name: a\n    cost: cheap\n", "models[0].cost", 3),
        ("models:\n  - name: a\n    threshold: 2\n", "models[0].threshold", 3),
        ("models:\n  - name: a\n    colour: red\n", "models[0].colour", 3),
        ("models:\n  - name: a\nintent:\n  - name: x\n", "intent", 3),
        ("models: []\n", "models", 1),
    ],
    ids=["cost-type", "threshold-range", "unknown-model-key", "unknown-top-key", "no-models"],
)
def test_field_errors_name_key_and_line(tmp_path: Path, text: str, key: str, line: int) -> None:
    message = load_error(tmp_path, text)
    assert key in message
    assert f"line {line}" in message


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "hello\n"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    assert "models" in load_error(tmp_path, text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read routing config"):
        load_routing_config(tmp_path / "absent.yaml")
