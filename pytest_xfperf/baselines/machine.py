"""The machine key that names a baseline file: results only compare on like hardware."""

from __future__ import annotations

import os
import platform
import re
from functools import lru_cache
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)|\bcpu\b|\bprocessor\b|@.*$", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:48] or "unknown"


@lru_cache(maxsize=1)
def machine_info() -> dict[str, str | int]:
    model = cpu_model()
    cores = usable_cores()
    return {"key": f"cpu-{slug(model)}-{cores}c", "cpu": model, "cores": cores,
            "system": platform.system(), "arch": platform.machine()}


def machine_key() -> str:
    return str(machine_info()["key"])
