"""What each backend can run, as plain data: cheap to import at plugin load."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_xfperf.values import parse_bool, parse_choice, parse_count

PRECISIONS = ("fp32", "fp16", "bf16", "int8-dynamic", "int8-static", "fp8", "fp8-static")


@dataclass(frozen=True)
class BackendInfo:
    """One backend, described as data. Adding a backend is one module with a ``create``
    factory (see backends/base.py, ``RunnerContext``), one row here and its pip extra."""

    name: str
    precisions: tuple[str, ...]
    device: str  # "cpu" or "cuda": cases on one device are never timed concurrently
    modules: tuple[str, ...]  # importable modules it needs
    extra: str  # the pip extra that provides them
    factory: str  # "module:function" that builds its Runner, imported only when used
    # Which ONNX artifacts it runs: None (it runs the torch module), "cpu" (fused for the
    # CPU), "gpu" (fused for the GPU), "portable" (standard operators, for TensorRT's parser).
    onnx_target: str | None = None
    # Session settings a user may set in [tool.xfperf.<backend>]: name -> parser.
    options: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    # Replays captured CUDA graphs, valid for one input shape only: the serving scenarios'
    # batches vary in size and length, so they are not run on it.
    fixed_shapes: bool = False
    # How its memory is measured: "rss" (process peak), "torch" (the CUDA allocator's peak),
    # "nvml" (device memory in use; for libraries that allocate outside torch).
    memory_probe: str = "rss"
    tracked: tuple[str, ...] = ()  # libraries whose versions its results record
    # The machine yardstick timed between its blocks (measure/yardstick.py): "cpu", "cuda"
    # (the GPU's matrix products), "cuda-launch" (small kernels launched from Python).
    yardstick: str = "cpu"
    # What paces a call, which sets how far its time moves between processes (GatePolicy's
    # spreads). On a GPU: "captured" (one CUDA graph replayed: the device alone), "launched"
    # (kernels launched one by one by the host: its launch rate), "eager" (launched one by one
    # by PyTorch from Python, as the launch yardstick's are; a case whose GPU work outlasts
    # its launches records "device" instead, measure/pace.py); a captured backend's prefill is
    # paced apart ("prefill", pace_fields). On the CPU, the library whose threads run it:
    # "onnxruntime" (the yardstick's own) or "torch".
    pacing: str = "launched"
    # What paces its generation steps, where that differs from its encoder calls.
    generation_pacing: str = ""

    @property
    def uses_onnx(self) -> bool:
        return self.onnx_target is not None

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


# Set by the plugin itself: the device, the CUDA graph (a backend of its own) and the stream
# its CUDA events are recorded on.
RESERVED_PROVIDER_OPTIONS = ("device_id", "enable_cuda_graph", "user_compute_stream")


def parse_provider_options(value: Any) -> dict[str, str]:
    """A table of ONNX Runtime CUDA provider options; values as ONNX Runtime takes them."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"provider_options must be a table of option = value, got {value!r}; "
                         "e.g. provider_options = {sdpa_kernel = \"1\"}")
    reserved = sorted(set(value) & set(RESERVED_PROVIDER_OPTIONS))
    if reserved:
        raise ValueError(f"provider_options may not set {', '.join(reserved)}: the plugin sets "
                         "them (use the ort-cuda-graph backend for a CUDA graph)")
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[key] = "1" if item else "0"
        elif isinstance(item, (str, int)):
            out[key] = str(item)
        else:
            raise ValueError(f"provider_options.{key} must be a string, integer or boolean, "
                             f"got {item!r}")
    return out


def _threads(value: Any) -> int:
    return parse_count(value, "threads (0: the library's default)")


