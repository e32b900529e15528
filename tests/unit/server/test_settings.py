"""Settings from ROUTER_* environment variables, and .env.example kept in sync with them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from app.cli.main import load_settings
from app.settings import DEFAULT_CONFIG, Settings, get_settings
from models.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
ENV_EXAMPLE = ROOT / ".env.example"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ROUTER_"):
            monkeypatch.delenv(name)


def walk(model: type[BaseModel], prefix: str = "ROUTER_") -> Iterator[tuple[str, FieldInfo]]:
    """(ENV_NAME, field) for every leaf setting, nested sections joined with __."""
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            yield from walk(sub, f"{prefix}{name.upper()}__")
        else:
            yield f"{prefix}{name.upper()}", info


ALL_SETTINGS = dict(walk(Settings))


@pytest.mark.parametrize(
    "env,value,read",
    [
        ("ROUTER_STRATEGY", "auto", lambda s: s.strategy),
        ("ROUTER_MODE", "proxy", lambda s: s.mode),
        ("ROUTER_CONFIG", "/etc/router/routing.yaml", lambda s: str(s.config)),
        ("ROUTER_HOST", "0.0.0.0", lambda s: s.host),
        ("ROUTER_PORT", "9123", lambda s: str(s.port)),
        ("ROUTER_INTENT__BACKEND", "vllm", lambda s: s.intent.backend),
        ("ROUTER_INTENT__MODEL", "/models/qwen3", lambda s: s.intent.model),
        ("ROUTER_LOG_FORMAT", "console", lambda s: s.log_format),
        ("ROUTER_LIMITS__MAX_IMAGES", "3", lambda s: str(s.limits.max_images)),
        ("ROUTER_IMAGE_FETCH__ENABLED", "true", lambda s: str(s.image_fetch.enabled).lower()),
        ("ROUTER_ENCODER__RUNTIME", "torch", lambda s: s.encoder.runtime),
        ("ROUTER_ENCODER__CACHE_DIR", "/var/cache/onnx", lambda s: s.encoder.cache_dir),
        ("ROUTER_COST__BASELINE_MODEL", "gpt-5-chat", lambda s: s.cost.baseline_model),
    ],
)
def test_environment_variables_are_honoured(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, read: Any
) -> None:
    monkeypatch.setenv(env, value)
    assert read(Settings()) == value


def test_defaults_work_offline() -> None:
    settings = Settings()
    assert settings.strategy == "intent"
    assert settings.mode == "recommend"
    assert settings.intent.backend == "embedding"
    assert settings.config == DEFAULT_CONFIG and DEFAULT_CONFIG.is_file()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.api_keys == []
    assert settings.image_fetch.enabled is False
    assert settings.encoder.runtime == "onnx"  # ONNX Runtime on CPU, exported locally
    assert settings.encoder.cache_dir == "~/.cache/llm-router/onnx"


@pytest.mark.parametrize(
    "raw,keys",
    [("k1", ["k1"]), ("k1,k2", ["k1", "k2"]), (" k1 , k2 ,, ", ["k1", "k2"]), ("", [])],
)
def test_api_keys_are_a_comma_list(monkeypatch: pytest.MonkeyPatch, raw: str, keys: list) -> None:
    monkeypatch.setenv("ROUTER_API_KEYS", raw)
    assert Settings().api_keys == keys


@pytest.mark.parametrize(
    "env,value",
    [
        ("ROUTER_PORT", "eighty"),
        ("ROUTER_PORT", "70000"),
        ("ROUTER_MODE", "shadow"),
        ("ROUTER_INTENT__BACKEND", "gpt"),
        ("ROUTER_LIMITS__MAX_BODY_BYTES", "-1"),
        ("ROUTER_ENCODER__RUNTIME", "tensorrt"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=env):
        load_settings()


def test_empty_strategy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_STRATEGY", "  ")
    with pytest.raises(ConfigError, match="ROUTER_STRATEGY"):
        load_settings()


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        monkeypatch.setenv("ROUTER_PORT", "9001")
        first = get_settings()
        monkeypatch.setenv("ROUTER_PORT", "9002")
        assert get_settings() is first
        assert first.port == 9001
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("env", sorted(ALL_SETTINGS))
def test_every_setting_has_a_description(env: str) -> None:
    assert (ALL_SETTINGS[env].description or "").strip(), f"{env} has no description"


def env_example_entries() -> dict[str, str | None]:
    """NAME -> value for `NAME=value` lines; None for commented-out `# NAME=` lines."""
    entries: dict[str, str | None] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^(#\s*)?(ROUTER_[A-Z0-9_]+)=(.*)$", line.strip())
        if match:
            entries[match.group(2)] = None if match.group(1) else match.group(3)
    return entries


def test_env_example_lists_every_setting() -> None:
    assert ENV_EXAMPLE.is_file(), ".env.example is missing at the repo root"
    listed = set(env_example_entries())
    assert sorted(set(ALL_SETTINGS) - listed) == [], "settings missing from .env.example"
    assert sorted(listed - set(ALL_SETTINGS)) == [], ".env.example names unknown settings"


def test_env_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exporting .env.example as is must change nothing."""
    defaults = Settings().model_dump()  # clean_env removed every ROUTER_* variable
    exported = 0
    for name, value in env_example_entries().items():
        if value is not None:
            monkeypatch.setenv(name, value)
            exported += 1
    assert exported >= 10
    assert Settings().model_dump() == defaults
