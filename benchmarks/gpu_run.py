"""The GPU matrix through the plugin, then hand loops on the same card.

    python benchmarks/gpu_run.py --out DIR [--cache-dir DIR] [--baselines DIR] [--quick]
        [--models M] [--backends B] [--precisions P] [--compile-precisions P] [--report NAME]
        [--hand LOOPS] [--gate]

1. ``pytest --xfperf tests/perf`` over the models at seq 128, batch 1 and 32, on every GPU
   backend and precision that runs on the card, then torch.compile (its compile time is the
   run's largest cost, so it is a second invocation), with ``--xfperf-update-baselines``: it
   writes the GPU machine's baseline file and a JSON report per invocation (``--gate``:
   gates against that file instead, for the warm run's time and verdicts).
2. Hand loops, as a skilled engineer writes them, timed in the same process after the plugin,
   at batch 1 and 32 on the same inputs: ONNX Runtime CUDA FP16 with IO binding (OrtValues on
   the device) on the plugin's artifact, and PyTorch CUDA-graph replay with SDPA attention at
   FP16, INT8 and FP8 (the plugin's own quantized layers: the loop checks the timing, not
   the quantization).
3. ``DIR/gpu_summary.json`` (named after ``--report``): plugin vs hand, speed-ups,
   device time, GPU memory, card facts, and the reference study's claims beside ours.
``--quick`` runs bert-tiny only (a smoke test of every backend).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GPU_BACKENDS = "torch-cuda,torch-cuda-graph,ort-cuda,ort-cuda-graph,tensorrt,ort-trt"
GPU_PRECISIONS = "fp32,fp16,bf16,int8-static,int8-dynamic,fp8"
HAND_LOOPS = ("ort-cuda/fp16,torch-cuda-graph/fp16,torch-cuda-graph/int8-dynamic,"
              "torch-cuda-graph/fp8")
# The reference study's own claims (A100 40GB, BERT-base, seq 128): shown beside ours.
STUDY = {"ort-cuda/fp16 bs1 p50 ms": 9.8, "ort-cuda/fp16 bs32 samples/s": 1250,
         "torch-cuda/fp32 bs1 p50 ms": 22.4, "torch-cuda/fp32 bs32 samples/s": 420,
         "tensorrt/fp16 bs1 p50 ms": 6.2, "tensorrt/fp16 bs32 samples/s": 1850}


def plugin_flag() -> list[str]:
    """``-p pytest_xfperf.plugin`` where the package is not installed (a bare checkout on the
    GPU machine); nothing where its entry point already loads it."""
    from importlib.metadata import entry_points

    installed = any(ep.name == "xfperf" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "pytest_xfperf.plugin"]


def run_plugin(out: Path, cache: Path, models: str, backends: str, precisions: str,
               shapes: str, report: str, min_time: str, baselines: Path,
               record: bool = True) -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", *plugin_flag(), "tests/perf",
               "--xfperf", "--xfperf-models", models, "--xfperf-backends", backends,
               "--xfperf-precisions", precisions, "--xfperf-shapes", shapes,
               "--xfperf-cache-dir", str(cache),
               *(["--xfperf-update-baselines"] if record else []),
               "--xfperf-baselines", str(baselines),
               "--xfperf-min-time", min_time, "--xfperf-report", str(out / report),
               "-p", "no:cacheprovider", "-q", "-rs"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    (out / (report + ".log")).write_text(done.stdout[-60000:] + done.stderr[-20000:])
    print(done.stdout[-6000:], flush=True)
    return {"command": " ".join(command), "exit": done.returncode,
            "seconds": round(seconds, 1)}


def hand_ort_call(path: Path, inputs: dict[str, Any]) -> Callable[[], object]:
    """ORT CUDA EP, IO binding with OrtValues on the device, run on torch's stream: the same
    work as the plugin's call, written out by hand (warmed up)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    stream = str(torch.cuda.current_stream().cuda_stream)
    session = ort.InferenceSession(str(path), providers=[
        ("CUDAExecutionProvider", {"user_compute_stream": stream})])
    names = {i.name for i in session.get_inputs()}
    binding = session.io_binding()
    keep = []
    for name, value in inputs.items():
        if name in names:
            device_value = ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0)
            keep.append(device_value)
            binding.bind_ortvalue_input(name, device_value)
    output = session.get_outputs()[0].name
    shape = session.run([output], {k: v for k, v in inputs.items() if k in names})[0].shape
    out_value = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, "cuda", 0)
    binding.bind_ortvalue_output(output, out_value)
    for _ in range(20):
        session.run_with_iobinding(binding)

    def call() -> object:
        return session.run_with_iobinding(binding), keep, out_value  # the buffers stay alive

    return call


