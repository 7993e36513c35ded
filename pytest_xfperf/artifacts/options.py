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
    # 7-bit INT8 weights. None: chosen from the machine fingerprint, on for a CPU without an
    # 8-bit dot product (VNNI). There, ONNX Runtime's U8S8 kernels sum pairs of products in
    # 16 bits, which saturates with full-range weights (its quantization documentation; on
    # MiniLM that alone cost 0.0025 of output cosine, docs/measurements.md).
    reduce_range: bool | None = None

    def resolved_reduce_range(self) -> bool:
        if self.reduce_range is not None:
            return self.reduce_range
        from pytest_xfperf.baselines.machine import has_vnni, machine_info

        return not has_vnni(machine_info())
