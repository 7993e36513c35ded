"""Machine yardsticks: fixed workloads owned by the plugin, one per device.

A yardstick is timed in short blocks between the case's blocks, with the case's thread
settings, so the two see the same state of the host; the ratio case/yardstick then moves with
the code under test and not with the neighbours. It never depends on the user's model: a
change to the model slows the case and leaves the yardstick alone. Its identity (workload,
library version, threads) is recorded; when it differs from the baseline's, the gate compares
the case's own times instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# A 4-layer MLP on a 64 x 512 activation: about 134 MFLOP, a few milliseconds on two cores;
# the same arithmetic as a transformer's dense layers, without its model.
ROWS, WIDTH, LAYERS = 64, 512, 4
# On the GPU: FP16 products of 4096-square matrices, a fraction of a millisecond each.
GPU_SIZE, GPU_PRODUCTS = 4096, 2
# For eager PyTorch on a GPU, whose kernels PyTorch launches one by one from Python: rounds of
# a 64-wide linear layer, layer norm and GELU on a 1 x 128 x 64 FP16 activation, 150 small
# kernels whose time is the host's launch rate, not the device's work.
LAUNCH_ROWS, LAUNCH_WIDTH, LAUNCH_ROUNDS = 128, 64, 50
# Bumped when a workload or how it runs changes: a baseline's yardstick then differs from the
# run's, and the gate compares the case's own times instead of misreading the change.
# 2: the session's threads sleep instead of spinning after a call. 3: an ONNX Runtime case's
# threads stop spinning when its calls return, so they no longer slow the yardstick's blocks.
CPU_WORKLOAD_VERSION = "3"
GPU_WORKLOAD_VERSION = "1"
LAUNCH_WORKLOAD_VERSION = "1"


@dataclass
class Yardstick:
    identity: str  # what a baseline records: workload, library version, threads
    call: Callable[[], object]
    synchronize: Callable[[], None]
    device: bool  # timed by CUDA events
    close: Callable[[], None]


def _weights() -> list[Any]:
    import numpy as np

    rng = np.random.default_rng(1234)
    return [(rng.standard_normal((WIDTH, WIDTH)) / WIDTH ** 0.5).astype(np.float32)
            for _ in range(LAYERS)]


def cpu_session(graph: Any, threads: int, spinning: bool = True,
                stop_after_run: bool = False) -> Any:
    """An ONNX Runtime CPU session of a plugin-owned graph (opset 17) on ``threads`` intra-op
    threads (0: its default) and one inter-op thread. With ``spinning`` off its worker threads
    sleep whenever they wait; with ``stop_after_run`` they spin within a call and stop
    spinning as soon as it returns."""
    import onnxruntime as ort
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # IR 8 is the oldest that carries opset 17: every ONNX Runtime this plugin supports
    # loads it, whatever IR the installed onnx package writes by default.
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if stop_after_run:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def mlp_graph(weights: list[Any], rows: int, name: str = "xfperf-yardstick") -> Any:
    """An ONNX graph of FP32 MatMul and Relu layers over ``weights`` (square, one width), on
    an input of ``rows`` rows; its output is named by ``graph.output[0].name``."""
    from onnx import TensorProto, helper, numpy_helper

    width = int(weights[0].shape[0])
    nodes, inits, last = [], [], "x"
    for i, weight in enumerate(weights):
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes += [helper.make_node("MatMul", [last, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        last = f"r{i}"
    return helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, [rows, width])], inits)


def cpu(threads: int) -> Yardstick:
    """The MLP in ONNX Runtime on ``threads`` intra-op threads (0: its default), for every CPU
    case: ONNX Runtime's and PyTorch's alike, since on a shared host it tracks both better
    than a PyTorch workload does (docs/measurements.md, "The yardstick")."""
    import numpy as np
    import onnxruntime as ort

    graph = mlp_graph(_weights(), ROWS)
    # Not spinning: a worker that spins on after the yardstick's block holds one of the
    # host's cores through the first calls of the case's next block (on 2 cores those took
    # 2.2x their median; docs/measurements.md, "The yardstick's threads").
    session = cpu_session(graph, threads, spinning=False)
    feeds = {"x": np.random.default_rng(0).standard_normal((ROWS, WIDTH)).astype(np.float32)}
    outputs = [graph.output[0].name]
    return Yardstick(f"mlp{CPU_WORKLOAD_VERSION} onnxruntime {ort.__version__} threads={threads}",
                     lambda: session.run(outputs, feeds), lambda: None, False, lambda: None)


def cuda(threads: int) -> Yardstick:
    """FP16 matrix products on the case's GPU, timed by CUDA events like the GPU cases."""
    import torch

    generator = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(GPU_SIZE, GPU_SIZE, device="cuda", dtype=torch.float16, generator=generator)
    b = torch.randn(GPU_SIZE, GPU_SIZE, device="cuda", dtype=torch.float16, generator=generator)

    def call() -> object:
        out = a
        for _ in range(GPU_PRODUCTS):
            out = out @ b
        return out

    def close() -> None:
        nonlocal a, b
        del a, b

    return Yardstick(f"gemm{GPU_WORKLOAD_VERSION} torch {torch.__version__} "
                     f"{torch.cuda.get_device_name()}", call, torch.cuda.synchronize, True, close)


def cuda_launch(threads: int) -> Yardstick:
    """Small PyTorch kernels launched one by one from Python on the case's GPU, timed by CUDA
    events: for eager PyTorch there, whose device time is paced by the same launches. Between
    processes on an H100, eager BERT-base FP16 at batch 1 moved 0.24 on its own and 0.22
    divided by the GEMMs, 0.045 divided by this (docs/gpu.md, "A yardstick for eager PyTorch
    on a GPU")."""
    import torch

    generator = torch.Generator(device="cuda").manual_seed(0)

    def tensor(*shape: int) -> Any:
        return torch.randn(*shape, device="cuda", dtype=torch.float16, generator=generator)

    x = tensor(1, LAUNCH_ROWS, LAUNCH_WIDTH)
    weight, bias = tensor(LAUNCH_WIDTH, LAUNCH_WIDTH) / LAUNCH_WIDTH ** 0.5, tensor(LAUNCH_WIDTH)
    functional = torch.nn.functional

    def call() -> object:
        y = x  # no tensor here requires a gradient: autograd records nothing
        for _ in range(LAUNCH_ROUNDS):
            y = functional.gelu(functional.layer_norm(functional.linear(y, weight, bias),
                                                      (LAUNCH_WIDTH,)))
        return y

    def close() -> None:
        nonlocal x, weight, bias
        del x, weight, bias

    return Yardstick(f"launch{LAUNCH_WORKLOAD_VERSION} torch {torch.__version__} "
                     f"{torch.cuda.get_device_name()}", call, torch.cuda.synchronize, True, close)


# By BackendInfo.yardstick: the CPU's, the GPU's device work, the GPU's launches.
FACTORIES: dict[str, Callable[[int], Yardstick]] = {"cpu": cpu, "cuda": cuda,
                                                    "cuda-launch": cuda_launch}


def case_threads(options: Mapping[str, Any]) -> int:
    """The thread count a case's library runs with, from its [tool.xfperf.<backend>] table
    (ONNX Runtime's intra_op_threads, PyTorch's threads; 0: the library's default)."""
    return int(options.get("intra_op_threads", options.get("threads", 0)) or 0)
