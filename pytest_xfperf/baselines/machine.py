"""The machine fingerprint: what changes inference speed, and the key that names a baseline file.

Two machines compare only when every field of their fingerprints is equal. The file name is a
readable slug plus a digest of the whole fingerprint, so machines that share a CPU label but
not an ISA (a CI pool mixing CPU generations) never share a baseline file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

# CPU flags that inference kernels choose by (oneDNN, MLAS, torch): 8-bit dot products
# (VNNI), BF16 and the AMX tiles change both speed and INT8 accuracy.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
             "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")
# Flags with a native 8-bit dot product: without one, INT8 kernels use 16-bit intermediate
# sums that can saturate, and 7-bit weights (reduce_range) are the documented remedy.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
CPU_FIELDS = ("cpu_vendor", "cpu_family", "cpu_model", "cpu_name", "isa", "cores", "memory_gb")
GPU_FIELDS = ("gpu_name", "gpu_count", "gpu_cuda_cores", "gpu_memory_gb", "gpu_driver_major",
              "gpu_power_limit_w")


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Vendor, family, model, name and the inference ISA flags of the first processor."""
    facts: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if facts:  # the first processor's block ended
                break
            continue
        facts.setdefault(key.strip().lower(), value.strip())
    flags = set((facts.get("flags") or facts.get("features") or "").split())
    return {
        "cpu_vendor": facts.get("vendor_id") or facts.get("cpu implementer") or "unknown",
        "cpu_family": facts.get("cpu family") or facts.get("cpu architecture") or "",
        "cpu_model": facts.get("model") or facts.get("cpu part") or "",
        "cpu_name": facts.get("model name") or platform.processor() or platform.machine(),
        "isa": sorted(f for f in ISA_FLAGS if f in flags),
    }


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _memory_gb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_fingerprint() -> dict[str, Any]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    return {**parse_cpuinfo(text), "cores": usable_cores(), "memory_gb": _memory_gb()}


def slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)|\bcpu\b|\bprocessor\b|@.*$", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40] or "unknown"


def machine_key(fingerprint: Mapping[str, Any] | None = None) -> str:
    """``cpu-amd-epyc-2c-1f2e3d4c``: readable, and different for any differing field (this
    machine's key when no fingerprint is given)."""
    if fingerprint is None:
        return str(machine_info()["key"])
    digest = hashlib.sha256(json.dumps(dict(fingerprint), sort_keys=True).encode()).hexdigest()
    name = f"cpu-{slug(str(fingerprint.get('cpu_name', '')))}-{fingerprint.get('cores')}c"
    if fingerprint.get("gpu_name"):
        name = f"gpu-{slug(str(fingerprint['gpu_name']))}-x{fingerprint.get('gpu_count')}-{name}"
    return f"{name}-{digest[:8]}"


def unrecorded(recorded: Mapping[str, Any]) -> list[str]:
    """The CPU fields a stored fingerprint lacks (an older file's): such a file is another
    machine's to every reader, since it cannot prove it is this one."""
    return [name for name in CPU_FIELDS if name not in recorded]


def _changed_fields(recorded: Mapping[str, Any], current: Mapping[str, Any]
                    ) -> Iterator[tuple[str, Any, Any]]:
    """(name, recorded value, current value) of each fingerprint field that differs; a field
    the recorded fingerprint lacks counts as different, with None as its value."""
    for name in (*CPU_FIELDS, *GPU_FIELDS):
        if name not in current and name not in recorded:
            continue
        if name not in recorded or recorded[name] != current.get(name):
            yield name, recorded.get(name), current.get(name)


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Readable differing fields, e.g. ``isa: avx512_vnni missing``; a field the recorded
    fingerprint lacks counts as different (an older file cannot prove it is this machine)."""
    out = []
    for name, then, now in _changed_fields(recorded, current):
        if name not in recorded:
            out.append(f"{name}: not recorded")
        elif isinstance(then, list) and isinstance(now, list):
            gone = [f for f in then if f not in now]
            new = [f for f in now if f not in then]
            out.append(f"{name}: " + ", ".join([*(f"{f} missing here" for f in gone),
                                                 *(f"{f} only here" for f in new)]))
        else:
            out.append(f"{name}: {then!r} there, {now!r} here")
    return out


def nearest(recorded: Mapping[str, Mapping[str, Any]],
            current: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """Of fingerprints recorded by name (a baseline file's), the one nearest ``current`` and
    how it differs, or None when there are none. Nearness counts differing fields, except
    that the ISA list counts each flag one side lacks: a CPU that adds one extension is
    nearer than one that lacks five. Ties go to the first name in sorted order."""
    def distance(then: Mapping[str, Any]) -> int:
        return sum(len(set(old) ^ set(new)) if isinstance(old, list) and isinstance(new, list)
                   else 1 for _, old, new in _changed_fields(then, current))

    if not recorded:
        return None
    name = min(sorted(recorded), key=lambda n: distance(recorded[n]))
    return name, differences(recorded[name], current)


def has_vnni(fingerprint: Mapping[str, Any]) -> bool:
    return any(f in (fingerprint.get("isa") or []) for f in VNNI_FLAGS)


@lru_cache(maxsize=1)
def machine_info() -> dict[str, Any]:
    """This machine's fingerprint plus its key. GPU facts come from the driver (NVML, or the
    /proc files for the name) without starting CUDA."""
    from pytest_xfperf.measure.gpu import gpu_facts_without_cuda

    fingerprint: dict[str, Any] = cpu_fingerprint()
    fingerprint.update(gpu_facts_without_cuda())
    return {"key": machine_key(fingerprint), **fingerprint}


def fingerprint_of(info: Mapping[str, Any]) -> dict[str, Any]:
    """The comparable fields of a stored ``machine`` block (its key and extras left out)."""
    return {k: v for k, v in info.items() if k in (*CPU_FIELDS, *GPU_FIELDS)}
