"""The architecture holds: import-linter's contracts (pyproject.toml) pass, every import
counted (lazy ones and those under TYPE_CHECKING too), and no folder grows past a size a
reader can take in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

MAX_MODULES = 12
FOLDERS = ("app", "strategies", "models", "tests", "bench")


def lint_imports() -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe), str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_contracts_are_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
    # all five contracts ran (layers for the three packages and inside each, no cycles)
    assert result.stdout.count(" KEPT") == 5, result.stdout[-2000:]


def test_no_folder_holds_more_than_twelve_modules() -> None:
    crowded = {}
    for top in FOLDERS:
        for folder in [ROOT / top, *(p for p in (ROOT / top).rglob("*") if p.is_dir())]:
            if "__pycache__" in folder.parts:
                continue
            modules = [
                p for p in folder.glob("*.py") if p.name not in ("__init__.py", "conftest.py")
            ]
            if len(modules) > MAX_MODULES:
                crowded[str(folder.relative_to(ROOT))] = len(modules)
    assert crowded == {}
