"""What each backend can run, as plain data: cheap to import at plugin load."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_xfperf.values import parse_bool, parse_choice, parse_count

PRECISIONS = ("fp32", "fp16", "bf16", "int8-dynamic", "int8-static")
REFERENCE_BACKEND = "torch-cpu"
REFERENCE_PRECISION = "fp32"


@dataclass(frozen=True)
class BackendInfo:
    name: str
    precisions: tuple[str, ...]
    device: str  # "cpu" or "cuda": cases on one device are never timed concurrently
    modules: tuple[str, ...]  # importable modules it needs
    extra: str  # the pip extra that provides them
    uses_onnx: bool
    # Which ONNX artifacts it runs: "cpu" (fused for the CPU), "gpu" (fused for the GPU),
    # "portable" (standard operators only, for TensorRT's parser).
    onnx_target: str = "cpu"
    # Session settings a user may set in [tool.xfperf.<backend>]: name -> parser.
    options: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    # Replays captured CUDA graphs, valid for one input shape only: the serving scenarios'
    # batches vary in size and length, so they are not run on it.
    fixed_shapes: bool = False

    def parse_options(self, table: Mapping[str, Any], origin: str) -> dict[str, Any]:
        unknown = sorted(set(table) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise ValueError(f"{origin}: unknown setting(s) {', '.join(unknown)} for backend "
                             f"{self.name}; valid: {valid}")
        parsed = {}
        for key, raw in table.items():
            try:
                parsed[key] = self.options[key](raw)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{origin}.{key}: {exc}") from None
        return parsed

    def unsupported_reason(self, precision: str) -> str | None:
        if precision in self.precisions:
            return None
        return f"{self.name} does not run {precision} (it runs {', '.join(self.precisions)})"

    def serving_unsupported_reason(self) -> str | None:
        if not self.fixed_shapes:
            return None
        return (f"{self.name} replays CUDA graphs captured for one input shape; the offline "
                "and server scenarios send batches of varying size and length: serve with "
                "torch-cuda or ort-cuda instead")


def _threads(value: Any) -> int:
    return parse_count(value, "threads (0: the library's default)")


ORT_CPU_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "intra_op_threads": _threads,
    "inter_op_threads": _threads,
    "execution_mode": lambda v: parse_choice(v, "execution_mode", ("sequential", "parallel")),
    "graph_optimization_level": lambda v: parse_choice(
        v, "graph_optimization_level", ("disable", "basic", "extended", "all")),
}
TORCH_CUDA_OPTIONS: dict[str, Callable[[Any], Any]] = {
    # TF32 trades FP32 matmul precision for speed; off unless asked, and always recorded.
    "tf32": parse_bool,
    "compile_mode": lambda v: parse_choice(
        v, "compile_mode", ("default", "reduce-overhead", "max-autotune")),
}
# Kernel tuning, off unless asked and recorded in each result's settings when on:
# ORT's TunableOp on the CUDA provider times candidate GEMM kernels per shape at first use.
ORT_CUDA_OPTIONS: dict[str, Callable[[Any], Any]] = {"tunable_op": parse_bool}
# TensorRT's builder effort, 0-5 (TensorRT's default 3; higher searches more tactics).
TENSORRT_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "builder_optimization_level": lambda v: _level(v)}


def _level(value: Any) -> int:
    level = parse_count(value, "builder_optimization_level")
    if level > 5:
        raise ValueError(f"builder_optimization_level must be 0..5, got {value!r}")
    return level


TORCH_CPU_OPTIONS: dict[str, Callable[[Any], Any]] = {
    # Inter-op threads are not offered: torch fixes them at the first parallel call.
    "threads": _threads,
}

BACKENDS: dict[str, BackendInfo] = {
    b.name: b
    for b in (
        BackendInfo("torch-cpu", ("fp32",), "cpu", ("torch", "transformers"), "cpu", False,
                    "cpu", TORCH_CPU_OPTIONS),
        BackendInfo(
            # FP16 runs on the CPU provider (it casts around kernels it lacks in FP16): slower
            # than FP32 there, but it checks the FP16 artifact's accuracy without a GPU.
            "ort-cpu", ("fp32", "fp16", "int8-dynamic", "int8-static"), "cpu",
            ("torch", "transformers", "onnx", "onnxruntime"), "cpu", True, "cpu",
            ORT_CPU_OPTIONS,
        ),
        BackendInfo("torch-cuda", ("fp32", "fp16", "bf16"), "cuda", ("torch", "transformers"),
                    "gpu", False, "cpu", TORCH_CUDA_OPTIONS),
        BackendInfo("torch-cuda-graph", ("fp32", "fp16", "bf16"), "cuda",
                    ("torch", "transformers"), "gpu", False, "cpu", TORCH_CUDA_OPTIONS,
                    fixed_shapes=True),
        # Compiled with dynamic=False and, by default, CUDA graphs (reduce-overhead): every
        # new batch shape would recompile.
        BackendInfo("torch-compile", ("fp32", "fp16", "bf16"), "cuda",
                    ("torch", "transformers"), "gpu", False, "cpu", TORCH_CUDA_OPTIONS,
                    fixed_shapes=True),
        # INT8 on the CUDA provider is the QDQ file: ORT runs its Q/DQ nodes, but the CUDA
        # provider has no INT8 matmul kernels; TensorRT (below) has.
        BackendInfo("ort-cuda", ("fp32", "fp16", "int8-static"), "cuda",
                    ("torch", "transformers", "onnx", "onnxruntime"), "gpu", True, "gpu",
                    ORT_CUDA_OPTIONS),
        BackendInfo("ort-cuda-graph", ("fp32", "fp16"), "cuda",
                    ("torch", "transformers", "onnx", "onnxruntime"), "gpu", True, "gpu",
                    ORT_CUDA_OPTIONS, fixed_shapes=True),
        BackendInfo("ort-trt", ("fp32", "fp16", "int8-static"), "cuda",
                    ("torch", "transformers", "onnx", "onnxruntime", "tensorrt"), "tensorrt",
                    True, "portable"),
        BackendInfo("tensorrt", ("fp32", "fp16", "int8-static"), "cuda",
                    ("torch", "transformers", "onnx", "tensorrt"), "tensorrt", True,
                    "portable", TENSORRT_OPTIONS),
    )
}
