"""ONNX Runtime with the CUDA execution provider (optionally its CUDA graph) or TensorRT's.

IO binding keeps inputs and the output on the device, in buffers torch owns, so the timed
call is one ``run_with_iobinding`` with no host copies. The provider runs on torch's current
stream (``user_compute_stream``), so CUDA events recorded there bracket its kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_xfperf.backends.base import BackendUnavailable
from pytest_xfperf.backends.torch_cuda import (
    cuda_synchronize,
    device_tensors,
    host_array,
    require_cuda,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pytest_xfperf.backends.base import RunnerContext

GPU_EXTRA = "pip install 'pytest-xfperf[gpu]' (onnxruntime-gpu)"


def create(context: RunnerContext) -> OrtCudaRunner:
    """ort-cuda, ort-cuda-graph (the provider's CUDA graph) and ort-trt (TensorRT's)."""
    assert context.artifact_path is not None
    backend = context.case.backend
    provider = "TensorrtExecutionProvider" if backend == "ort-trt" else "CUDAExecutionProvider"
    return OrtCudaRunner(context.artifact_path, context.case.precision,
                         cuda_graph=backend == "ort-cuda-graph", provider=provider,
                         options=context.options)


def load_ort_gpu() -> Any:
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:  # find the CUDA libraries that came with torch
        try:
            preload()
        except Exception:  # noqa: BLE001 - a failed preload shows up as a missing provider
            pass
    return ort


def cuda_tuning(tunable_op: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CUDA provider's options that the backend's settings choose: kernel tuning (each GEMM
    shape's kernels are timed at its first run) and the user's ``provider_options``, last so
    that they win."""
    options = {"tunable_op_enable": "1", "tunable_op_tuning_enable": "1"} if tunable_op else {}
    return {**options, **dict(extra or {})}