ORT_CPU_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "intra_op_threads": _threads,
    "inter_op_threads": _threads,
    "execution_mode": lambda v: parse_choice(v, "execution_mode", ("sequential", "parallel")),
    "graph_optimization_level": lambda v: parse_choice(
        v, "graph_optimization_level", ("disable", "basic", "extended", "all")),
    # Off by default: ONNX Runtime's workers stop spinning when a call returns, instead of
    # spinning on and holding a core through whatever runs next (backends/onnxruntime_cpu.py).
    "spin_between_calls": parse_bool,
}
TORCH_CUDA_OPTIONS: dict[str, Callable[[Any], Any]] = {
    # TF32 trades FP32 matmul precision for speed; off unless asked, and always recorded.
    "tf32": parse_bool,
    # SDPA is what transformers runs by default, so what a PyTorch user measures; "eager"
    # runs the attention the ONNX export is traced from.
    "attention": lambda v: parse_choice(v, "attention", ("sdpa", "eager")),
    # Who quantizes int8-dynamic and fp8: torchao when it imports ("auto"), or the plugin's
    # own layers on torch's INT8/FP8 GEMMs (backends/quantized_linear.py); fp8-static is
    # always the plugin's own.
    "quantizer": lambda v: parse_choice(v, "quantizer", ("auto", "torchao", "builtin")),
    "compile_mode": lambda v: parse_choice(
        v, "compile_mode", ("default", "reduce-overhead", "max-autotune")),
}
# Kernel tuning, off unless asked and recorded in each result's settings when on:
# ORT's TunableOp on the CUDA provider times candidate GEMM kernels per shape at first use.
# provider_options: further CUDA provider options (ONNX Runtime's names and string values,
# e.g. sdpa_kernel, enable_skip_layer_norm_strict_mode), passed through and recorded.
ORT_CUDA_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "tunable_op": parse_bool, "provider_options": parse_provider_options}
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

_TORCH = ("torch", "transformers")
# INT8 (dynamic activations) and FP8 (dynamic, or static from calibration) run on the tensor
# cores' own GEMMs (backends/quantized_linear.py); FP8 needs compute capability 8.9 or later.
_TORCH_CUDA_PRECISIONS = ("fp32", "fp16", "bf16", "int8-dynamic", "fp8", "fp8-static")
_ORT = (*_TORCH, "onnx", "onnxruntime")
_TORCH_CUDA: dict[str, Any] = {"device": "cuda", "modules": _TORCH, "extra": "gpu",
               "factory": "pytest_xfperf.backends.torch_cuda:create",
               "options": TORCH_CUDA_OPTIONS, "memory_probe": "torch", "tracked": _TORCH,
               "yardstick": "cuda"}
_ORT_CUDA: dict[str, Any] = {
             "device": "cuda", "modules": _ORT, "extra": "gpu", "onnx_target": "gpu",
             "factory": "pytest_xfperf.backends.onnxruntime_cuda:create",
             "options": ORT_CUDA_OPTIONS, "memory_probe": "nvml",
             "tracked": (*_TORCH, "onnx", "onnxruntime-gpu"), "yardstick": "cuda"}

