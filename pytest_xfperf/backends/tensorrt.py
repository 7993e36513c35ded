"""TensorRT engines built from the pipeline's ONNX files, for TensorRT 10 and 11.

NOT EXECUTED on this project's machines: TensorRT cannot be installed on them. The code is
written against TensorRT's Python API and type-checked with ``tensorrt-stubs`` (10.13) in CI;
the pure parts (profile shapes, cache keys, version switch) are unit-tested. Treat the first
real run as its first test.

* TensorRT 10: the network is built from the FP32 (or QDQ) ONNX with builder precision flags
  (FP16, and INT8 for a QDQ file whose Q/DQ nodes carry the scales: explicit quantization).
* TensorRT 11 removed those flags and implicit INT8: networks are strongly typed, so FP16
  comes from the FP16 ONNX and INT8 from the QDQ ONNX, as they are.
* One optimization profile spans the matrix's shapes (min / opt / max per input).
* The engine and the timing cache live in the artifact cache, keyed by the ONNX file's key,
  TensorRT's version, the GPU's name and the build options.
* Execution binds tensors by name to device buffers owned by torch and enqueues on torch's
  current stream (``execute_async_v3``): no pycuda.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_xfperf.backends.base import BackendUnavailable
from pytest_xfperf.backends.torch_cuda import (
    cuda_synchronize,
    device_tensors,
    host_array,
    require_cuda,
)
from pytest_xfperf.values import Shape

if TYPE_CHECKING:
    import numpy as np
    import tensorrt as trt
    import torch

    from pytest_xfperf.backends.base import RunnerContext

TRT_EXTRA = "pip install 'pytest-xfperf[tensorrt]' (TensorRT 10 or 11)"
ENGINE_FILE = "model.engine"
TIMING_CACHE_FILE = "timing.cache"
WORKSPACE_BYTES = 4 << 30
NOT_EXECUTED_NOTE = ("TensorRT backend: written against TensorRT 10/11 and type-checked, but "
                     "never executed on this project's machines (TensorRT is not installable "
                     "there)")


def create(context: RunnerContext) -> TensorRTRunner:
    """An engine for this ONNX file, TensorRT version, GPU and profile, from the cache."""
    import torch

    session, case = context.session, context.case
    trt_module = load_tensorrt()
    if not hasattr(trt_module, "Builder"):  # tensorrt-stubs alone installs a bare package
        raise BackendUnavailable("only TensorRT's type stubs are installed, not TensorRT: "
                                 + TRT_EXTRA)
    version = str(trt_module.__version__)
    assert context.artifact_path is not None
    onnx_path = context.artifact_path
    variant = onnx_variant(version, case.precision)
    if variant != case.precision:  # TensorRT 10 builds FP16 from the FP32 file with a flag
        spec = session.registry.get(case.ref)
        onnx_path = session.pipeline.build(spec, variant, lambda: session.model(spec),
                                           case.shape, "portable").path
    # Serving batches range from one short request to the case's shape.
    profile = profile_shapes(session.settings.matrix.shapes, serving=case.serving)
    level = context.options.get("builder_optimization_level")
    parts = engine_cache_parts(onnx_path.parent.name, version, torch.cuda.get_device_name(),
                               case.precision, profile, level)
    progress = session.progress(case.id)

    def build(directory: Path) -> dict[str, Any]:
        progress("building the TensorRT engine...")
        info = build_engine(onnx_path, directory, case.precision, profile,
                            optimization_level=level)
        progress("built the TensorRT engine")
        return info

    entry = session.cache.get_or_build(parts, build)
    return TensorRTRunner(entry.file(ENGINE_FILE), case.precision, level)


class EngineBuildError(Exception):
    """TensorRT could not parse or build: the message carries TensorRT's own log lines."""


def load_tensorrt() -> Any:
    try:
        import tensorrt
    except ModuleNotFoundError:
        raise BackendUnavailable(f"TensorRT is not installed: {TRT_EXTRA}") from None
    return tensorrt


def major_version(version: str) -> int:
    head = version.split(".", 1)[0]
    if not head.isdigit():
        raise ValueError(f"unreadable TensorRT version {version!r}")
    return int(head)


def strongly_typed(version: str) -> bool:
    """TensorRT 11 builds strongly typed networks only; 10 keeps the precision flags."""
    return major_version(version) >= 11


def onnx_variant(version: str, precision: str) -> str:
    """Which pipeline artifact the engine is built from (the portable, unfused files)."""
    if precision == "int8-static":
        return "int8-static"  # the QDQ file, for both majors
    if precision == "fp16" and strongly_typed(version):
        return "fp16"  # TRT 11: the FP16 ONNX carries the precision
    return "fp32"  # TRT 10: FP32 ONNX plus the FP16 builder flag


def profile_shapes(shapes: Sequence[Shape], serving: bool = False
                   ) -> dict[str, tuple[int, int]]:
    """min / opt / max (batch, seq) over the matrix's shapes; opt is the largest batch at the
    most common sequence length (the case a profile is most often tuned for). ``serving``:
    batches of the offline/server scenarios go down to one request of one token."""
    if not shapes:
        raise ValueError("no shapes to build an optimization profile for")
    batches = [s.batch for s in shapes]
    seqs = [s.seq for s in shapes]
    common_seq = max(set(seqs), key=lambda q: (seqs.count(q), q))
    opt_batch = max(s.batch for s in shapes if s.seq == common_seq)
    low = (1, 1) if serving else (min(batches), min(seqs))
    return {"min": low, "opt": (opt_batch, common_seq), "max": (max(batches), max(seqs))}


