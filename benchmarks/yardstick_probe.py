"""Which yardstick tracks the host's state for which case, between runs minutes apart.

Cases: BERT-base (batch 1, seq 128) in ONNX Runtime FP32 and INT8 dynamic, built by the
plugin's pipeline, and in eager PyTorch. Yardstick candidates: a 4-layer MLP on a 64 x 512
activation and a 768 -> 3072 -> 768 block on 128 rows, each in ONNX Runtime and PyTorch. Every
window, 4 blocks of each case (0.25 s) are each followed by a 0.05 s block of every candidate
(in rotated order); the window's value is the median of its block ratios. The figure printed
is the standard deviation over the windows of log(case / candidate): the drift that a baseline
recorded in one window carries into a run in another ("raw": no yardstick).

    python benchmarks/yardstick_probe.py --windows 14 --rest 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Call = Callable[[], object]


def _ort_mlp(rows: int, dims: list[int]) -> Call:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    nodes, inits, name = [], [], "x"
    for i, (a, b) in enumerate(zip(dims, dims[1:], strict=False)):
        weight = (rng.standard_normal((a, b)) / a**0.5).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes += [helper.make_node("MatMul", [name, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        name = f"r{i}"
    graph = helper.make_graph(
        nodes, "y", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, dims[0]])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [rows, dims[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    feeds = {"x": rng.standard_normal((rows, dims[0])).astype(np.float32)}
    return lambda: session.run([name], feeds)


def _torch_mlp(rows: int, dims: list[int]) -> Call:
    import torch

    rng = np.random.default_rng(1)
    weights = [torch.from_numpy((rng.standard_normal((a, b)) / a**0.5).astype(np.float32))
               for a, b in zip(dims, dims[1:], strict=False)]
    x = torch.randn(rows, dims[0])

    def call() -> object:
        with torch.inference_mode():
            h = x
            for w in weights:
                h = torch.relu(h @ w)
            return h

    return call


def _cases(cache: Path) -> dict[str, Call]:
    import torch

    from pytest_xfperf.artifacts.cache import ArtifactCache
    from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
    from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner
    from pytest_xfperf.backends.pytorch import TorchCpuRunner
    from pytest_xfperf.models.builtin import BUILTIN

    torch.set_num_threads(2)
    spec = BUILTIN["bert-base"](0)
    model = spec.build().eval()
    pipeline = ArtifactPipeline(ArtifactCache(cache), seed=0)
    inputs = spec.make_inputs(1, 128, 0)
    calls = {}
    for precision in ("fp32", "int8-dynamic"):
        runner = OrtCpuRunner(pipeline.build(spec, precision, lambda: model).path)
        calls[f"ort-{precision}"] = runner.prepare(inputs)
    calls["torch"] = TorchCpuRunner(model).prepare(inputs)
    return calls


def _block(call: Call, seconds: float, calls: int = 3) -> float:
    out: list[float] = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
        if len(out) >= calls and time.perf_counter() - started >= seconds:
            return statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=14)
    parser.add_argument("--rest", type=float, default=10.0, help="seconds between windows")
    parser.add_argument("--cache", type=Path, default=Path(".xfperf-cache"))
    args = parser.parse_args()
    cases = _cases(args.cache)
    yards = {"ort-mlp64x512": _ort_mlp(64, [512] * 5),
             "ort-ffn128x768": _ort_mlp(128, [768, 3072, 768]),
             "torch-mlp64x512": _torch_mlp(64, [512] * 5),
             "torch-ffn128x768": _torch_mlp(128, [768, 3072, 768])}
    for call in [*cases.values(), *yards.values()]:
        for _ in range(3):
            call()
    windows: list[dict[str, dict[str, float]]] = []
    for index in range(args.windows):
        ratios: dict[str, dict[str, list[float]]] = {
            c: {k: [] for k in ["raw", *yards]} for c in cases}
        for block in range(4):
            for name, call in cases.items():
                value = _block(call, 0.25)
                ratios[name]["raw"].append(value)
                order = list(yards)[block % 4:] + list(yards)[:block % 4]
                for yard in order:
                    ratios[name][yard].append(value / _block(yards[yard], 0.05))
        windows.append({c: {k: float(np.median(np.log(v))) for k, v in r.items()}
                        for c, r in ratios.items()})
        print(index, {c: round(float(np.exp(w["raw"])) * 1000, 1)
                      for c, w in windows[-1].items()}, flush=True)
        time.sleep(args.rest)
    for name in cases:
        print(name, {k: round(float(np.std([w[name][k] for w in windows])), 4)
                     for k in windows[0][name]})


if __name__ == "__main__":
    main()