def hand_p50_ms(call: Callable[[], object], rounds: int) -> float:
    """The hand loop: the call, then ``torch.cuda.synchronize``; median wall clock."""
    import torch

    torch.cuda.synchronize()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def hand_graph_replay(model: Any, inputs: dict[str, Any], precision: str
                      ) -> Callable[[], object]:
    """PyTorch CUDA-graph replay with SDPA, captured by hand (warmed up)."""
    import copy

    import torch

    from pytest_xfperf.backends.quantized_linear import BASE_DTYPE, quantize_model

    dtype = getattr(torch, BASE_DTYPE.get(precision, "float16"))
    net = copy.deepcopy(model).to("cuda", dtype).eval()
    net.set_attn_implementation("sdpa")
    if precision in BASE_DTYPE:
        quantize_model(net, precision)
    tensors = {k: torch.from_numpy(v).cuda() for k, v in inputs.items()}
    # The model's own mask building copies a host scalar, which capture forbids: hand it
    # the ready additive 4-D mask (what a hand-written capture does too).
    mask = tensors["attention_mask"][:, None, None, :].to(dtype)
    tensors["attention_mask"] = (1.0 - mask) * torch.finfo(dtype).min
    stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(3):
            net(**tensors)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        net(**tensors)
    for _ in range(20):
        graph.replay()

    def replay() -> object:
        graph.replay()
        return net, tensors  # the graph reads their memory: they live as long as the call

    return replay


def _hand_ort(path: Path, inputs: dict[str, Any]) -> float:
    return hand_p50_ms(hand_ort_call(path, inputs), 300)


def _hand_graph(model: Any, precision: str, inputs: dict[str, Any]) -> float:
    return hand_p50_ms(hand_graph_replay(model, inputs, precision), 300)


