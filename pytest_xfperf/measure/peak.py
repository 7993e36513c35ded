"""How far a case is from the machine's limit: the model's FLOPs per call over its time,
against a GEMM measured on the same machine at the case's arithmetic.

FLOPs are counted, not estimated: torch's ``FlopCounterMode`` runs the FP32 model once on one
sequence of the case's length and counts every matrix product (linear layers, attention's two
batched products, the pooler), two FLOPs per multiply-add; a batch of B costs B times that.
Element-wise work (softmax, LayerNorm, GELU) is left out, as FLOP/s figures conventionally do.

The peak is a large matrix product in the library and number format the case computes in,
timed on this machine and kept per machine fingerprint in the cache (``peaks.json``):
cuBLAS through torch on a GPU (FP32, TF32 where the case's FP32 products use it, FP16, BF16,
INT8 by ``torch._int_mm``, FP8 by ``torch._scaled_mm``); ONNX Runtime's CPU kernels on the
CPU (MatMul in FP32, MatMulInteger for the INT8 precisions) on the case's threads. It is a
measured attainable peak, not the datasheet's: clocks, power limits and the library's best
kernel are in it.

On the CPU the peak is the best rate over two sizes that are not powers of two, each timed for
at least CPU_MIN_SECONDS. One size alone is not enough: on a 2-core AVX-512 EPYC a 1024^3
product read 141-204 GFLOP/s from one process to the next while 768^3 and 1152^3 read 216-229
(docs/measurements.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_xfperf.fileio import atomic_write_bytes, locked

if TYPE_CHECKING:
    import numpy as np
    import torch

PEAK_VERSION = "2"
GPU_SIZE = 8192
CPU_SIZES = (768, 1152)
WARMUP, REPEATS = 3, 10
CPU_MIN_SECONDS = 0.3  # per CPU size: enough repeats that one slow moment does not set it
# The arithmetic each precision's matrix products run in.
ARITHMETIC = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "int8-dynamic": "int8",
              "int8-static": "int8", "fp8": "fp8", "fp8-static": "fp8"}
CPU_ARITHMETIC = {"fp16": "fp32"}  # ONNX Runtime's CPU provider computes FP16 graphs in FP32


def count_flops(model: torch.nn.Module, inputs: Mapping[str, np.ndarray]) -> float:
    """Matrix-product FLOPs of one call of ``model`` on ``inputs`` (counted, FP32, CPU)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(**tensors)
    return float(counter.get_total_flops())


def arithmetic(precision: str, device: str, tf32: bool = False) -> str:
    """The number format a case's matrix products run in; ``tf32``: FP32 products run on
    TF32 tensor cores (ONNX Runtime's CUDA provider by default, PyTorch when asked)."""
    if device == "cpu":
        return CPU_ARITHMETIC.get(precision, ARITHMETIC[precision])
    if precision == "fp32" and tf32:
        return "tf32"
    return ARITHMETIC[precision]


def _best_seconds(call: Callable[[], object], synchronize: Callable[[], None],
                  min_seconds: float = 0.0) -> float:
    """The fastest of at least REPEATS calls, repeated until ``min_seconds`` have passed."""
    for _ in range(WARMUP):
        call()
    synchronize()
    best, repeats, began = float("inf"), 0, time.perf_counter()
    while repeats < REPEATS or time.perf_counter() - began < min_seconds:
        started = time.perf_counter()
        call()
        synchronize()
        best = min(best, time.perf_counter() - started)
        repeats += 1
    return best


def _gpu_gemm(kind: str) -> tuple[Callable[[], object], Callable[[], None], float]:
    import torch

    n = GPU_SIZE
    generator = torch.Generator(device="cuda").manual_seed(0)
    if kind == "int8":
        a = torch.randint(-64, 64, (n, n), device="cuda", dtype=torch.int8, generator=generator)
        b = torch.randint(-64, 64, (n, n), device="cuda", dtype=torch.int8,
                          generator=generator)
        return (lambda: torch._int_mm(a, b.t())), torch.cuda.synchronize, 2.0 * n**3
    if kind == "fp8":
        a = torch.randn(n, n, device="cuda", generator=generator).to(torch.float8_e4m3fn)
        b = torch.randn(n, n, device="cuda", generator=generator).to(torch.float8_e4m3fn)
        scale_a = torch.ones(n, 1, device="cuda")
        scale_b = torch.ones(1, n, device="cuda")
        return (lambda: torch._scaled_mm(a, b.t(), scale_a=scale_a, scale_b=scale_b,
                                         out_dtype=torch.bfloat16),
                torch.cuda.synchronize, 2.0 * n**3)
    dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16,
             "bf16": torch.bfloat16}[kind]
    a = torch.randn(n, n, device="cuda", dtype=dtype, generator=generator)
    b = torch.randn(n, n, device="cuda", dtype=dtype, generator=generator)

    def product() -> object:
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = kind == "tf32"
        try:
            return a @ b
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous

    return product, torch.cuda.synchronize, 2.0 * n**3


