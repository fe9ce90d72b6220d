"""How much of the machine's CPU other processes took while a benchmark ran (Linux /proc/stat).

A timing taken on a shared machine says so: the benchmarks print this share beside their figures.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

Snapshot = tuple[float, float, float]


def snapshot() -> Snapshot | None:
    """(wall clock, CPU seconds busy on the whole machine, CPU seconds of this process and its
    reaped children), or None where /proc/stat is not there (not Linux)."""
    try:
        jiffies = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    t = os.times()
    busy = (sum(jiffies) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


def foreign_share(start: Snapshot | None) -> float | None:
    """The share of the machine's CPU time (0..1) that other processes took since ``start``."""
    end = snapshot()
    if start is None or end is None:
        return None
    wall, busy, own = (e - s for e, s in zip(end, start))
    return max(0.0, (busy - own) / (wall * (os.cpu_count() or 1)))
