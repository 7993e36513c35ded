"""Issue-2 figures on this machine, BERT-base bs1 seq128, all in one process:

1. harness fidelity: the plugin's p50 (its runner + measure/ loop) vs a bare hand loop over
   an InferenceSession of the same INT8 file, interleaved block by block so drift cancels;
2. pipeline quality: the plugin's ORT INT8 artifact vs PyTorch FP32 eager, interleaved.

Usage: python benchmarks/core_figures.py [--blocks 8] [--cache-dir .xfperf-cache]
Prints one JSON line. Run it several times: on shared 2-core VMs whole processes land in a
fast or a slow mode, so compare within a process, never across.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from pytest_xfperf.artifacts.cache import ArtifactCache
from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner
from pytest_xfperf.backends.pytorch import TorchCpuRunner
from pytest_xfperf.baselines.machine import machine_key
from pytest_xfperf.measure.stats import summarize
from pytest_xfperf.measure.timing import TimingPolicy, time_calls
from pytest_xfperf.models.builtin import BUILTIN

_SESSIONS: dict[Path, Any] = {}  # one hand-made session per file, made on first use


def hand_loop(model_path: Path, feeds: dict[str, Any], rounds: int) -> list[float]:
    """What a skilled engineer writes by hand: a session and perf_counter around run()."""
    import onnxruntime as ort

    if model_path not in _SESSIONS:
        _SESSIONS[model_path] = ort.InferenceSession(str(model_path),
                                                     providers=["CPUExecutionProvider"])
    session = _SESSIONS[model_path]
    names = {i.name for i in session.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in names}
    session.run(None, feeds)
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        session.run(None, feeds)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--cache-dir", type=Path, default=Path(".xfperf-cache"))
    args = parser.parse_args()

    spec = BUILTIN["bert-base"](0)
    model = spec.build()
    pipeline = ArtifactPipeline(ArtifactCache(args.cache_dir), seed=0)
    int8 = pipeline.build(spec, "int8-dynamic", lambda: model)
    inputs = spec.make_inputs(1, 128, 0)
    plugin_ort, torch_runner = OrtCpuRunner(int8.path), TorchCpuRunner(model)
    block = TimingPolicy(warmup_rounds=1, min_rounds=args.rounds, min_time=0, max_time=60)

    samples: dict[str, list[float]] = {"plugin_ort_int8": [], "hand_ort_int8": [],
                                       "plugin_torch_fp32": []}
    ort_call, torch_call = plugin_ort.prepare(inputs), torch_runner.prepare(inputs)
    for _ in range(args.blocks):
        samples["plugin_ort_int8"] += time_calls(ort_call, plugin_ort.synchronize, block)
        samples["hand_ort_int8"] += hand_loop(int8.path, inputs, args.rounds)
        samples["plugin_torch_fp32"] += time_calls(torch_call, torch_runner.synchronize, block)
    p50 = {k: summarize(v, 1).p50_ms for k, v in samples.items()}
    print(json.dumps({
        "machine": machine_key(), "model": "bert-base b1s128",
        "p50_ms": {k: round(v, 2) for k, v in p50.items()},
        "fidelity_plugin_vs_hand": round(p50["plugin_ort_int8"] / p50["hand_ort_int8"] - 1, 4),
        "speedup_int8_vs_torch_fp32": round(p50["plugin_torch_fp32"] / p50["plugin_ort_int8"], 2),
        "cv": {k: round(statistics.stdev(v) / statistics.fmean(v), 3) for k, v in samples.items()},
        "fused": int8.graph["fused"], "quantization": int8.graph["quantization"],
    }))


if __name__ == "__main__":
    main()
