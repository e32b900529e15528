"""A ``.env`` file in the working directory is read (real environment variables win), for
ROUTER_* settings and for the upstream API keys the routing config names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import ENV_FILE, Settings, load_env_file
from tests.helpers import ROOT, env_without_settings


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd is an empty directory and .env reading is on (conftest turns it off for tests)."""
    for name in list(os.environ):
        if name.startswith("ROUTER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(Settings.model_config, "env_file", ENV_FILE)
    return tmp_path


def test_dotenv_in_working_directory_is_read(in_tmp: Path) -> None:
    (in_tmp / ".env").write_text("ROUTER_PORT=9123\nROUTER_INTENT__WINDOW_TURNS=5\n")
    settings = Settings()
    assert settings.port == 9123
    assert settings.intent.window_turns == 5


def test_environment_variables_override_dotenv(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (in_tmp / ".env").write_text("ROUTER_PORT=9123\nROUTER_LOG_LEVEL=debug\n")
    monkeypatch.setenv("ROUTER_PORT", "9200")
    settings = Settings()
    assert settings.port == 9200
    assert settings.log_level == "debug"


def test_no_dotenv_means_defaults(in_tmp: Path) -> None:
    assert Settings().port == 8000


def test_upstream_keys_in_dotenv_reach_the_environment(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (in_tmp / ".env").write_text("FUZZ_UPSTREAM_KEY=from-file\nFUZZ_SET_KEY=from-file\n")
    monkeypatch.setenv("FUZZ_UPSTREAM_KEY", "placeholder")
    monkeypatch.delenv("FUZZ_UPSTREAM_KEY")  # restored (removed) after the test
    monkeypatch.setenv("FUZZ_SET_KEY", "real")
    load_env_file()
    assert os.environ["FUZZ_UPSTREAM_KEY"] == "from-file"
    assert os.environ["FUZZ_SET_KEY"] == "real"


def test_tests_do_not_read_a_developers_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROUTER_PORT", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("ROUTER_PORT=9123\nFUZZ_DEV_ONLY=1\n")
    assert Settings().port == 8000
    load_env_file()
    assert "FUZZ_DEV_ONLY" not in os.environ


def test_cli_reads_dotenv_in_its_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ROUTER_STRATEGY=no_such_strategy\n")
    env = env_without_settings()
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "route", "hello"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "no_such_strategy" in proc.stderr
