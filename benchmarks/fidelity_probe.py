"""Where the plugin's GPU p50 and a hand loop's part: the same calls timed three ways, in one
process, alternating.

    python benchmarks/fidelity_probe.py --out DIR [--model bert-base] [--repeats 3]
        [--torch-precisions fp16,int8-dynamic,fp8] [--ort-precisions fp32,fp16,int8-static]

For torch-cuda-graph and ort-cuda (where onnxruntime-gpu loads) at each precision asked for
(FP16 by default), at batch 1 and 32
(seq 128), two calls are prepared: the plugin's runner (``prepare``) and a hand-written one
(benchmarks/gpu_run.py: a hand-captured graph; a hand-made IO-bound ORT session). Each is
timed

1. ``sync``: ``--rounds`` calls, each followed by ``torch.cuda.synchronize`` (the hand loop);
2. ``events``: the plugin's block timer (CUDA events around each call), no yardstick;
3. ``blocks``: the plugin's interleaved blocks with the GPU yardstick (what a case runs),

in alternating order, ``--repeats`` times. Wall p50 and device p50 (events) are medians over
every call. Comparing rows tells apart the work (plugin call against hand call), the timer
(sync against events) and the interleaving (events against blocks). Writes
``DIR/fidelity_probe.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def timed_three_ways(call: Callable[[], object], rounds: int) -> dict[str, dict[str, float]]:
    import torch
    from gpu_run import hand_p50_ms  # benchmarks/ is on the path: main() put it there

    from pytest_xfperf.baselines.rule import DEFAULT_POLICY
    from pytest_xfperf.measure import yardstick
    from pytest_xfperf.measure.blocks import BlockPlan, Series, Timed, measure, time_block
    from pytest_xfperf.measure.timing import TimingPolicy

    out: dict[str, dict[str, float]] = {}
    out["sync"] = {"wall_p50_ms": hand_p50_ms(call, rounds)}
    wall, device = time_block(Timed(call, torch.cuda.synchronize, device=True), rounds, 0.0,
                              60.0)
    out["events"] = {"wall_p50_ms": statistics.median(wall),
                     "device_p50_ms": statistics.median(device)}
    stick = yardstick.cuda(0)
    series = Series("device")
    plan = BlockPlan.of(TimingPolicy(min_time=2.0), DEFAULT_POLICY)
    measure(series, Timed(call, torch.cuda.synchronize, device=True),
            Timed(stick.call, stick.synchronize, True), plan, DEFAULT_POLICY.first_blocks)
    stick.close()
    out["blocks"] = {"wall_p50_ms": statistics.median(series.samples_ms),
                     "device_p50_ms": statistics.median(series.device_ms)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/xfperf-probe-cache"))
    parser.add_argument("--torch-precisions", default="fp16")
    parser.add_argument("--ort-precisions", default="fp16")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from gpu_run import hand_graph_replay, hand_ort_call

    from pytest_xfperf.artifacts.cache import ArtifactCache
    from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
    from pytest_xfperf.backends.torch_cuda import TorchCudaRunner
    from pytest_xfperf.measure.gpu import gpu_fingerprint
    from pytest_xfperf.models.builtin import BUILTIN
    from pytest_xfperf.values import Shape

    spec = BUILTIN[args.model](0)
    model = spec.build()
    calls: dict[str, Callable[[dict[str, Any]], Callable[[], object]]] = {}
    keep: list[Any] = []

    def plugin_graph(precision: str, inputs: dict[str, Any]) -> Callable[[], object]:
        runner = TorchCudaRunner(model, precision, mode="graph")
        keep.append(runner)
        return runner.prepare(inputs)

    def hand_graph(precision: str, inputs: dict[str, Any]) -> Callable[[], object]:
        return hand_graph_replay(model, inputs, precision)

    for precision in filter(None, args.torch_precisions.split(",")):
        calls[f"torch-cuda-graph/{precision} plugin"] = functools.partial(plugin_graph, precision)
        calls[f"torch-cuda-graph/{precision} hand"] = functools.partial(hand_graph, precision)
    notes: dict[str, str] = {}
    try:
        import onnxruntime as ort

        getattr(ort, "preload_dlls", lambda: None)()
        from pytest_xfperf.backends.onnxruntime_cuda import OrtCudaRunner

        pipeline = ArtifactPipeline(ArtifactCache(args.cache_dir), seed=0)

        def plugin_ort(path: Path, precision: str, inputs: dict[str, Any]
                       ) -> Callable[[], object]:
            runner = OrtCudaRunner(path, precision)
            keep.append(runner)
            return runner.prepare(inputs)

        def hand_ort(path: Path, inputs: dict[str, Any]) -> Callable[[], object]:
            return hand_ort_call(path, inputs)

        for precision in filter(None, args.ort_precisions.split(",")):
            path = pipeline.build(spec, precision, lambda: model, Shape(1, 128), "gpu").path
            calls[f"ort-cuda/{precision} plugin"] = functools.partial(plugin_ort, path,
                                                                      precision)
            calls[f"ort-cuda/{precision} hand"] = functools.partial(hand_ort, path)
    except Exception as exc:  # noqa: BLE001 - the torch half still runs
        notes["ort"] = f"{type(exc).__name__}: {exc}"[:300]

    results: dict[str, Any] = {}
    for batch in (1, 32):
        inputs = spec.make_inputs(batch, 128, 0)
        prepared = {name: make(inputs) for name, make in calls.items()}
        runs: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in prepared}
        for repeat in range(args.repeats):
            order = list(prepared) if repeat % 2 == 0 else list(reversed(prepared))
            for name in order:
                runs[name].append(timed_three_ways(prepared[name], args.rounds))
        for name, measured in runs.items():
            results[f"{name} b{batch}s128"] = {
                way: {key: round(statistics.median(m[way][key] for m in measured), 4)
                      for key in measured[0][way]}
                for way in measured[0]}
            results[f"{name} b{batch}s128"]["repeats"] = measured
        prepared.clear()
        torch.cuda.synchronize()
    summary = {"gpu": gpu_fingerprint(), "torch": torch.__version__, "notes": notes,
               "rounds": args.rounds, "results": results}
    (args.out / "fidelity_probe.json").write_text(json.dumps(summary, indent=1) + "\n")
    for name, value in results.items():
        print(name, {w: v for w, v in value.items() if w != "repeats"})


if __name__ == "__main__":
    main()
