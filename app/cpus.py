"""How many CPU cores this process may really use: its affinity mask, capped by a cgroup
CPU quota (containers). ``os.cpu_count()`` reports the host's cores and over-subscribes
worker processes and torch threads inside a container limited to fewer.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _affinity_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _quota_v2(root: Path) -> float | None:
    """cgroup v2 ``cpu.max`` ("max 100000" or "<quota> <period>"), in cores."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or int(period) <= 0:
        return None
    return int(quota) / int(period)


def _quota_v1(root: Path) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1 = unlimited), in cores."""
    for base in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota = int((base / "cpu.cfs_quota_us").read_text())
            period = int((base / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota <= 0 or period <= 0:
            return None
        return quota / period
    return None


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Cores available to this process: affinity ∩ cgroup quota (rounded up), at least 1."""
    cores = _affinity_count()
    quota = _quota_v2(cgroup_root)
    if quota is None:
        quota = _quota_v1(cgroup_root)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)