def _cpu_gemm(kind: str, threads: int, n: int) -> tuple[Callable[[], object],
                                                          Callable[[], None], float]:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from pytest_xfperf.measure.yardstick import cpu_session

    rng = np.random.default_rng(0)
    if kind == "int8":
        weight = rng.integers(-64, 64, (n, n), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
        x_type, y_type = TensorProto.UINT8, TensorProto.INT32
        feed = rng.integers(0, 255, (n, n), dtype=np.uint8)
    else:
        weight = rng.standard_normal((n, n)).astype(np.float32)
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        x_type = y_type = TensorProto.FLOAT
        feed = rng.standard_normal((n, n)).astype(np.float32)
    graph = helper.make_graph([node], "xfperf-peak",
                              [helper.make_tensor_value_info("x", x_type, [n, n])],
                              [helper.make_tensor_value_info("y", y_type, [n, n])],
                              [numpy_helper.from_array(weight, "w")])
    session = cpu_session(graph, threads)
    return (lambda: session.run(["y"], {"x": feed})), (lambda: None), 2.0 * n**3


COPY_BYTES = 1 << 30  # GPU; the CPU copies a quarter of it


def _copy(device: str) -> tuple[Callable[[], object], Callable[[], None], float]:
    """A large copy, for the memory-bound figure (decode): bytes read plus bytes written."""
    if device == "cuda":
        import torch

        source = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
        target = torch.empty_like(source)
        return (lambda: target.copy_(source)), torch.cuda.synchronize, 2.0 * COPY_BYTES
    import numpy as np

    size = COPY_BYTES // 4
    source_array = np.ones(size, dtype=np.uint8)
    target_array = np.empty_like(source_array)
    return (lambda: np.copyto(target_array, source_array)), (lambda: None), 2.0 * size


def peak_identity(device: str, kind: str, threads: int) -> str:
    if kind == "copy":
        if device == "cuda":
            import torch

            return (f"copy{PEAK_VERSION} {COPY_BYTES} B torch {torch.__version__} "
                    f"{torch.cuda.get_device_name()}")
        import numpy as np

        return f"copy{PEAK_VERSION} {COPY_BYTES // 4} B numpy {np.__version__} one thread"
    if device == "cuda":
        import torch

        return (f"gemm{PEAK_VERSION} {kind} {GPU_SIZE}^3 torch {torch.__version__} "
                f"{torch.cuda.get_device_name()}")
    import onnxruntime as ort

    sizes = ",".join(str(n) for n in CPU_SIZES)
    return (f"gemm{PEAK_VERSION} {kind} best of {sizes}^3 onnxruntime {ort.__version__} "
            f"threads={threads}")


def measure_peak(device: str, kind: str, threads: int) -> float:
    """FLOP/s (or OP/s for INT8) of the best of REPEATS large products; for ``kind``
    "copy", bytes/s of a large copy (read plus write)."""
    if kind == "copy":
        return _rate(_copy(device))
    if device == "cuda":
        return _rate(_gpu_gemm(kind))
    return max(_rate(_cpu_gemm(kind, threads, n), CPU_MIN_SECONDS) for n in CPU_SIZES)


def _rate(product: tuple[Callable[[], object], Callable[[], None], float],
          min_seconds: float = 0.0) -> float:
    call, synchronize, work = product
    return work / _best_seconds(call, synchronize, min_seconds)


class PeakCache:
    """Measured peaks of this machine, kept in one JSON file per cache directory and keyed
    by machine fingerprint key and the peak's identity (library, size, threads).

    A peak is the best rate the machine attains, so a later measurement replaces a stored
    one only when it is higher. On a shared host a peak measured while the host ran slow
    reads low: a 2-core EPYC's FP32 peak read 111 GFLOP/s in such a state against 216-229
    on other days, and a case timed minutes later reached 154 % of it. So a case faster than
    its peak has the peak measured again, once per session and identity, and the higher kept."""

    def __init__(self, path: Path, machine_key: str) -> None:
        self.path = path
        self.machine_key = machine_key
        self._known: dict[str, float] = {}
        self._measured_again: set[str] = set()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # missing or damaged: measured again, and the file rewritten
        return data if isinstance(data, dict) else {}

    def get(self, device: str, kind: str, threads: int, achieved: float = 0.0
            ) -> tuple[float, str]:
        """(FLOP/s, identity), measured once per machine and identity, and once more in a
        session where a case ``achieved`` more than the stored peak."""
        identity = peak_identity(device, kind, threads)
        known = self._known.get(identity)
        if known is not None and (achieved <= known or identity in self._measured_again):
            return known, identity
        with locked(self.path.with_suffix(".lock")):
            data = self._read()
            machine = data.get(self.machine_key)
            value = machine.get(identity) if isinstance(machine, dict) else None
            stored = float(value) if isinstance(value, (int, float)) and value > 0 else 0.0
            if stored <= 0 or (achieved > stored and identity not in self._measured_again):
                if stored > 0:
                    self._measured_again.add(identity)
                stored = max(stored, measure_peak(device, kind, threads))
                data.setdefault(self.machine_key, {})
                if not isinstance(data[self.machine_key], dict):
                    data[self.machine_key] = {}
                data[self.machine_key][identity] = stored
                atomic_write_bytes(self.path, (json.dumps(data, indent=1) + "\n").encode())
        self._known[identity] = stored
        return stored, identity
