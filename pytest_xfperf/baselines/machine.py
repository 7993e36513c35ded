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
    """CPU model and usable cores, plus the GPU model and count where NVIDIA GPUs are visible
    (read from the driver without starting CUDA): results compare only on like hardware."""
    from pytest_xfperf.measure.gpu import gpu_names_without_cuda, gpu_slug

    model = cpu_model()
    cores = usable_cores()
    key = f"cpu-{slug(model)}-{cores}c"
    info: dict[str, str | int] = {"cpu": model, "cores": cores, "system": platform.system(),
                                  "arch": platform.machine()}
    gpus = gpu_names_without_cuda()
    if gpus:
        key = f"gpu-{gpu_slug(gpus[0])}-x{len(gpus)}-{key}"
        info.update(gpu=gpus[0], gpus=len(gpus))
    return {"key": key, **info}


def machine_key() -> str:
    return str(machine_info()["key"])
