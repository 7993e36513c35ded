"""Machine yardsticks: fixed workloads owned by the plugin, one per library and device.

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
WORKLOAD_VERSION = "1"


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


def ort_cpu(options: Mapping[str, Any]) -> Yardstick:
    """The MLP in ONNX Runtime with the case's session thread settings."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, name = [], [], "x"
    for i, weight in enumerate(_weights()):
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes += [helper.make_node("MatMul", [name, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        name = f"r{i}"
    graph = helper.make_graph(
        nodes, "xfperf-yardstick",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [ROWS, WIDTH])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [ROWS, WIDTH])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    session_options = ort.SessionOptions()
    intra = int(options.get("intra_op_threads", 0))
    inter = int(options.get("inter_op_threads", 0))
    session_options.intra_op_num_threads = intra
    session_options.inter_op_num_threads = inter
    session = ort.InferenceSession(model.SerializeToString(), session_options,
                                   providers=["CPUExecutionProvider"])
    feeds = {"x": np.random.default_rng(0).standard_normal((ROWS, WIDTH)).astype(np.float32)}
    outputs = [name]
    return Yardstick(f"mlp{WORKLOAD_VERSION} onnxruntime {ort.__version__} threads={intra}",
                     lambda: session.run(outputs, feeds), lambda: None, False, lambda: None)


def torch_cpu(options: Mapping[str, Any]) -> Yardstick:
    """The MLP in eager PyTorch; torch's thread count is the process's (the case's runner
    set it)."""
    import numpy as np
    import torch

    weights = [torch.from_numpy(w) for w in _weights()]
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((ROWS, WIDTH)).astype(
        np.float32))

    def call() -> object:
        with torch.inference_mode():
            h = x
            for w in weights:
                h = torch.relu(h @ w)
            return h

    return Yardstick(f"mlp{WORKLOAD_VERSION} torch {torch.__version__} "
                     f"threads={torch.get_num_threads()}", call, lambda: None, False,
                     lambda: None)


def cuda(options: Mapping[str, Any]) -> Yardstick:
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

    return Yardstick(f"gemm{WORKLOAD_VERSION} torch {torch.__version__} "
                     f"{torch.cuda.get_device_name()}", call, torch.cuda.synchronize, True, close)


FACTORIES: dict[str, Callable[[Mapping[str, Any]], Yardstick]] = {
    "ort-cpu": ort_cpu, "torch-cpu": torch_cpu, "cuda": cuda}
