"""GPU facts and GPU memory: the fingerprint (NVML), warnings, and the memory probes.

Everything here imports torch or NVML lazily and only when a CUDA backend runs. The parsing
helpers are pure, so CI (no GPU) tests them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


def parse_proc_information(text: str) -> dict[str, str]:
    """``/proc/driver/nvidia/gpus/<bus>/information``: 'Model:  NVIDIA H100 80GB HBM3' lines."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower().replace(" ", "_")] = value.strip()
    return out


def gpu_names_without_cuda() -> list[str]:
    """GPU model names from the driver's /proc files, then NVML: no CUDA context, no torch."""
    names = []
    if NVIDIA_PROC.is_dir():
        for info in sorted(NVIDIA_PROC.glob("*/information")):
            try:
                model = parse_proc_information(info.read_text()).get("model")
            except OSError:
                model = None
            if model:
                names.append(model)
    if names:
        return names
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            names = [_text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                     for i in range(count)]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML, no driver, no GPU: all mean "none"
        return []
    return names


def gpu_facts_without_cuda() -> dict[str, Any]:
    """The GPU fields of the machine fingerprint: name and count (driver files or NVML), and
    where NVML answers, SM count, memory, driver major version and power limit. {} without a
    GPU. No CUDA context is created: a CPU-only run on a GPU host stays cheap."""
    names = gpu_names_without_cuda()
    if not names:
        return {}
    facts: dict[str, Any] = {"gpu_name": names[0], "gpu_count": len(names)}
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            facts["gpu_memory_gb"] = round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30)
            facts["gpu_driver_major"] = _text(pynvml.nvmlSystemGetDriverVersion()).split(".")[0]
            facts["gpu_power_limit_w"] = round(
                pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000)
            with contextlib.suppress(Exception):  # not every NVML build has it
                facts["gpu_cuda_cores"] = int(pynvml.nvmlDeviceGetNumGpuCores(handle))
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML: name and count only
        pass
    return facts


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_fingerprint(index: int = 0) -> dict[str, Any]:
    """Name, compute capability, driver, CUDA runtime, clocks and power limit of one GPU."""
    facts: dict[str, Any] = {}
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(index)
            facts.update(name=torch.cuda.get_device_name(index),
                         compute_capability=f"{major}.{minor}", cuda_runtime=torch.version.cuda)
    except Exception:  # noqa: BLE001 - a broken CUDA setup still gets a report
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            facts["name"] = _text(pynvml.nvmlDeviceGetName(handle))
            facts["driver"] = _text(pynvml.nvmlSystemGetDriverVersion())
            facts["memory_total_mb"] = pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20
            facts["sm_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
            facts["sm_clock_max_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(
                handle, pynvml.NVML_CLOCK_SM)
            facts["memory_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(
                handle, pynvml.NVML_CLOCK_MEM)
            facts["power_limit_w"] = pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000
            facts["throttle_reasons"] = throttle_names(
                pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle))
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - NVML is optional: fewer facts, same run
        pass
    return facts


# NVML's clocks-throttle-reason bits (nvml.h), idle excluded: an idle GPU is not a warning.
THROTTLE_BITS = {0x2: "applications clocks setting", 0x4: "software power cap",
                 0x8: "hardware slowdown", 0x20: "software thermal slowdown",
                 0x40: "hardware thermal slowdown", 0x80: "power brake"}


def throttle_names(mask: int) -> list[str]:
    return [name for bit, name in THROTTLE_BITS.items() if mask & bit]


def gpu_warnings(facts: Mapping[str, Any]) -> list[str]:
    out = []
    reasons = facts.get("throttle_reasons") or []
    if reasons:
        out.append(f"GPU {facts.get('name', '')} is throttled before timing: "
                   + ", ".join(reasons))
    clock, top = facts.get("sm_clock_mhz"), facts.get("sm_clock_max_mhz")
    if clock and top and clock < 0.5 * top:
        out.append(f"GPU SM clock {clock} MHz of {top} MHz before timing (it ramps up under "
                   "load; warm-up rounds absorb this)")
    return out


def gpu_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "gpu"


class GpuMemory:
    """Peak GPU memory of a case: the torch allocator's peak when torch owns the memory,
    NVML's device-wide use otherwise (ONNX Runtime and TensorRT allocate outside torch)."""

    def __init__(self, source: str) -> None:
        self.source = source  # "torch" or "nvml"
        self._start = 0.0
        self._held_mb = 0.0  # the torch allocator's peak before the last pause()
        self.peak_mb: float | None = None

    def start(self) -> None:
        import torch

        torch.cuda.synchronize()
        if self.source == "torch":
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated() / 2**20
        else:
            self._start = _nvml_used_mb() or 0.0

    def pause(self) -> None:
        """Keep the peak so far: what runs until resume() is left out."""
        import torch

        torch.cuda.synchronize()
        if self.source == "torch":
            self._held_mb = max(self._held_mb, torch.cuda.max_memory_allocated() / 2**20)

    def resume(self) -> None:
        """Go on from here: the torch allocator's peak restarts at what is allocated now; for
        NVML, what was allocated and freed meanwhile goes back to the driver, so that the
        growth read at stop() is the case's."""
        import torch

        torch.cuda.synchronize()
        if self.source == "torch":
            torch.cuda.reset_peak_memory_stats()
        else:
            torch.cuda.empty_cache()

    def stop(self) -> None:
        import torch

        torch.cuda.synchronize()
        if self.source == "torch":
            peak = max(self._held_mb, torch.cuda.max_memory_allocated() / 2**20)
            self.peak_mb = peak - self._start
        else:
            used = _nvml_used_mb()
            self.peak_mb = None if used is None else max(0.0, used - self._start)

    @property
    def mode(self) -> str:
        return ("torch allocator peak above the case's start" if self.source == "torch" else
                "NVML device memory in use, growth over the case (whole device)")


def _nvml_used_mb() -> float | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0))
            return float(info.used) / 2**20
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML: no GPU memory figure for this case
        return None
