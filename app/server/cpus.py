"""How many CPUs this process may really use.

``os.cpu_count()`` is the host's count: inside a container with a 4-CPU quota on a
64-core host it says 64, and a torch pool of 63 threads thrashes under the quota. The
usable count is the smallest of the CPU affinity mask and the cgroup CPU quota
(v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up, at least 1.
The encoders' thread pools (torch's and ONNX Runtime's) are sized from it
(:func:`torch_threads`).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroup_dirs(root: Path, proc_cgroup: Path) -> list[Path]:
    """This process's cgroup directories (v2 path from /proc/self/cgroup), then the root."""
    dirs: list[Path] = []
    for line in (_read(proc_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers and path not in ("", "/"):
            dirs.append(root / path.lstrip("/"))
    dirs.append(root)
    return dirs


def cgroup_cpu_limit(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The cgroup CPU quota in CPUs (e.g. 2.5), or None when unlimited or unknown."""
    for directory in _own_cgroup_dirs(root, proc_cgroup):
        text = _read(directory / "cpu.max")  # v2: "<quota|max> <period>"
        if text is not None:
            quota, _, period = text.partition(" ")
            if quota == "max" or not period:
                return None
            return _ratio(quota, period)
    for v1 in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
        quota_text = _read(v1 / "cpu.cfs_quota_us")
        period_text = _read(v1 / "cpu.cfs_period_us")
        if quota_text is not None and period_text is not None:
            return _ratio(quota_text, period_text)
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None  # v1 says -1 for "no quota"


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """CPUs this process can use: affinity mask and cgroup quota, at least 1."""
    sched_getaffinity = getattr(os, "sched_getaffinity", None)  # not on macOS/Windows
    count = len(sched_getaffinity(0)) if sched_getaffinity else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(root, proc_cgroup)
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(1, count)


def torch_threads(settings: Settings) -> int:
    """Torch threads for this process: the setting, else the usable cores shared out.

    One worker keeps a core for the event loop (cores - 1); several split the cores
    between them (cores / workers), since each has its own event loop."""
    if settings.torch_threads:
        return settings.torch_threads
    cores = usable_cpus()
    count = settings.workers if isinstance(settings.workers, int) else cores
    return max(1, cores - 1) if count <= 1 else max(1, cores // count)


def set_torch_threads(threads: int, passive: bool = False) -> None:
    """Bound torch's thread pool when the strategy uses torch (its default, one thread
    per core, fights the event loop and the other workers for CPU: long latency tails).

    ``passive`` (encoders on ONNX Runtime, torch only for side work such as the auto
    router's MLP): torch's OpenMP threads sleep as soon as their work is done instead of
    spinning while ONNX Runtime's threads encode."""
    torch = sys.modules.get("torch")
    if torch is None:  # torch reads these when it first starts its thread pool
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if passive:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    else:
        torch.set_num_threads(threads)
