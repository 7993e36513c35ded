"""PyTorch on a CUDA GPU: eager, CUDA-graph replay, or torch.compile; FP32, FP16, BF16, and
INT8 or FP8 linear layers on the tensor cores' GEMMs (backends/quantized_linear.py).

Attention runs as transformers runs it by default, SDPA; ``attention = "eager"`` in
[tool.xfperf.<backend>] runs the eager attention the ONNX export is traced from instead.

torch-cuda-graph and torch-compile replay one CUDA graph a call, captured by hand in
``prepare``: torch-compile captures the compiled forward (inductor's kernels, compiled without
graphs of its own, ``NO_GRAPH_MODES``), so both replay the same way and are paced the same way.

Inputs are copied to the device once in ``prepare``; the timed call launches the model and the
harness synchronizes after each call, so a sample is the wall-clock time of one complete
inference with no host copies in it. The output stays on the device (copied only by ``run``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pytest_xfperf.backends.base import BackendUnavailable
from pytest_xfperf.backends.quantized_linear import (
    BASE_DTYPE,
    FP8_PRECISIONS,
    Quantized,
    quantize_model,
    require_fp8_tensor_cores,
)
from pytest_xfperf.models.module import primary_output

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pytest_xfperf.backends.base import RunnerContext

MODES = ("eager", "graph", "compile")
CAPTURED_MODES = ("graph", "compile")  # replayed from a CUDA graph captured in ``prepare``
# torch.compile modes that capture CUDA graphs of their own, and the same compilation without
# them: the compiled call is captured by hand instead. Inductor's own graphs ran at two levels
# about 2x apart, between processes and from one call to the next (docs/generation.md); a hand
# capture of the same kernels replays steadily, and replays exactly what was captured.
NO_GRAPH_MODES = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", **BASE_DTYPE}
GRAPH_WARMUP = 3  # eager calls on a side stream before capture, as torch's docs require


def create(context: RunnerContext) -> TorchCudaRunner:
    mode = {"torch-cuda": "eager", "torch-cuda-graph": "graph",
            "torch-compile": "compile"}[context.case.backend]
    return TorchCudaRunner(context.model(), context.case.precision, mode,
                           tf32=bool(context.options.get("tf32", False)),
                           compile_mode=str(context.options.get("compile_mode",
                                                                "reduce-overhead")),
                           attention=str(context.options.get("attention", "sdpa")),
                           quantizer=choose_quantizer(str(context.options.get("quantizer",
                                                                              "auto"))),
                           calibration=context.calibration)


def compile_for_capture(function: Callable[..., Any], compile_mode: str
                        ) -> tuple[Callable[..., Any], str]:
    """``function`` compiled by torch.compile for one input shape (``dynamic=False``) and
    without CUDA graphs of its own (``NO_GRAPH_MODES``), ready to be captured by hand; and the
    mode it was compiled in."""
    import torch

    # Compiled code is cached per code object, up to torch._dynamo's recompile limit, past
    # which torch runs the code eagerly without an error. Each caller compiles a model of its
    # own and starts from an empty cache, so that what it times is compiled.
    torch._dynamo.reset()
    mode = NO_GRAPH_MODES.get(compile_mode, compile_mode)
    return torch.compile(function, mode=mode, dynamic=False), mode


def choose_quantizer(asked: str) -> str:
    """"auto": torchao when it imports, else the plugin's own layers."""
    if asked != "auto":
        return asked
    import importlib.util

    return "torchao" if importlib.util.find_spec("torchao") is not None else "builtin"


def set_attention(model: torch.nn.Module, attention: str) -> str:
    """Switch a transformers model's attention implementation; return the one it runs.
    Other modules keep theirs (reported as "model's own")."""
    switch = getattr(model, "set_attn_implementation", None)
    if switch is None or getattr(model, "config", None) is None:
        return "model's own"
    switch(attention)
    return str(getattr(model.config, "_attn_implementation", attention))


def require_cuda() -> None:
    try:
        import torch
    except ModuleNotFoundError:
        raise BackendUnavailable("CUDA backends need torch: pip install torch") from None
    if not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA device: CUDA backends run only on a machine with an "
                                 "NVIDIA GPU and a CUDA build of torch")


