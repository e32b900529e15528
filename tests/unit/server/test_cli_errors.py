"""Bad CLI inputs (missing, unreadable or non-image files, bad config, missing data) give a
one-line error on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.cli.main import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ROUTER_"):
            monkeypatch.delenv(name)


def inputs(tmp: Path) -> dict[str, list[str]]:
    (tmp / "notes.jpg").write_text("this is text, not a JPEG")
    (tmp / "empty.png").write_bytes(b"")
    (tmp / "folder.jpg").mkdir()
    (tmp / "bad.yaml").write_text("models: [\n")
    (tmp / "wrong.yaml").write_text("models: 5\n")
    return {
        "missing-image": ["route", "hi", "--image", str(tmp / "missing.jpg")],
        "not-an-image": ["route", "hi", "--image", str(tmp / "notes.jpg")],
        "empty-image": ["route", "hi", "--image", str(tmp / "empty.png")],
        "directory-as-image": ["route", "hi", "--image", str(tmp / "folder.jpg")],
        "invalid-yaml-config": ["route", "hi", "--config", str(tmp / "bad.yaml")],
        "wrong-shape-config": ["route", "hi", "--config", str(tmp / "wrong.yaml")],
        "missing-config": ["route", "hi", "--config", str(tmp / "absent.yaml")],
        "missing-eval-data": ["eval", str(tmp / "absent.jsonl")],
        "directory-as-eval-data": ["eval", str(tmp / "folder.jpg")],
    }


CASES = [
    "missing-image",
    "not-an-image",
    "empty-image",
    "directory-as-image",
    "invalid-yaml-config",
    "wrong-shape-config",
    "missing-config",
    "missing-eval-data",
    "directory-as-eval-data",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = inputs(tmp_path)[case]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("llm-router: error: "), err
    assert "Traceback" not in err
    # names the file and fits on one line (config errors may list a few keys below)
    if "config" not in case:
        assert err.count("\n") == 1, err
        assert str(tmp_path) in err


@pytest.mark.parametrize("mode", ["recommend", "proxy"])
def test_unknown_baseline_model_stops_serve_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    monkeypatch.setenv("ROUTER_COST__BASELINE_MODEL", "gpt-6")
    monkeypatch.setenv("ROUTER_MODE", mode)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "llm-router: error: ROUTER_COST__BASELINE_MODEL: unknown model 'gpt-6'; configured "
        "models: ['gpt-5-chat', 'nvidia/nemotron-nano-12b-v2-vl', "
    ), err
    assert "Traceback" not in err