def hand_loops(cache: Path, model_name: str, wanted: list[str]) -> dict[str, Any]:
    from pytest_xfperf.artifacts.cache import ArtifactCache
    from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
    from pytest_xfperf.models.builtin import BUILTIN
    from pytest_xfperf.values import Shape

    spec = BUILTIN[model_name](0)
    model = spec.build()
    pipeline = ArtifactPipeline(ArtifactCache(cache), seed=0)
    out: dict[str, Any] = {}
    artifact = (pipeline.build(spec, "fp16", lambda: model, Shape(1, 128), "gpu")
                if "ort-cuda/fp16" in wanted else None)
    for batch in (1, 32):
        inputs = spec.make_inputs(batch, 128, 0)  # the plugin's inputs for this shape
        loops: dict[str, Callable[[dict[str, Any]], float]] = {}
        if artifact is not None:
            loops["ort-cuda/fp16"] = functools.partial(_hand_ort, artifact.path)
        for name in wanted:
            backend, _, precision = name.partition("/")
            if backend == "torch-cuda-graph":
                loops[name] = functools.partial(_hand_graph, model, precision)
        for name, loop in loops.items():
            try:
                out[f"{name} b{batch}s128 p50 ms"] = round(loop(inputs), 4)
            except Exception as exc:  # noqa: BLE001 - one failed loop must not lose the run
                out[f"{name} b{batch}s128 error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def summarize_reports(out: Path, reports: list[str], hand: dict[str, Any]) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    for report in reports:
        path = out / report
        if path.is_file():
            for case in json.loads(path.read_text())["cases"]:
                cases[case["id"]] = case
    rows = []
    for case_id, case in sorted(cases.items()):
        stats, device = case.get("stats") or {}, case.get("device_time") or {}
        model, shape = case["model"], f"b{case['batch']}s{case['seq']}"
        gpu_ref = cases.get(f"{model}/torch-cuda/fp32/{shape}", {}).get("stats") or {}
        cpu_ref = cases.get(f"{model}/torch-cpu/fp32/{shape}", {}).get("stats") or {}
        p50 = stats.get("p50_ms")
        rows.append({
            "id": case_id, "verdict": case["verdict"], "p50_ms": p50,
            "p99_ms": stats.get("p99_ms"), "samples_per_s": stats.get("throughput"),
            "device_p50_ms": device.get("p50_ms"), "gpu_memory_mb": case.get("gpu_memory_mb"),
            "speedup_vs_torch_cuda_fp32": round(gpu_ref["p50_ms"] / p50, 2)
            if p50 and gpu_ref.get("p50_ms") else None,
            "speedup_vs_torch_cpu_fp32": round(cpu_ref["p50_ms"] / p50, 2)
            if p50 and cpu_ref.get("p50_ms") else None,
            "cosine": (case.get("accuracy") or {}).get("cosine"),
            "compute": case.get("compute"),
            "retrieval": (case.get("accuracy") or {}).get("retrieval"),
            "settings": case.get("settings"),
        })
    fidelity = {}
    for key, hand_p50 in hand.items():
        if not key.endswith(" p50 ms"):
            continue
        name, shape = key.removesuffix(" p50 ms").split(" ")
        plugin = cases.get(f"bert-base/{name}/{shape}", {}).get("stats") or {}
        if plugin.get("p50_ms") and hand_p50:
            fidelity[f"{name} {shape}"] = {
                "plugin_p50_ms": round(plugin["p50_ms"], 4), "hand_p50_ms": hand_p50,
                "plugin_vs_hand": round(plugin["p50_ms"] / hand_p50 - 1, 4)}
    bs1 = [r for r in rows if r["id"].startswith("bert-base/") and r["id"].endswith("b1s128")
           and r["p50_ms"] and "torch-cpu" not in r["id"]]
    bs32 = [r for r in rows if r["id"].startswith("bert-base/") and r["id"].endswith("b32s128")
            and r["samples_per_s"] and "torch-cpu" not in r["id"]]
    best = {}
    if bs1:
        top = min(bs1, key=lambda r: r["p50_ms"])
        best["bs1_lowest_p50"] = {"id": top["id"], "p50_ms": top["p50_ms"]}
    if bs32:
        top = max(bs32, key=lambda r: r["samples_per_s"])
        best["bs32_highest_throughput"] = {"id": top["id"], "samples_per_s": top["samples_per_s"]}
    return {"rows": rows, "hand_loops": hand, "fidelity": fidelity, "best": best,
            "reference_study_claims_a100": STUDY}


def render_markdown(summary: dict[str, Any]) -> str:
    """The summary as the reference study's tables: latency with speed-ups, then throughput
    with GPU memory; every number says what it includes."""
    def num(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = ["| case | p50 ms (synced wall) | device p50 ms (CUDA events) | samples/s | "
             "vs torch-cuda fp32 | vs torch-cpu fp32 | GPU MB | cosine | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in summary["rows"]:
        lines.append(
            f"| {row['id']} | {num(row['p50_ms'])} | {num(row['device_p50_ms'])} | "
            f"{num(row['samples_per_s'], 0)} | {num(row['speedup_vs_torch_cuda_fp32'], 2)} | "
            f"{num(row['speedup_vs_torch_cpu_fp32'], 2)} | {num(row['gpu_memory_mb'], 0)} | "
            f"{num(row['cosine'], 5)} | {row['verdict']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/xfperf-gpu-cache"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--baselines", type=Path, default=ROOT / "baselines")
    parser.add_argument("--models", default="bert-base,minilm-l6")
    parser.add_argument("--backends", default=GPU_BACKENDS)
    parser.add_argument("--precisions", default=GPU_PRECISIONS)
    parser.add_argument("--compile-precisions", default="fp16,int8-dynamic,fp8",
                        help="torch.compile's precisions; empty: no compile run")
    parser.add_argument("--report", default="gpu_report.json")
    parser.add_argument("--hand", default=HAND_LOOPS, help="hand loops to time; empty: none")
    parser.add_argument("--gate", action="store_true",
                        help="gate against the baselines instead of recording them")
    parser.add_argument("--fidelity", action="store_true",
                        help="only BERT-base ORT CUDA FP16 through the plugin, then the hand "
                             "loops (no baseline update)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from pytest_xfperf.baselines.machine import machine_info
    from pytest_xfperf.measure.gpu import gpu_fingerprint
    from pytest_xfperf.versions import library_versions

    started = time.perf_counter()
    import onnxruntime as ort

    getattr(ort, "preload_dlls", lambda: None)()
    env = {"machine": machine_info(), "gpu": gpu_fingerprint(), "versions": library_versions(),
           "ort_providers": ort.get_available_providers()}
    print(json.dumps(env), flush=True)
    models = "bert-tiny" if args.quick else args.models
    shapes = "1x128,32x128"
    min_time = "0.2" if args.quick else "0.5"
    compile_report = args.report.replace(".json", "_compile.json")
    if args.fidelity:
        runs = {"fidelity": run_plugin(args.out, args.cache_dir, "bert-base", "ort-cuda",
                                       "fp16", shapes, args.report, "2", args.baselines)}
    else:
        runs = {"matrix": run_plugin(args.out, args.cache_dir, models, args.backends,
                                     args.precisions, shapes, args.report, min_time,
                                     args.baselines, not args.gate)}
        if args.compile_precisions:
            runs["compile"] = run_plugin(args.out, args.cache_dir, models, "torch-compile",
                                         args.compile_precisions, shapes, compile_report,
                                         min_time, args.baselines, not args.gate)
    wanted = [h for h in args.hand.split(",") if h]
    hand = {} if args.quick or not wanted else hand_loops(args.cache_dir, "bert-base", wanted)
    summary = summarize_reports(args.out, [args.report, compile_report], hand)
    summary.update(environment=env, runs=runs,
                   total_seconds=round(time.perf_counter() - started, 1))
    name = args.report.replace("report", "summary")
    (args.out / name).write_text(json.dumps(summary, indent=1) + "\n")
    key = machine_info()["key"]
    baseline = args.baselines / f"{key}.json"
    if baseline.is_file():
        shutil.copy(baseline, args.out / baseline.name)
    print(json.dumps({k: summary[k] for k in ("fidelity", "best", "hand_loops",
                                               "total_seconds")}, indent=1))
    print(os.linesep.join(f"{r['id']}: {r['verdict']} p50 {r['p50_ms']} dev {r['device_p50_ms']}"
                          for r in summary["rows"]))


if __name__ == "__main__":
    main()