def engine_cache_parts(onnx_key: str, version: str, gpu_name: str, precision: str,
                       profile: Mapping[str, tuple[int, int]],
                       optimization_level: int | None = None) -> dict[str, Any]:
    """Everything an engine depends on; a change in any of it means another engine."""
    parts = {"stage": "tensorrt-engine", "onnx": onnx_key, "tensorrt": version,
             "gpu": gpu_name, "precision": precision,
             "profile": {k: list(v) for k, v in sorted(profile.items())},
             "strongly_typed": strongly_typed(version), "workspace": WORKSPACE_BYTES}
    if optimization_level is not None:  # absent: TensorRT's default, and older cache keys
        parts["builder_optimization_level"] = optimization_level
    return parts


class _Log:
    """A TensorRT logger that keeps warnings and errors for the failure message."""

    def __init__(self, trt_module: Any) -> None:
        self.messages: list[str] = []
        outer = self

        class Logger(trt_module.ILogger):  # type: ignore[misc]
            def __init__(self) -> None:
                trt_module.ILogger.__init__(self)

            def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
                if severity <= trt_module.ILogger.Severity.WARNING:
                    outer.messages.append(f"[{severity.name}] {msg}")

        self.logger = Logger()


def build_engine(onnx_path: Path, out_dir: Path, precision: str,
                 profile: Mapping[str, tuple[int, int]],
                 timing_cache: bytes | None = None,
                 optimization_level: int | None = None) -> dict[str, Any]:
    """Parse ``onnx_path``, build a serialized engine into ``out_dir``; returns build info."""
    trt_module = load_tensorrt()
    version = str(trt_module.__version__)
    log = _Log(trt_module)
    builder = trt_module.Builder(log.logger)
    flags = 0
    if strongly_typed(version):
        flags |= 1 << int(trt_module.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt_module.OnnxParser(network, log.logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT could not parse {onnx_path.name}:\n"
                               + "\n".join(errors + log.messages))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt_module.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if optimization_level is not None:  # kernel tuning: more tactics searched at build time
        config.builder_optimization_level = optimization_level
    if not strongly_typed(version):
        if precision in ("fp16", "int8-static"):
            config.set_flag(trt_module.BuilderFlag.FP16)
        if precision == "int8-static":
            config.set_flag(trt_module.BuilderFlag.INT8)  # explicit: scales from Q/DQ nodes
    optimization = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        name = network.get_input(index).name
        optimization.set_shape(name, profile["min"], profile["opt"], profile["max"])
    config.add_optimization_profile(optimization)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError("TensorRT failed to build the engine:\n" + "\n".join(
            log.messages or ["(no message from TensorRT)"]))
    (out_dir / ENGINE_FILE).write_bytes(bytes(serialized))
    (out_dir / TIMING_CACHE_FILE).write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"tensorrt": version, "strongly_typed": strongly_typed(version),
            "precision": precision, "profile": {k: list(v) for k, v in profile.items()},
            "builder_optimization_level": optimization_level, "warnings": log.messages[-20:]}


class TensorRTRunner:
    name = "tensorrt"

    def __init__(self, engine_path: Path, precision: str,
                 optimization_level: int | None = None) -> None:
        require_cuda()
        self._optimization_level = optimization_level
        trt_module = load_tensorrt()
        self._trt = trt_module
        self._log = _Log(trt_module)
        self._runtime = trt_module.Runtime(self._log.logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise EngineBuildError("TensorRT could not load the engine:\n"
                                   + "\n".join(self._log.messages))
        self._context = self._engine.create_execution_context()
        self._precision = precision
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        mode = trt_module.TensorIOMode.INPUT
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == mode]
        self._outputs = [n for n in names if n not in self._inputs]
        self._buffers: dict[str, torch.Tensor] = {}

    def _bind(self, inputs: Mapping[str, np.ndarray]) -> torch.Tensor:
        import torch

        tensors = device_tensors({k: v for k, v in inputs.items() if k in self._inputs})
        for name, tensor in tensors.items():
            self._context.set_input_shape(name, tuple(tensor.shape))
            self._context.set_tensor_address(name, tensor.data_ptr())
        dtypes = {self._trt.DataType.FLOAT: torch.float32, self._trt.DataType.HALF: torch.float16,
                  self._trt.DataType.BF16: torch.bfloat16}
        outputs = {}
        for name in self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            dtype = dtypes[self._engine.get_tensor_dtype(name)]
            outputs[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self._context.set_tensor_address(name, outputs[name].data_ptr())
        self._buffers = {**tensors, **outputs}  # kept alive while bound
        return outputs[self._outputs[0]]

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        import torch

        self._bind(inputs)
        context = self._context

        def call() -> object:
            return context.execute_async_v3(torch.cuda.current_stream().cuda_stream)

        return call

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        import torch

        out = self._bind(inputs)
        if not self._context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise EngineBuildError("TensorRT execution failed:\n" + "\n".join(
                self._log.messages))
        return host_array(out)

    def synchronize(self) -> None:
        cuda_synchronize()

    def settings(self) -> dict[str, Any]:
        return {"tensorrt": str(self._trt.__version__), "precision": self._precision,
                "strongly_typed": strongly_typed(str(self._trt.__version__)),
                "note": NOT_EXECUTED_NOTE,
                **({"builder_optimization_level": self._optimization_level}
                   if self._optimization_level is not None else {}),
                "timed": "execute_async_v3 on torch's stream, synchronized (wall clock)"}

    def close(self) -> None:
        self._buffers.clear()
        del self._context
        del self._engine