BACKENDS: dict[str, BackendInfo] = {b.name: b for b in (
    BackendInfo(name="torch-cpu", precisions=("fp32",), device="cpu", modules=_TORCH,
                extra="cpu", factory="pytest_xfperf.backends.pytorch:create",
                options=TORCH_CPU_OPTIONS, tracked=_TORCH, yardstick="cpu", pacing="torch"),
    # FP16 runs on the CPU provider (it casts around kernels it lacks in FP16): slower than
    # FP32 there, but it checks the FP16 artifact's accuracy without a GPU.
    BackendInfo(name="ort-cpu", precisions=("fp32", "fp16", "int8-dynamic", "int8-static"),
                device="cpu", modules=_ORT, extra="cpu", onnx_target="cpu",
                factory="pytest_xfperf.backends.onnxruntime_cpu:create",
                options=ORT_CPU_OPTIONS, tracked=(*_TORCH, "onnx", "onnxruntime"),
                yardstick="cpu", pacing="onnxruntime"),
    # Eager: its device time is the host's launch rate, which the launch yardstick follows.
    # Its generation steps keep the launched spread: that yardstick was not measured there.
    BackendInfo(name="torch-cuda", precisions=_TORCH_CUDA_PRECISIONS,
                **{**_TORCH_CUDA, "yardstick": "cuda-launch"}, pacing="eager",
                generation_pacing="launched"),
    BackendInfo(name="torch-cuda-graph", precisions=_TORCH_CUDA_PRECISIONS,
                fixed_shapes=True, pacing="captured", **_TORCH_CUDA),
    # Compiled with dynamic=False (every new batch shape would recompile), then replayed from
    # a CUDA graph captured by hand, as torch-cuda-graph is (backends/torch_cuda.py).
    BackendInfo(name="torch-compile", precisions=_TORCH_CUDA_PRECISIONS, fixed_shapes=True,
                pacing="captured", **_TORCH_CUDA),
    # INT8 on the CUDA provider is the QDQ file: ORT runs its Q/DQ nodes, but the CUDA
    # provider has no INT8 matmul kernels; TensorRT (below) has.
    BackendInfo(name="ort-cuda", precisions=("fp32", "fp16", "int8-static"), **_ORT_CUDA),
    # A generation step replays a captured graph, but each step is an ONNX Runtime run called
    # from the host, whose own work is likely as long as a small model's kernels: an
    # unchanged gpt2-tiny TPOT moved +10.9 % between processes (docs/generation.md), so its
    # steps take the spread of host-paced (launched) calls.
    BackendInfo(name="ort-cuda-graph", precisions=("fp32", "fp16"), fixed_shapes=True,
                pacing="captured", generation_pacing="launched", **_ORT_CUDA),
    BackendInfo(name="ort-trt", precisions=("fp32", "fp16", "int8-static"), device="cuda",
                modules=(*_ORT, "tensorrt"), extra="tensorrt", onnx_target="portable",
                factory="pytest_xfperf.backends.onnxruntime_cuda:create", memory_probe="nvml",
                tracked=(*_TORCH, "onnx", "onnxruntime-gpu", "tensorrt"), yardstick="cuda"),
    BackendInfo(name="tensorrt", precisions=("fp32", "fp16", "int8-static"), device="cuda",
                modules=(*_TORCH, "onnx", "tensorrt"), extra="tensorrt",
                onnx_target="portable", factory="pytest_xfperf.backends.tensorrt:create",
                options=TENSORRT_OPTIONS, memory_probe="nvml",
                tracked=(*_TORCH, "onnx", "tensorrt"), yardstick="cuda"),
)}
# PyTorch on each device: the other side of every case's speed-up. On the CPU, eager
# PyTorch. On a GPU, PyTorch with its launches captured in a CUDA graph: eager PyTorch there
# is bound by the host's kernel-launch rate at transformer-inference sizes, and that rate
# moved eager BERT-base's time by up to 2x between processes on one H200 (docs/gpu.md), which
# no change of the optimized path would explain.
SPEEDUP_REFERENCE = {"cpu": "torch-cpu", "cuda": "torch-cuda-graph"}
# A quantized case is measured against PyTorch in floating point: FP32 on the CPU (what
# users quantize from there), FP16 on a GPU.
FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")
QUANTIZED_REFERENCE = {"cpu": "fp32", "cuda": "fp16"}
# Bytes a weight takes when a model runs at a precision (memory of a PyTorch GPU model, the
# bytes a decode step reads): INT8 and FP8 weights are 1 byte, a quantized model's few float
# layers aside; any precision not listed, FP32's 4.
WEIGHT_BYTES = {"fp16": 2, "bf16": 2, "int8-dynamic": 1, "fp8": 1, "fp8-static": 1}


def weight_bytes(precision: str) -> int:
    return WEIGHT_BYTES.get(precision, 4)


