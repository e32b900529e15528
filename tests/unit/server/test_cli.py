"""The llm-router command fails fast and clearly on bad config, settings and strategies.

Each case runs a real subprocess (``python -m app`` is ``llm-router serve``) and needs no
model: the failure happens before anything is loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.helpers import empty_dir, env_without_settings, free_port

ROOT = Path(__file__).resolve().parents[3]

UNKNOWN_MODEL = """\
models:
  - name: big
    cost: 1.0
intents:
  - name: chat
    description: small talk
    model: tiny
"""
INVALID_YAML = "models:\n  - name: big\n   cost: [1\n"


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 60):
    clean = env_without_settings()
    full_env = {**clean, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=empty_dir(),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


SERVE = ["-m", "app"]
ROUTE = ["-m", "app.cli.main", "route", "hello"]


@pytest.fixture
def bad_configs(tmp_path: Path) -> dict[str, Path]:
    paths = {"unknown_model": UNKNOWN_MODEL, "invalid_yaml": INVALID_YAML}
    out = {}
    for name, text in paths.items():
        out[name] = tmp_path / f"{name}.yaml"
        out[name].write_text(text)
    return out


@pytest.mark.parametrize("command", [SERVE, ROUTE], ids=["serve", "route"])
def test_unknown_model_in_intent_exits_nonzero_naming_the_key(
    bad_configs: dict[str, Path], command: list[str]
) -> None:
    proc = run(command, {"ROUTER_CONFIG": str(bad_configs["unknown_model"])})
    assert proc.returncode != 0
    assert "intents[0].model" in proc.stderr
    assert "line 7" in proc.stderr
    assert "'tiny'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [SERVE, ROUTE], ids=["serve", "route"])
def test_invalid_yaml_exits_nonzero_naming_the_line(
    bad_configs: dict[str, Path], command: list[str]
) -> None:
    proc = run(command, {"ROUTER_CONFIG": str(bad_configs["invalid_yaml"])})
    assert proc.returncode != 0
    assert "not valid YAML" in proc.stderr
    assert "line 3" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_config_file_exits_nonzero(tmp_path: Path) -> None:
    proc = run(SERVE, {"ROUTER_CONFIG": str(tmp_path / "absent.yaml")})
    assert proc.returncode != 0
    assert "absent.yaml" in proc.stderr


@pytest.mark.parametrize(
    "args,env",
    [(SERVE, {"ROUTER_STRATEGY": "nope"}), ([*SERVE, "--strategy", "nope"], {})],
    ids=["env", "flag"],
)
def test_unknown_strategy_exits_nonzero_listing_valid_names(
    args: list[str], env: dict[str, str]
) -> None:
    proc = run(args, env)
    assert proc.returncode != 0
    assert "nope" in proc.stderr
    assert "intent" in proc.stderr and "auto" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "env,name",
    [({"ROUTER_PORT": "eighty"}, "ROUTER_PORT"), ({"ROUTER_MODE": "shadow"}, "ROUTER_MODE")],
)
def test_bad_setting_exits_nonzero_naming_the_variable(env: dict[str, str], name: str) -> None:
    proc = run(SERVE, env)
    assert proc.returncode != 0
    assert name in proc.stderr


def test_strategy_that_fails_to_start_stops_the_server(tmp_path: Path) -> None:
    (tmp_path / "broken_strategy.py").write_text(
        textwrap.dedent(
            """\
            class Broken:
                name = "broken"
                ready = False

                def __init__(self, context):
                    pass

                async def start(self):
                    raise RuntimeError("weights not found at /nowhere")

                async def route(self, conversation, options):
                    raise AssertionError

                async def aclose(self):
                    pass
            """
        )
    )
    env = {
        "ROUTER_STRATEGY": "broken_strategy:Broken",
        "ROUTER_PORT": str(free_port()),
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
    }
    proc = run(SERVE, env, timeout=60)
    assert proc.returncode != 0
    assert "weights not found at /nowhere" in proc.stderr
    assert "strategy failed to start" in proc.stderr


def test_help_lists_the_subcommands() -> None:
    proc = run(["-m", "app.cli.main", "--help"])
    assert proc.returncode == 0
    for sub in ("serve", "route", "eval", "train", "collect", "label"):
        assert sub in proc.stdout


def test_console_script_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["llm-router"] == "app.cli.main:main"
