"""usable_cpus(): CPU affinity and the cgroup v2/v1 quota, not the host's core count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.server.cpus import cgroup_cpu_limit, usable_cpus


@pytest.fixture
def many_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64-core host as affinity sees it."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def no_proc(tmp_path: Path) -> Path:
    return tmp_path / "no-proc-cgroup"


@pytest.mark.parametrize(
    "cpu_max,expected", [("400000 100000", 4), ("150000 100000", 2), ("max 100000", 64)]
)
def test_cgroup_v2_quota(tmp_path: Path, many_cores: None, cpu_max: str, expected: int) -> None:
    write(tmp_path / "cpu.max", f"{cpu_max}\n")
    assert usable_cpus(tmp_path, no_proc(tmp_path)) == expected


def test_cgroup_v2_uses_the_process_own_cgroup(tmp_path: Path, many_cores: None) -> None:
    write(tmp_path / "cpu.max", "max 100000\n")
    write(tmp_path / "kubepods" / "pod1" / "cpu.max", "200000 100000\n")
    proc = tmp_path / "proc-cgroup"
    write(proc, "0::/kubepods/pod1\n")
    assert usable_cpus(tmp_path, proc) == 2


@pytest.mark.parametrize("quota,expected", [("300000", 3), ("-1", 64)])
def test_cgroup_v1_quota(tmp_path: Path, many_cores: None, quota: str, expected: int) -> None:
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", f"{quota}\n")
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert usable_cpus(tmp_path, no_proc(tmp_path)) == expected


def test_affinity_bounds_the_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    write(tmp_path / "cpu.max", "800000 100000\n")
    assert usable_cpus(tmp_path, no_proc(tmp_path)) == 3


def test_no_cgroup_files_and_tiny_quota(tmp_path: Path, many_cores: None) -> None:
    assert cgroup_cpu_limit(tmp_path, no_proc(tmp_path)) is None
    assert usable_cpus(tmp_path, no_proc(tmp_path)) == 64
    write(tmp_path / "cpu.max", "10000 100000\n")  # a tenth of a CPU is still one
    assert usable_cpus(tmp_path, no_proc(tmp_path)) == 1


def test_torch_threads_follow_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from app.server import cpus
    from app.settings import Settings

    monkeypatch.setattr(cpus, "usable_cpus", lambda: 4)
    monkeypatch.setitem(sys.modules, "torch", None)  # not imported: sets OMP_NUM_THREADS
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus.set_torch_threads(cpus.torch_threads(Settings()))
    assert os.environ["OMP_NUM_THREADS"] == "3"
