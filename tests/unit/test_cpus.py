"""usable_cpus(): affinity capped by a cgroup v2 or v1 CPU quota, never below 1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.cpus import usable_cpus


@pytest.fixture
def four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})


def test_no_cgroup_files_means_affinity(tmp_path: Path, four_cores: None) -> None:
    assert usable_cpus(tmp_path) == 4


def test_cgroup_v2_quota_caps_and_rounds_up(tmp_path: Path, four_cores: None) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert usable_cpus(tmp_path) == 2


def test_cgroup_v2_unlimited(tmp_path: Path, four_cores: None) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == 4


def test_cgroup_v2_quota_above_affinity_keeps_affinity(tmp_path: Path, four_cores: None) -> None:
    (tmp_path / "cpu.max").write_text("800000 100000\n")
    assert usable_cpus(tmp_path) == 4


def test_cgroup_v1_quota(tmp_path: Path, four_cores: None) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 1


def test_cgroup_v1_unlimited(tmp_path: Path, four_cores: None) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 4


def test_tiny_quota_is_still_one_core(tmp_path: Path, four_cores: None) -> None:
    (tmp_path / "cpu.max").write_text("1000 100000\n")
    assert usable_cpus(tmp_path) == 1


def test_real_machine_has_at_least_one() -> None:
    assert usable_cpus() >= 1
