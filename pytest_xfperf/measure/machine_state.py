"""What can distort a timing, read just before it: load, CPU frequency scaling.

Only cheap reads of /proc and /sys (no subprocess); anything unreadable is left out. GPU
clocks and throttle reasons join this when a GPU backend measures (through NVML).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")
# A one-minute load above this share of the cores means other work competes for them.
BUSY_LOAD_SHARE = 0.5


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def snapshot() -> dict[str, Any]:
    state: dict[str, Any] = {"cpus": os.cpu_count() or 1}
    try:
        state["load1"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    governor = _read(CPUFREQ / "scaling_governor")
    if governor:
        state["governor"] = governor
    current, maximum = _read(CPUFREQ / "scaling_cur_freq"), _read(CPUFREQ / "cpuinfo_max_freq")
    if current and current.isdigit() and maximum and maximum.isdigit() and int(maximum) > 0:
        state["cpu_mhz"] = int(current) // 1000
        state["cpu_max_mhz"] = int(maximum) // 1000
    return state


def warnings(state: dict[str, Any]) -> list[str]:
    out = []
    load, cpus = state.get("load1"), state.get("cpus", 1)
    if load is not None and load > BUSY_LOAD_SHARE * cpus + 1:
        out.append(f"load average {load} on {cpus} CPUs before timing: other work competes "
                   "for the cores, expect noise")
    governor = state.get("governor")
    if governor and governor not in ("performance",):
        out.append(f"CPU frequency governor is {governor!r}: clocks vary with load (set "
                   "'performance' for steadier timings)")
    mhz, top = state.get("cpu_mhz"), state.get("cpu_max_mhz")
    if mhz and top and mhz < 0.7 * top:
        out.append(f"CPU clock {mhz} MHz of {top} MHz before timing (scaled down)")
    return out