def provider_options(provider: str, cuda_graph: bool, stream: int,
                     precision: str, tunable_op: bool = False,
                     extra: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """The provider and its options, as ORT's Python API takes them (all strings); ``extra``:
    the user's ``provider_options`` (CUDA provider only)."""
    if provider == "TensorrtExecutionProvider":
        return provider, {"device_id": "0", "trt_fp16_enable": str(precision != "fp32"),
                          "trt_int8_enable": str(precision == "int8-static"),
                          "trt_engine_cache_enable": "True",
                          "user_compute_stream": str(stream)}
    options = {"device_id": "0", "enable_cuda_graph": "1" if cuda_graph else "0",
               "user_compute_stream": str(stream), "do_copy_in_default_stream": "1"}
    return provider, {**options, **cuda_tuning(tunable_op, extra)}


class OrtCudaRunner:
    def __init__(self, model_path: Path, precision: str, cuda_graph: bool = False,
                 provider: str = "CUDAExecutionProvider",
                 options: Mapping[str, Any] | None = None) -> None:
        import torch

        require_cuda()
        ort = load_ort_gpu()
        if provider not in ort.get_available_providers():
            what = "CUDA" if provider == "CUDAExecutionProvider" else "TensorRT"
            extra = GPU_EXTRA if what == "CUDA" else "pip install 'pytest-xfperf[tensorrt]'"
            raise BackendUnavailable(f"onnxruntime {ort.__version__} has no {what} execution "
                                     f"provider: {extra}")
        self.name = {"CUDAExecutionProvider": "ort-cuda-graph" if cuda_graph else "ort-cuda",
                     "TensorrtExecutionProvider": "ort-trt"}[provider]
        self._ort = ort
        self._path = model_path
        self._precision = precision
        self._stream = torch.cuda.current_stream().cuda_stream
        self._session_options = dict(options or {})
        self._tunable_op = bool(self._session_options.get("tunable_op", False))
        self._extra: dict[str, str] = dict(self._session_options.get("provider_options", {}))
        self._cuda_graph_note = "off"
        self._provider = provider
        try:
            self._session = self._open(cuda_graph)
            if cuda_graph:
                self._cuda_graph_note = "on"
        except Exception as exc:  # ORT raises its own Fail type, not importable by name
            if not cuda_graph or "graph capture" not in str(exc):
                raise
            # Newer ONNX Runtime refuses at session creation what older ones refused at the
            # first run (a node on the CPU provider): the same fallback as in prepare().
            self._cuda_graph_note = f"off: ORT could not capture a CUDA graph ({exc})"[:300]
            self._session = self._open(False)
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name
        self._binding: Any = None
        self._output_buffer: torch.Tensor | None = None
        self._wants_graph = cuda_graph
        self._keep: dict[str, torch.Tensor] = {}
        self._plain: Any = None  # a graph-free session for other shapes (accuracy corpus)

    def _open(self, cuda_graph: bool) -> Any:
        ort = self._ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [provider_options(self._provider, cuda_graph, self._stream,
                                      self._precision, self._tunable_op, self._extra),
                     "CPUExecutionProvider"]
        session = ort.InferenceSession(str(self._path), options, providers=providers)
        if session.get_providers()[0] != self._provider:
            raise BackendUnavailable(f"{self._provider} could not be enabled for {self._path}")
        return session

    def _bind(self, tensors: Mapping[str, torch.Tensor], out: torch.Tensor) -> Any:
        import numpy as np

        binding = self._session.io_binding()
        for name, tensor in tensors.items():
            if name in self._input_names:
                binding.bind_input(name, "cuda", 0, np.int64, tuple(tensor.shape),
                                   tensor.data_ptr())
        binding.bind_output(self._output, "cuda", 0, np.float32, tuple(out.shape),
                            out.data_ptr())
        return binding

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        import torch

        shape = self._plain_run(inputs).shape
        tensors = device_tensors(inputs)
        out = torch.empty(shape, dtype=torch.float32, device="cuda")
        binding = self._bind(tensors, out)
        session = self._session
        try:
            session.run_with_iobinding(binding)  # with a CUDA graph, this run captures it
        except Exception as exc:  # noqa: BLE001 - ORT refuses graphs with CPU nodes at run
            if not self._wants_graph:
                raise
            # Some node runs on the CPU (a shape computation, a Memcpy): no graph possible.
            self._cuda_graph_note = f"off: ORT could not capture a CUDA graph ({exc})"[:300]
            self._session = session = self._open(False)
            binding = self._bind(tensors, out)
        self._binding, self._output_buffer = binding, out
        self._keep = tensors  # the bound buffers must outlive the binding
        return lambda: session.run_with_iobinding(binding)

    @property
    def _graph_captured(self) -> bool:
        """The session runs a captured CUDA graph (asked for, and ORT did not refuse it)."""
        return self._wants_graph and self._cuda_graph_note == "on"

    def _plain_run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        feeds = {k: v for k, v in inputs.items() if k in self._input_names}
        if self._graph_captured:
            # A CUDA-graph session runs only through its captured binding: other shapes go
            # through a graph-free session of the same file (outside timing).
            if self._plain is None:
                self._plain = self._ort.InferenceSession(
                    str(self._path), providers=[provider_options(
                        self._provider, False, self._stream, self._precision,
                        self._tunable_op, self._extra)])
            result: np.ndarray = self._plain.run([self._output], feeds)[0]
            return result
        result = self._session.run([self._output], feeds)[0]
        return result

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One call from host arrays to a host array, as a service makes it: ``session.run``,
        which copies in and out itself. Only a captured CUDA graph goes through the prepared
        binding, since it can run no other way."""
        import torch

        if self._graph_captured and self._binding is not None \
                and self._output_buffer is not None and all(
                    k not in self._keep or tuple(self._keep[k].shape) == v.shape
                    for k, v in inputs.items()):
            for name, value in inputs.items():
                if name in self._keep:
                    self._keep[name].copy_(torch.from_numpy(value))
            self._session.run_with_iobinding(self._binding)
            return host_array(self._output_buffer)
        return self._plain_run(inputs)

    def synchronize(self) -> None:
        cuda_synchronize()

    def settings(self) -> dict[str, Any]:
        tuning: dict[str, Any] = {"tunable_op": "on"} if self._tunable_op else {}
        if self._extra:
            tuning["provider_options"] = dict(sorted(self._extra.items()))
        return {"provider": self._provider, "cuda_graph": self._cuda_graph_note, **tuning,
                "io_binding": "single-stream timing: inputs and output on the device "
                              "(torch-owned buffers); serving: session.run from host arrays",
                "stream": "torch's current stream", "onnxruntime": self._ort.__version__,
                "timed": "run_with_iobinding, synchronized (wall clock); device time by CUDA "
                         "events"}

    def close(self) -> None:
        self._binding = None
        self._output_buffer = None
        self._keep = {}
        self._plain = None
        del self._session
