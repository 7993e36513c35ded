"""What limits BERT-base on a GPU: a kernel-time profile of CUDA-graph replay, and
torch.compile's modes side by side.

    python benchmarks/gpu_limits.py --out DIR [--batches 1,32]
        [--modes reduce-overhead,max-autotune] [--quantized fp8,int8-dynamic]
        [--quantized-batches 32] [--fast-accum]

For each batch size at seq 128, FP16, SDPA attention (the plugin's ``bert-base`` builtin, its
seeded weights and inputs):

1. CUDA-graph replay of the eager model, as ``torch-cuda-graph`` runs it: the median of 300
   synchronized replays, then ``torch.profiler`` over 20 replays: kernels per call, kernel
   time per call by kind (matrix products, attention, normalization, the rest), and the
   matrix products' achieved FLOP/s (the model's counted FLOPs over their kernel time).
2. ``torch.compile`` in each mode: compile seconds, the same median, and the same profile.
3. With ``--quantized``: the plugin's INT8 and FP8 layers (``quantize_model``; fp8-static
   calibrated on the plugin's 8 seeded batches of the same shape, batch capped at 8) at the
   ``--quantized-batches``, CUDA graph and torch.compile reduce-overhead, each with its
   cosine against FP32 on the GPU; ``--fast-accum`` adds FP8 with the GEMM's fast
   accumulation, an experiment the plugin does not ship.
4. The FP16 GEMM peak of the card (8192^3, as the plugin measures it).

Writes ``DIR/gpu_limits.json`` and prints it.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KINDS = (
    ("matmul", re.compile(r"gemm|cutlass|nvjet|xmma|cublas|matmul|addmm|_mm_|triton_tem", re.I)),
    ("attention", re.compile(r"flash|fmha|attention|efficient|sdpa|softmax", re.I)),
    ("norm", re.compile(r"layer_?norm|welford|rms", re.I)),
)
SEQ, ROUNDS, PROFILED = 128, 300, 20


def kind_of(name: str) -> str:
    # Inductor names a fused kernel after every op it holds: one that quantizes a product's
    # input reads "_scaled_mm" without being a product. Only its templates are products.
    if name.startswith("triton_") and not name.startswith("triton_tem"):
        return "norm" if KINDS[2][1].search(name) else "other"
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return "other"


def median_ms(call: Callable[[], object]) -> float:
    import torch

    for _ in range(20):
        call()
    torch.cuda.synchronize()
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        call()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def profile(call: Callable[[], object], flops: float) -> dict[str, Any]:
    """Kernel time per call by kind, from the profiler's device events."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(PROFILED):
            call()
        torch.cuda.synchronize()
    by_kind: dict[str, float] = {}
    top: dict[str, float] = {}
    kernels = 0
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        duration_us = float(event.device_time)
        if duration_us <= 0:
            continue
        kernels += 1
        kind = kind_of(event.name)
        by_kind[kind] = by_kind.get(kind, 0.0) + duration_us
        top[event.name[:90]] = top.get(event.name[:90], 0.0) + duration_us
    total = sum(by_kind.values())
    matmul_s = by_kind.get("matmul", 0.0) / PROFILED / 1e6
    return {
        "kernels_per_call": kernels / PROFILED,
        "kernel_ms_per_call": round(total / PROFILED / 1000, 4),
        "by_kind_ms": {k: round(v / PROFILED / 1000, 4) for k, v in sorted(by_kind.items())},
        "matmul_tflops": round(flops / matmul_s / 1e12, 1) if matmul_s else None,
        "top_kernels_ms": {k: round(v / PROFILED / 1000, 4) for k, v in
                           sorted(top.items(), key=lambda item: -item[1])[:8]},
    }


def fp16_peak() -> float:
    from pytest_xfperf.measure.peak import measure_peak

    return measure_peak("cuda", "fp16", 0)


def captured(net: Any, tensors: dict[str, Any], dtype: Any) -> tuple[Callable[[], object], Any]:
    """A CUDA graph of ``net`` on ``tensors`` (the additive 4-D mask built outside, as
    ``torch-cuda-graph`` hands it), and the graph's output tensor."""
    import torch

    mask = tensors["attention_mask"][:, None, None, :].to(dtype)
    graph_inputs = {**tensors, "attention_mask": (1.0 - mask) * torch.finfo(dtype).min}
    stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(3):
            net(**graph_inputs)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        output = net(**graph_inputs)
    return graph.replay, output


