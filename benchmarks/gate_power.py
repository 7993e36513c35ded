"""Power of the timing gate on this machine: false alarms and detections, measured.

    python benchmarks/gate_power.py measure [--trials 100] --raw RAW.json
    python benchmarks/gate_power.py analyze --raw RAW.json [--out TABLE.json]
    python benchmarks/gate_power.py analyze --raw docs/gate_power_raw.json.gz  # the committed run

The slowdowns are real: the same BERT-shaped encoder (hidden 128, seq 64, ORT CPU FP32 through
the plugin's own pipeline and runner) with more layers. 20 layers is the base; 21, 22, 23,
24, 26 and 30 layers are +5 % .. +50 % of the layer work. The true factor of each variant
(fixed per-call costs make it a little less than the layer ratio) is measured up front,
interleaved over many blocks, and reported next to its nominal value.

``measure`` records, for every trial and level, everything a gate could look at, and stores
it raw:
1. a baseline, recorded afresh every 10 trials with the plugin's default policy (2 s of
   samples, capped at 256 as a baseline file keeps them): the base model (A), then the
   reference (R: another session of the base model, standing in for the reference backend).
   Minutes pass between a baseline and the runs gated against it, as in CI;
2. the current run: the reference R (the plugin times the reference case of a model and shape
   before its other backends), then the variant (B), each with the run's policy;
3. a confirmation: B again in blocks interleaved with R (what harness.CaseHarness._confirm
   does), measured every time so that every rule can be judged on the same data;
4. ten calls of B (the fixed-rounds rule).
Levels are interleaved trial by trial, so slow phases of the host hit every level alike.

``analyze`` applies the rules to the stored data:
* xfperf (median) and xfperf (q25): ``decision.decide`` with that statistic, normalized by
  the reference on both sides as the plugin does; the confirmation is used (and its time
  counted) only when the rule asks for it; xfperf (q25, unnormalized): the same without the
  reference, to show what normalization contributes;
* fixed rounds: the median of the 10 calls vs the baseline's first 10, past 10 % fails;
* pytest-benchmark ``--benchmark-compare-fail=median:10%``: its own check class on the
  medians of the current run and the baseline.
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

from pytest_xfperf.baselines.decision import REGRESSED, UNSTABLE, Measurement, decide

LEVELS = {0: 20, 5: 21, 10: 22, 15: 23, 20: 24, 30: 26, 50: 30}  # nominal % -> layers
BASE_LAYERS = 20
TOLERANCE = 0.10
FIXED_ROUNDS = 10
CONFIRM_BLOCKS = 5
BASELINE_EVERY = 10
MAX_SAMPLES = 256  # what a baseline file keeps (evenly spread), see Result.baseline_entry
# rule -> (statistic, normalized by the reference). The plugin's rule is xfperf_q25; the raw
# variant shows what the reference normalization contributes on the same data.
STATISTIC_RULES = {"xfperf_median": ("median", True), "xfperf_q25": ("q25", True),
                   "xfperf_q25_unnormalized": ("q25", False)}


def capped(samples: list[float]) -> list[float]:
    if len(samples) <= MAX_SAMPLES:
        return samples
    step = len(samples) / MAX_SAMPLES
    return [samples[int(i * step)] for i in range(MAX_SAMPLES)]


def measure(args: argparse.Namespace) -> None:
    from pytest_xfperf.artifacts.cache import ArtifactCache
    from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
    from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner
    from pytest_xfperf.baselines.machine import machine_key
    from pytest_xfperf.measure.timing import TimingPolicy, time_calls
    from pytest_xfperf.models.hf import random_weights_spec

    def timed(call: Callable[[], object], policy: TimingPolicy) -> list[float]:
        return [round(s * 1000, 4) for s in time_calls(call, lambda: None, policy)]

    pipeline = ArtifactPipeline(ArtifactCache(args.cache_dir), seed=0)

    def runner(layers: int) -> OrtCpuRunner:
        config = {"hidden_size": 128, "num_hidden_layers": layers, "num_attention_heads": 2,
                  "intermediate_size": 512, "vocab_size": 2048}
        spec = random_weights_spec(f"power-l{layers}", "bert", config, 0, "gate power")
        return OrtCpuRunner(pipeline.build(spec, "fp32", spec.build).path)

    inputs = random_weights_spec("power-inputs", "bert", {"vocab_size": 2048}, 0,
                                 "").make_inputs(1, 64, 0)
    calls = {pct: runner(layers).prepare(inputs) for pct, layers in LEVELS.items()}
    ref_call = runner(BASE_LAYERS).prepare(inputs)  # a separate session: the reference
    policy = TimingPolicy(3, args.min_rounds, args.min_time, 10.0)
    block = TimingPolicy(1, max(3, args.min_rounds // CONFIRM_BLOCKS),
                         args.min_time / CONFIRM_BLOCKS, 5.0)
    record = TimingPolicy(3, 10, 2.0, 30.0)

    calibration: dict[int, list[float]] = {pct: [] for pct in LEVELS}
    for _ in range(15):
        for pct in LEVELS:
            calibration[pct] += timed(calls[pct], TimingPolicy(2, 30, 0, 10))
    base_p50 = statistics.median(calibration[0])
    raw: dict[str, Any] = {
        "machine": machine_key(), "tolerance": TOLERANCE,
        "policy": {"min_rounds": args.min_rounds, "min_time_s": args.min_time,
                   "confirm_blocks": CONFIRM_BLOCKS, "baseline_every_trials": BASELINE_EVERY,
                   "baseline_min_time_s": record.min_time},
        "base_p50_ms": base_p50,
        "true_factor": {pct: statistics.median(v) / base_p50 for pct, v in calibration.items()},
        "baselines": [], "trials": []}
    rng = random.Random(0)
    order = list(LEVELS)
    started = time.perf_counter()
    for trial in range(args.trials):
        if trial % BASELINE_EVERY == 0:
            raw["baselines"].append({"samples": capped(timed(calls[0], record)),
                                     "reference": capped(timed(ref_call, record))})
        rng.shuffle(order)
        for pct in order:
            # The reference case of the same run (the plugin times it before the other
            # backends of its model and shape), then the case itself.
            current_ref = timed(ref_call, policy)
            t0 = time.perf_counter()
            current = timed(calls[pct], policy)
            t1 = time.perf_counter()
            case: list[float] = []
            ref: list[float] = []
            for _ in range(CONFIRM_BLOCKS):
                case += timed(calls[pct], block)
                ref += timed(ref_call, block)
            t2 = time.perf_counter()
            fixed = timed(calls[pct], TimingPolicy(3, FIXED_ROUNDS, 0, 10))
            t3 = time.perf_counter()
            raw["trials"].append({
                "trial": trial, "pct": pct, "baseline": len(raw["baselines"]) - 1,
                "current": current, "current_ref": current_ref, "confirm_case": case,
                "confirm_ref": ref, "fixed": fixed,
                "seconds": {"current": t1 - t0, "confirm": t2 - t1, "fixed": t3 - t2}})
        if (trial + 1) % 10 == 0:
            print(f"{trial + 1} trials, {time.perf_counter() - started:.0f} s", file=sys.stderr,
                  flush=True)
    raw["total_seconds"] = round(time.perf_counter() - started, 1)
    args.raw.write_text(json.dumps(raw))


def analyze(raw: dict[str, Any]) -> dict[str, Any]:
    from pytest_benchmark.utils import parse_compare_fail

    benchmark_check = parse_compare_fail("median:10%")
    rules = (*STATISTIC_RULES, "fixed_rounds_10", "pytest_benchmark_median_10pct")
    levels = sorted({t["pct"] for t in raw["trials"]})
    fails = {pct: dict.fromkeys(rules, 0) for pct in levels}
    unstable = {pct: dict.fromkeys(STATISTIC_RULES, 0) for pct in levels}
    confirmed = {pct: dict.fromkeys(STATISTIC_RULES, 0) for pct in levels}
    seconds = {pct: dict.fromkeys(rules, 0.0) for pct in levels}
    counts = dict.fromkeys(levels, 0)
    for t in raw["trials"]:
        pct, base = t["pct"], raw["baselines"][t["baseline"]]
        counts[pct] += 1
        for rule, (statistic, normalized) in STATISTIC_RULES.items():
            asked: list[bool] = []
            baseline = Measurement(base["samples"], base["reference"] if normalized else None)

            def confirm(t: dict[str, Any] = t, asked: list[bool] = asked,
                        normalized: bool = normalized) -> Measurement:
                asked.append(True)
                return Measurement(t["confirm_case"], t["confirm_ref"] if normalized else None)

            now = Measurement(t["current"], t["current_ref"] if normalized else None)
            result = decide(now, baseline, TOLERANCE, confirm, statistic)
            fails[pct][rule] += result.outcome == REGRESSED
            unstable[pct][rule] += result.outcome == UNSTABLE
            confirmed[pct][rule] += bool(asked)
            seconds[pct][rule] += t["seconds"]["current"] + (
                t["seconds"]["confirm"] if asked else 0.0)
        fixed = statistics.median(t["fixed"]) / statistics.median(base["samples"][:FIXED_ROUNDS])
        fails[pct]["fixed_rounds_10"] += fixed > 1 + TOLERANCE
        seconds[pct]["fixed_rounds_10"] += t["seconds"]["fixed"]
        fails[pct]["pytest_benchmark_median_10pct"] += bool(benchmark_check.fails(
            {"median": statistics.median(t["current"])},
            {"median": statistics.median(base["samples"])}))
        seconds[pct]["pytest_benchmark_median_10pct"] += t["seconds"]["current"]
    table = []
    for pct in levels:
        n = counts[pct]
        table.append({
            "nominal_slowdown_pct": pct, "true_factor": round(raw["true_factor"][str(pct)], 4),
            "trials": n, "fail_rate": {r: round(fails[pct][r] / n, 3) for r in rules},
            "unstable_rate": {r: round(unstable[pct][r] / n, 3) for r in STATISTIC_RULES},
            "confirmation_rate": {r: round(confirmed[pct][r] / n, 3) for r in STATISTIC_RULES},
            "seconds_per_gated_case": {r: round(seconds[pct][r] / n, 3) for r in rules}})
    return {"machine": raw["machine"], "tolerance": raw["tolerance"], "policy": raw["policy"],
            "base_p50_ms": round(raw["base_p50_ms"], 3), "levels": table,
            "measure_seconds": raw.get("total_seconds")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("measure", "analyze"))
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--min-time", type=float, default=0.4)
    parser.add_argument("--min-rounds", type=int, default=30)
    parser.add_argument("--cache-dir", type=Path, default=Path(".xfperf-cache"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.what == "measure":
        measure(args)
        return
    if args.raw.suffix == ".gz":  # docs/gate_power_raw.json.gz: the committed raw data
        import gzip

        table = analyze(json.loads(gzip.decompress(args.raw.read_bytes())))
    else:
        table = analyze(json.loads(args.raw.read_text()))
    text = json.dumps(table, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