def pace_fields(clock: str, backend: str, prefill: bool = False,
                generation: bool = False) -> dict[str, str]:
    """What a block record on ``clock`` says of its pacing: on the device clock, what paces
    the backend's calls (its generation steps' where ``generation`` and they differ); for a
    generation's prefill (its TTFT) on a captured backend, "prefill": one replay after the
    host's work between generations, which moved up to 10.3 % between unchanged processes
    where the decode steps moved within 3 % (docs/generation.md, "Generation A/A on the
    GPU"). On the wall clock, the CPU library whose threads run the call ("torch" has
    spreads of its own: the ONNX Runtime yardstick follows it less). Nothing for a backend
    not in the catalog (on the device clock the gate then takes the widest spread)."""
    info = BACKENDS.get(backend)
    if info is None:
        return {}
    if clock != "device":
        return {"pacing": info.pacing} if info.device == "cpu" else {}
    pacing = (info.generation_pacing or info.pacing) if generation or prefill else info.pacing
    return {"pacing": "prefill" if prefill and pacing == "captured" else pacing}


def fp32_in_tf32(backend: str) -> bool:
    """Whether ``backend`` runs FP32 products in TF32 unless told otherwise: ONNX Runtime's
    CUDA provider does by default (``use_tf32``), with or without its CUDA graph; an FP32
    case there is measured against the TF32 peak."""
    info = BACKENDS[backend]
    return info.uses_onnx and info.device == "cuda"


def speedup_reference(backend: str, precision: str) -> tuple[str, str]:
    """(backend, precision) of the speed-up's reference: PyTorch on the case's device (see
    SPEEDUP_REFERENCE), at the case's precision if it is a floating-point one the reference
    runs, else the device's QUANTIZED_REFERENCE (FP32 where that is all it runs)."""
    device = BACKENDS[backend].device
    reference = BACKENDS[SPEEDUP_REFERENCE[device]]
    if precision in FLOAT_PRECISIONS and precision in reference.precisions:
        return reference.name, precision
    fallback = QUANTIZED_REFERENCE[device]
    return reference.name, fallback if fallback in reference.precisions else "fp32"


# Generation (prefill and greedy decode with a KV cache, generation/): each backend runs it
# the way its library does. The PyTorch backends use transformers' dynamic cache, or a static
# cache with the prefill and decode step captured in CUDA graphs (torch-cuda-graph) or
# compiled by torch.compile (torch-compile); on a GPU their INT8 and FP8 are the encoder
# cases' linear layers (backends/quantized_linear.py). ort-cpu and ort-cuda run an export
# with the past keys and values as inputs and outputs; ort-cuda-graph one whose keys and
# values stay in buffers of fixed size, its prefill and decode step replayed from CUDA graphs.
# fp8-static is not offered for generation: its scales would be calibrated on prompts, and a
# decode step's activations are not a prompt's.
_TORCH_CUDA_GENERATION = tuple(p for p in _TORCH_CUDA_PRECISIONS if p != "fp8-static")
GENERATION_PRECISIONS: dict[str, tuple[str, ...]] = {
    "torch-cpu": ("fp32",),
    "ort-cpu": ("fp32", "int8-dynamic"),
    "torch-cuda": _TORCH_CUDA_GENERATION,
    "torch-cuda-graph": _TORCH_CUDA_GENERATION,
    "torch-compile": _TORCH_CUDA_GENERATION,
    "ort-cuda": ("fp32", "fp16"),
    "ort-cuda-graph": ("fp32", "fp16"),
}


def generation_unsupported_reason(backend: str, precision: str, scenario: str) -> str | None:
    """Why ``backend`` does not generate at ``precision`` (None: it does)."""
    if scenario != "single-stream":
        return (f"the {scenario} scenario batches encoder requests; generative cases run "
                "single-stream (a batch of prompts decoded together)")
    runs = GENERATION_PRECISIONS.get(backend)
    if runs is None:
        ran = ", ".join(GENERATION_PRECISIONS)
        return f"{backend} has no generation path in pytest-xfperf (generation runs on {ran})"
    if precision not in runs:
        return f"{backend} generates in {', '.join(runs)}, not {precision}"
    return None


def load_factory(info: BackendInfo) -> Callable[..., Any]:
    """The backend's ``create`` function, imported now (heavy imports happen here)."""
    import importlib

    module, _, function = info.factory.partition(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(module), function)
    return factory