def compiled(net: Any, tensors: dict[str, Any], mode: str) -> tuple[Callable[[], object], float]:
    """``torch.compile`` of ``net`` in ``mode``: the call and its compile seconds."""
    import torch

    torch._dynamo.reset()
    model = torch.compile(net, mode=mode, dynamic=False)

    def call() -> object:
        with torch.inference_mode():
            return model(**tensors)

    started = time.perf_counter()
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    return call, time.perf_counter() - started


def hidden(output: Any) -> Any:
    """The model's hidden states, whatever container its forward returns them in."""
    from pytest_xfperf.models.module import primary_output

    return primary_output(output).float()


def cosine(a: Any, b: Any) -> float:
    import torch

    return float(torch.nn.functional.cosine_similarity(
        a.flatten(1), b.flatten(1), dim=1).min())


def measure_path(name: str, call: Callable[[], object], flops: float, batch: int,
                 extra: dict[str, Any]) -> dict[str, Any]:
    p50 = median_ms(call)
    row = {**extra, "p50_ms": round(p50, 4), "samples_per_s": round(batch / p50 * 1000),
           "profile": profile(call, flops)}
    print(name, json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--modes", default="reduce-overhead,max-autotune")
    parser.add_argument("--quantized", default="",
                        help="quantized precisions (the plugin's layers), e.g. fp8,int8-dynamic")
    parser.add_argument("--quantized-batches", default="32")
    parser.add_argument("--fast-accum", action="store_true",
                        help="also FP8 with torch._scaled_mm's use_fast_accum (an experiment)")
    args = parser.parse_args()
    import torch

    from pytest_xfperf.artifacts.pipeline import calibration_inputs
    from pytest_xfperf.backends.quantized_linear import BASE_DTYPE, quantize_model
    from pytest_xfperf.measure.peak import count_flops
    from pytest_xfperf.models.builtin import BUILTIN
    from pytest_xfperf.values import Shape

    spec = BUILTIN["bert-base"](0)
    base = spec.build()
    flops_one = count_flops(base, spec.make_inputs(1, SEQ, 0))
    out: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                           "fp16_gemm_peak_tflops": round(fp16_peak() / 1e12, 1),
                           "flops_per_sequence": flops_one, "cases": {}}
    plans = [("fp16", int(b), args.modes) for b in args.batches.split(",") if b]
    plans += [(p, int(b), "reduce-overhead") for p in args.quantized.split(",") if p
              for b in args.quantized_batches.split(",")]
    if args.fast_accum and "fp8" in args.quantized:
        plans += [("fp8+fast_accum", int(b), "reduce-overhead")
                  for b in args.quantized_batches.split(",")]
    original_scaled_mm = torch._scaled_mm
    for precision, batch, modes in plans:
        inputs = spec.make_inputs(batch, SEQ, 0)
        tensors = {k: torch.from_numpy(v).cuda() for k, v in inputs.items()}
        with torch.inference_mode():
            reference = hidden(copy.deepcopy(base).cuda().eval()(**tensors))
        quantized = precision.removesuffix("+fast_accum")
        dtype = getattr(torch, BASE_DTYPE.get(quantized, "float16"))
        net = copy.deepcopy(base).to("cuda", dtype).eval()
        net.set_attn_implementation("sdpa")
        if quantized in BASE_DTYPE:
            calibration = ([{k: torch.from_numpy(v).cuda() for k, v in b.items()}
                            for b in calibration_inputs(spec, Shape(batch, SEQ), 0, 8)]
                           if quantized == "fp8-static" else [])
            quantize_model(net, quantized, calibration=calibration)
        torch._scaled_mm = (functools.partial(original_scaled_mm, use_fast_accum=True)
                            if precision.endswith("+fast_accum") else original_scaled_mm)
        flops = flops_one * batch
        replay, output = captured(net, tensors, dtype)
        replay()
        torch.cuda.synchronize()
        out["cases"][f"{precision} cuda-graph b{batch}"] = measure_path(
            f"{precision} cuda-graph b{batch}", replay, flops, batch,
            {"cosine_vs_fp32": round(cosine(hidden(output), reference), 6)})
        for mode in [m for m in modes.split(",") if m]:
            call, compile_s = compiled(net, tensors, mode)
            result = hidden(call())
            out["cases"][f"{precision} compile {mode} b{batch}"] = measure_path(
                f"{precision} compile {mode} b{batch}", call, flops, batch,
                {"compile_s": round(compile_s, 1),
                 "cosine_vs_fp32": round(cosine(result, reference), 6)})
        torch._scaled_mm = original_scaled_mm
        del net, replay, output
        torch.cuda.empty_cache()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_limits.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
