"""How artifacts are built: a light module, so settings can hold it at plugin load."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuildOptions:
    """Every field is part of the cache key of the stages it affects."""

    exporter: str = "torchscript"
    calibration_method: str = "minmax"
    calibration_batches: int = 8
    per_channel: bool = True
    # 7-bit INT8 weights. None: chosen from the machine fingerprint, on where the CPU has no
    # 8-bit dot product (VNNI): there, INT8 kernels sum pairs of u8 x s8 products in 16 bits,
    # which saturates with full-range weights (ONNX Runtime's quantization documentation).
    reduce_range: bool | None = None

    def resolved_reduce_range(self) -> bool:
        if self.reduce_range is not None:
            return self.reduce_range
        from pytest_xfperf.baselines.machine import has_vnni, machine_info

        return not has_vnni(machine_info())
