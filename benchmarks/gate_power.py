"""Power of the timing gate on this machine: false alarms and detections, measured.

    python benchmarks/gate_power.py [--trials 100] [--out gate_power.json]

The slowdowns are real: the same BERT-shaped encoder (hidden 128, seq 64, ORT CPU FP32 through
the plugin's own pipeline and runner) with more layers. 20 layers is the base; 21, 22, 23,
24, 26 and 30 layers are +5 % .. +50 % of the layer work. The true factor of each variant
(fixed per-call costs make it a little less than the layer ratio) is measured up front,
interleaved over many blocks, and reported next to its nominal value.

One trial is one CI run against a freshly recorded baseline, like the plugin does it:
1. baseline run: the base model (A) is timed, then the reference (R: another session of
   the base model, standing in for the reference backend) - the baseline file's samples;
2. current run: the variant (B) is timed; the gate decides with ``decision.decide``, and a
   suspected regression is re-measured in blocks interleaved with R (the plugin's
   confirmation, see harness.CaseHarness._confirm).
On the same samples, two other rules decide too:
* fixed rounds: the median of the first 10 calls of B vs of A, past 10 % fails;
* pytest-benchmark's ``--benchmark-compare-fail=median:10%``: its own check class applied to
  the medians of the same samples our rule saw first.
Levels are interleaved trial by trial, so slow phases of the host hit every level alike.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_xfperf.artifacts.cache import ArtifactCache
from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner
from pytest_xfperf.baselines.decision import REGRESSED, UNSTABLE, Measurement, decide
from pytest_xfperf.baselines.machine import machine_key
from pytest_xfperf.measure.timing import TimingPolicy, time_calls
from pytest_xfperf.models.hf import random_weights_spec

BASE_LAYERS = 20
LEVELS = {0: 20, 5: 21, 10: 22, 15: 23, 20: 24, 30: 26, 50: 30}  # nominal % -> layers
TOLERANCE = 0.10
FIXED_ROUNDS = 10
CONFIRM_BLOCKS = 5


def build_runner(pipeline: ArtifactPipeline, layers: int) -> OrtCpuRunner:
    config = {"hidden_size": 128, "num_hidden_layers": layers, "num_attention_heads": 2,
              "intermediate_size": 512, "vocab_size": 2048}
    spec = random_weights_spec(f"power-l{layers}", "bert", config, 0, "gate power")
    return OrtCpuRunner(pipeline.build(spec, "fp32", spec.build).path)


def timed(call: Callable[[], object], policy: TimingPolicy) -> list[float]:
    return [s * 1000 for s in time_calls(call, lambda: None, policy)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--min-time", type=float, default=0.25)
    parser.add_argument("--min-rounds", type=int, default=20)
    parser.add_argument("--cache-dir", type=Path, default=Path(".xfperf-cache"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from pytest_benchmark.utils import parse_compare_fail

    benchmark_check = parse_compare_fail("median:10%")
    pipeline = ArtifactPipeline(ArtifactCache(args.cache_dir), seed=0)
    base_spec_inputs = random_weights_spec(
        "power-inputs", "bert", {"vocab_size": 2048}, 0, "").make_inputs(1, 64, 0)
    runners = {pct: build_runner(pipeline, layers) for pct, layers in LEVELS.items()}
    reference = build_runner(pipeline, BASE_LAYERS)  # a separate session: the reference
    calls = {pct: r.prepare(base_spec_inputs) for pct, r in runners.items()}
    ref_call = reference.prepare(base_spec_inputs)
    policy = TimingPolicy(warmup_rounds=3, min_rounds=args.min_rounds, min_time=args.min_time,
                          max_time=10.0)
    block = TimingPolicy(warmup_rounds=1, min_rounds=max(3, args.min_rounds // CONFIRM_BLOCKS),
                         min_time=args.min_time / CONFIRM_BLOCKS, max_time=5.0)

    # True factors: every level, interleaved over 15 blocks of 30 calls.
    calibration: dict[int, list[float]] = {pct: [] for pct in LEVELS}
    factor_policy = TimingPolicy(warmup_rounds=2, min_rounds=30, min_time=0, max_time=10)
    for _ in range(15):
        for pct in LEVELS:
            calibration[pct] += timed(calls[pct], factor_policy)
    base_p50 = statistics.median(calibration[0])
    true_factor = {pct: statistics.median(v) / base_p50 for pct, v in calibration.items()}
    print(json.dumps({"true_factor": true_factor, "base_p50_ms": base_p50}), file=sys.stderr,
          flush=True)

    rules = ("xfperf", "fixed_rounds_10", "pytest_benchmark_median_10pct")
    fails = {pct: dict.fromkeys(rules, 0) for pct in LEVELS}
    unstable = dict.fromkeys(LEVELS, 0)
    confirmations = dict.fromkeys(LEVELS, 0)
    seconds = {pct: {"xfperf": 0.0, "fixed_rounds_10": 0.0} for pct in LEVELS}
    order = list(LEVELS)
    rng = random.Random(0)
    started = time.perf_counter()
    for trial in range(args.trials):
        rng.shuffle(order)
        for pct in order:
            base = timed(calls[0], policy)
            base_ref = timed(ref_call, policy)
            t0 = time.perf_counter()
            current = timed(calls[pct], policy)

            def confirm(pct: int = pct) -> Measurement:
                case: list[float] = []
                ref: list[float] = []
                for _ in range(CONFIRM_BLOCKS):
                    case += timed(calls[pct], block)
                    ref += timed(ref_call, block)
                return Measurement(case, ref)

            result = decide(Measurement(current), Measurement(base, base_ref), TOLERANCE,
                            confirm)
            seconds[pct]["xfperf"] += time.perf_counter() - t0
            confirmations[pct] += result.confirmation is not None
            fails[pct]["xfperf"] += result.outcome == REGRESSED
            unstable[pct] += result.outcome == UNSTABLE
            t1 = time.perf_counter()
            fixed = timed(calls[pct], TimingPolicy(3, FIXED_ROUNDS, 0, 10))
            seconds[pct]["fixed_rounds_10"] += time.perf_counter() - t1
            fails[pct]["fixed_rounds_10"] += (
                statistics.median(fixed) / statistics.median(base[:FIXED_ROUNDS]) > 1 + TOLERANCE)
            fails[pct]["pytest_benchmark_median_10pct"] += bool(benchmark_check.fails(
                {"median": statistics.median(current)}, {"median": statistics.median(base)}))
        if (trial + 1) % 10 == 0:
            print(f"{trial + 1} trials, {time.perf_counter() - started:.0f} s", file=sys.stderr,
                  flush=True)

    n = args.trials
    table: list[dict[str, Any]] = []
    for pct in LEVELS:
        table.append({
            "nominal_slowdown_pct": pct, "true_factor": round(true_factor[pct], 4),
            "fail_rate": {r: round(fails[pct][r] / n, 3) for r in rules},
            "unstable_rate": round(unstable[pct] / n, 3),
            "confirmation_rate": round(confirmations[pct] / n, 3),
            "seconds_per_gated_case": {k: round(v / n, 3) for k, v in seconds[pct].items()},
        })
    out = {"machine": machine_key(), "trials_per_level": n, "tolerance": TOLERANCE,
           "policy": {"min_rounds": args.min_rounds, "min_time_s": args.min_time,
                      "confirm_blocks": CONFIRM_BLOCKS},
           "base_p50_ms": round(base_p50, 3), "levels": table,
           "total_seconds": round(time.perf_counter() - started, 1)}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