def device_tensors(inputs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    import torch

    return {k: torch.from_numpy(v).to("cuda", non_blocking=False) for k, v in inputs.items()}


def host_array(out: torch.Tensor) -> np.ndarray:
    """Wait for the device, then the output as FP32 on the host (outside any timed region)."""
    import torch

    torch.cuda.synchronize()
    result: np.ndarray = out.float().cpu().numpy()
    return result


def cuda_synchronize() -> None:
    import torch

    torch.cuda.synchronize()


class TorchCudaRunner:
    def __init__(self, model: torch.nn.Module, precision: str, mode: str = "eager",
                 tf32: bool = False, compile_mode: str = "reduce-overhead",
                 attention: str = "sdpa", quantizer: str = "builtin",
                 calibration: Callable[[], list[Mapping[str, np.ndarray]]] | None = None
                 ) -> None:
        import torch

        require_cuda()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if precision in FP8_PRECISIONS:
            require_fp8_tensor_cores()
        self.name = {"eager": "torch-cuda", "graph": "torch-cuda-graph",
                     "compile": "torch-compile"}[mode]
        self._mode = mode
        self._dtype = getattr(torch, DTYPES[precision])
        # TF32 changes FP32 matmul results and speed: set explicitly, restored on close.
        self._previous_tf32 = (torch.backends.cuda.matmul.allow_tf32,
                               torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        self._tf32 = tf32
        # A copy: the CPU model stays the FP32 reference of the session.
        self._model = copy.deepcopy(model).to("cuda", self._dtype).eval()
        self._attention = set_attention(self._model, attention)
        self._quantized: Quantized | None = None
        if precision in BASE_DTYPE:
            batches = ([device_tensors(b) for b in calibration()]
                       if precision == "fp8-static" and calibration is not None else [])
            self._quantized = quantize_model(self._model, precision, quantizer, batches)
        self._compiled: Callable[..., Any] | None = None
        self._compile_mode = compile_mode
        if mode == "compile":
            self._compiled, self._compile_mode = compile_for_capture(self._model, compile_mode)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_inputs: dict[str, torch.Tensor] = {}
        self._static_output: torch.Tensor | None = None

    def _forward(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        import torch

        # Not `or`: a compiled module proxies len() to the model, which has none.
        target = self._compiled if self._compiled is not None else self._model
        with torch.inference_mode():
            return primary_output(target(**tensors))

    def _capture(self, tensors: dict[str, torch.Tensor]) -> None:
        import torch

        stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(GRAPH_WARMUP):
                self._forward(tensors)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_output = self._forward(tensors)
        self._graph, self._static_inputs = graph, tensors

    def _graph_matches(self, inputs: Mapping[str, np.ndarray]) -> bool:
        static = self._static_inputs
        return bool(static) and all(k in static and static[k].shape[0] == v.shape[0]
                                    and static[k].shape[-1] == v.shape[-1]
                                    for k, v in inputs.items())

    def _graph_inputs(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Hugging Face models build their additive mask from the 2-D attention mask with a
        host-made scalar (a host-to-device copy, which CUDA graph capture forbids). They take a
        ready 4-D mask as is, so the same mask is built here, before capture."""
        import torch

        mask = tensors.get("attention_mask")
        if mask is None or mask.ndim != 2 or getattr(self._model, "config", None) is None:
            return tensors
        minimum = torch.finfo(self._dtype).min
        additive = (1.0 - mask[:, None, None, :].to(self._dtype)) * minimum
        return {**tensors, "attention_mask": additive}

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        tensors = device_tensors(inputs)
        if self._mode in CAPTURED_MODES:
            tensors = self._graph_inputs(tensors)
            self._capture(tensors)
            graph = self._graph
            assert graph is not None
            return graph.replay
        return lambda: self._forward(tensors)

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:

        if self._mode in CAPTURED_MODES and self._graph_matches(inputs):
            # The captured graph itself, on these inputs: what was timed is what is checked.
            fresh = self._graph_inputs(device_tensors(inputs))
            for name, value in fresh.items():
                self._static_inputs[name].copy_(value)
            assert self._graph is not None and self._static_output is not None
            self._graph.replay()
            out = self._static_output
        else:
            out = self._forward(device_tensors(inputs))
        return host_array(out)

    def synchronize(self) -> None:
        cuda_synchronize()

    def settings(self) -> dict[str, Any]:
        import torch

        settings: dict[str, Any] = {
            "device": torch.cuda.get_device_name(), "dtype": str(self._dtype).split(".")[-1],
            "mode": self._mode, "tf32": self._tf32, "torch": torch.__version__,
            "attention": self._attention,
            "cuda_runtime": torch.version.cuda, "inputs": "on device, copied before timing",
            "timed": "one call, synchronized (wall clock); device time by CUDA events"}
        if self._mode in CAPTURED_MODES:
            settings["cuda_graph"] = "captured by hand, one replay a call"
        if self._mode == "compile":
            settings["compile_mode"] = self._compile_mode
        if self._quantized is not None:
            settings.update(self._quantized.settings())
        return settings

    def close(self) -> None:
        import torch

        self._graph = None
        self._static_inputs.clear()
        self._static_output = None
        self._compiled = None
        del self._model
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (
            self._previous_tf32)
        torch.cuda.empty_cache()
