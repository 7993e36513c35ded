"""Power of the timing gate on this machine: false alarms and detections, measured.

    python benchmarks/gate_power.py measure [--trials 100] --raw RAW.json
    python benchmarks/gate_power.py analyze --raw RAW.json [--out TABLE.json]
    python benchmarks/gate_power.py analyze --raw docs/gate_power_raw.json.gz  # the committed run

The slowdowns are real: the same BERT-shaped encoder (hidden 128, seq 64, ORT CPU FP32 through
the plugin's own pipeline and runner) with more layers. 20 layers is the base; 21, 22, 23,
24 (with feed-forward blocks 528 wide instead of 512), 26 and 30 layers are the +5 % .. +50 %
levels (``LEVELS``). The true factor of each variant is measured, as the median of per-pass
ratios over interleaved passes taken up front and after every trial, and reported next to
its nominal value.

``measure`` runs the plugin's rule (``decision.decide``) live, as the harness does, and
stores everything it measured:
1. a baseline, recorded afresh every 10 trials as ``--xfperf-update-baselines`` records one
   (2 s of samples, capped at 256 as a baseline file keeps them): the reference (R: PyTorch
   FP32 eager of the base model, the plugin's reference backend; ``--reference ort`` takes
   another ORT session of it instead), the base model (A),
   then the interleaved record of A and R (``paired``, 10 blocks, recorded again up to 3
   times while unsettled, ``decision.calmest_record``). Minutes pass between a
   baseline and the runs gated against it, as in CI;
2. the current run: the reference R (the plugin times the reference case of a model and shape
   before its other backends), then the variant (B), each with the run's policy;
3. the confirmation rounds the rule asked for (B in 5 blocks interleaved with R per round, as
   harness.CaseHarness._confirm measures them), with their time;
4. ten calls of B (the fixed-rounds rule).
Levels are interleaved trial by trial, so slow phases of the host hit every level alike.

``analyze`` replays the rules on the stored data (the plugin's rule replays exactly: its
bootstrap is seeded and its confirmations are the recorded rounds):
* xfperf: the plugin's rule; xfperf (first measurement only): the same without confirmation,
  to show what the confirmation contributes;
* fixed rounds: the median of the 10 calls vs the baseline's first 10, past 10 % fails;
* pytest-benchmark ``--benchmark-compare-fail=median:10%``: its own check class on the
  medians of the current run and the baseline.
Seconds per gated case leave out a trial with a phase over a minute (the process was stopped
while other work used the machine); the table says how many.
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

from pytest_xfperf.baselines.decision import (
    IMPROVED,
    REGRESSED,
    UNSTABLE,
    Blocks,
    Measurement,
    TimingDecision,
    calmest_record,
    decide,
    record_spread,
)
from pytest_xfperf.result import spread

BASE_LAYERS = 20
BASE_INTERMEDIATE = 512
# nominal % -> (layers, feed-forward width). More layers make the coarse steps; at +20 % the
# layers alone measured +17.7 % to +20.7 % from one run to the next (the ratio of two models
# moves with the host's state), so that variant's feed-forward blocks are a little wider
# (+21.7 % in a 120-pass calibration on 2026-11-27, where 24 layers alone gave +20.7 %).
LEVELS = {0: (20, 512), 5: (21, 512), 10: (22, 512), 15: (23, 512), 20: (24, 528),
          30: (26, 512), 50: (30, 512)}
TOLERANCE = 0.10
STATISTIC = "q25"  # what the plugin decides p50 and throughput on (gate.SAMPLED)
FIXED_ROUNDS = 10
CONFIRM_BLOCKS = 5  # harness.CONFIRM_BLOCKS
PAIRED_BLOCKS = 10  # harness.PAIRED_BLOCKS
BASELINE_EVERY = 10
MAX_SAMPLES = 256  # what a baseline file keeps (evenly spread), see result.baseline_entry
# Raw data with live decisions, re-recorded records and the run's own calibration (earlier
# formats were decided by earlier rules, and their replay would not reproduce their live
# fails).
FORMAT = 4
STOPPED_SECONDS = 60.0
RULES = ("xfperf", "xfperf_first_only", "fixed_rounds_10", "pytest_benchmark_median_10pct")


def power_spec(layers: int, intermediate: int = BASE_INTERMEDIATE) -> Any:
    """The BERT-shaped encoder of this benchmark with ``layers`` layers whose feed-forward
    blocks are ``intermediate`` wide (seeded weights)."""
    from pytest_xfperf.models.hf import random_weights_spec

    config = {"hidden_size": 128, "num_hidden_layers": layers, "num_attention_heads": 2,
              "intermediate_size": intermediate, "vocab_size": 2048}
    name = f"power-l{layers}" + (f"-i{intermediate}" if intermediate != BASE_INTERMEDIATE else "")
    return random_weights_spec(name, "bert", config, 0, "gate power")


def power_models(cache_dir: Path) -> tuple[Callable[..., Any], Any]:
    """An ORT CPU FP32 runner factory for ``power_spec(layers, intermediate)``, built through the
    plugin's own pipeline, and the inputs (batch 1, sequence 64) every model is timed on."""
    from pytest_xfperf.artifacts.cache import ArtifactCache
    from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
    from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner
    from pytest_xfperf.models.hf import random_weights_spec

    pipeline = ArtifactPipeline(ArtifactCache(cache_dir), seed=0)

    def runner(layers: int, intermediate: int = BASE_INTERMEDIATE) -> OrtCpuRunner:
        spec = power_spec(layers, intermediate)
        return OrtCpuRunner(pipeline.build(spec, "fp32", spec.build).path)

    inputs = random_weights_spec("power-inputs", "bert", {"vocab_size": 2048}, 0,
                                 "").make_inputs(1, 64, 0)
    return runner, inputs


def measure(args: argparse.Namespace) -> None:
    from pytest_xfperf.baselines.machine import machine_key
    from pytest_xfperf.measure.timing import TimingPolicy, block_policy, gc_paused, time_calls

    def timed(call: Callable[[], object], policy: TimingPolicy) -> list[float]:
        return [round(s * 1000, 4) for s in time_calls(call, lambda: None, policy)]

    runner, inputs = power_models(args.cache_dir)
    calls = {pct: runner(*shape).prepare(inputs) for pct, shape in LEVELS.items()}
    if args.reference == "torch":
        # The plugin's reference backend: PyTorch FP32 eager of the base model.
        from pytest_xfperf.backends.pytorch import TorchCpuRunner

        ref_call = TorchCpuRunner(power_spec(BASE_LAYERS).build().eval()).prepare(inputs)
    else:  # another ORT session of the base model: a reference that drifts exactly alike
        ref_call = runner(BASE_LAYERS).prepare(inputs)
    policy = TimingPolicy(3, args.min_rounds, args.min_time, 10.0)
    record = TimingPolicy(3, 10, 2.0, 30.0)
    # The harness's block policy, for the run and for the recording run of a baseline.
    block = block_policy(policy, CONFIRM_BLOCKS)
    record_block = block_policy(record, CONFIRM_BLOCKS)

    def interleaved(case_call: Callable[[], object], blocks: int,
                    each: TimingPolicy) -> Blocks:
        case: list[list[float]] = []
        ref: list[list[float]] = []
        with gc_paused():  # as harness._interleaved: one collection for all blocks
            for _ in range(blocks):
                case.append(timed(case_call, each))
                ref.append(timed(ref_call, each))
        return Blocks(case, ref)

    # True factors: per pass, every level's median over the base's, interleaved; the median
    # of the per-pass ratios is robust to a pass that a slow phase of the host cut through.
    # The passes are taken up front and after every trial, so the factor is the run's own
    # (the ratio of two models moves by a few percent with the state of the host).
    per_pass: dict[int, list[float]] = {pct: [] for pct in LEVELS}
    base_medians: list[float] = []

    def calibration_pass() -> None:
        medians = {pct: statistics.median(timed(calls[pct], TimingPolicy(2, 30, 0, 10)))
                   for pct in LEVELS}
        base_medians.append(medians[0])
        for pct in LEVELS:
            per_pass[pct].append(medians[pct] / medians[0])

    for _ in range(args.calibration_passes):
        calibration_pass()
    raw: dict[str, Any] = {
        "format": FORMAT, "machine": machine_key(), "tolerance": TOLERANCE,
        "reference": args.reference,
        "statistic": STATISTIC,
        "policy": {"min_rounds": args.min_rounds, "min_time_s": args.min_time,
                   "confirm_blocks": CONFIRM_BLOCKS, "paired_blocks": PAIRED_BLOCKS,
                   "baseline_every_trials": BASELINE_EVERY,
                   "baseline_min_time_s": record.min_time},
        "layers": {pct: list(shape) for pct, shape in LEVELS.items()},
        "true_factor_up_front": {pct: statistics.median(v) for pct, v in per_pass.items()},
        "baselines": [], "trials": []}
    rng = random.Random(0)
    order = list(LEVELS)
    started = time.perf_counter()
    for trial in range(args.trials):
        if trial % BASELINE_EVERY == 0:
            reference = spread(timed(ref_call, record))
            samples = spread(timed(calls[0], record))
            # Recorded again while unsettled, as the harness records it.
            paired, attempts, _ = calmest_record(
                lambda: interleaved(calls[0], PAIRED_BLOCKS, record_block), TOLERANCE,
                STATISTIC)
            keep = MAX_SAMPLES // PAIRED_BLOCKS  # per block, as result.baseline_entry keeps
            raw["baselines"].append({
                "samples": samples, "reference": reference, "record_attempts": attempts,
                "paired": {"case": [spread(list(b), keep) for b in paired.case],
                           "reference": [spread(list(b), keep) for b in paired.reference]}})
        base = raw["baselines"][-1]
        rng.shuffle(order)
        for pct in order:
            # The reference case of the same run (the plugin times it before the other
            # backends of its model and shape), then the case itself.
            current_ref = timed(ref_call, policy)
            t0 = time.perf_counter()
            current = timed(calls[pct], policy)
            t1 = time.perf_counter()
            fixed = timed(calls[pct], TimingPolicy(3, FIXED_ROUNDS, 0, 10))
            t2 = time.perf_counter()
            rounds: list[dict[str, Any]] = []

            def confirm(k: int, pct: int = pct, rounds: list[dict[str, Any]] = rounds
                        ) -> Blocks:
                r0 = time.perf_counter()
                measured = interleaved(calls[pct], CONFIRM_BLOCKS, block)
                rounds.append({"case": measured.case, "reference": measured.reference,
                               "seconds": time.perf_counter() - r0})
                return measured

            trial_data = {"trial": trial, "pct": pct, "baseline": len(raw["baselines"]) - 1,
                          "current": current, "current_ref": current_ref, "fixed": fixed,
                          "rounds": rounds,
                          "seconds": {"current": t1 - t0, "fixed": t2 - t1}}
            live = gate(trial_data, base, confirm)
            trial_data["outcome"] = live.outcome
            raw["trials"].append(trial_data)
        calibration_pass()
        if (trial + 1) % 10 == 0:
            print(f"{trial + 1} trials, {time.perf_counter() - started:.0f} s", file=sys.stderr,
                  flush=True)
    raw["total_seconds"] = round(time.perf_counter() - started, 1)
    raw["base_p50_ms"] = statistics.median(base_medians)
    raw["calibration_passes"] = len(base_medians)
    raw["true_factor"] = {pct: statistics.median(v) for pct, v in per_pass.items()}
    args.raw.write_text(json.dumps(raw))


def gate(trial: dict[str, Any], base: dict[str, Any],
         confirm: Callable[[int], Blocks] | None) -> TimingDecision:
    """The plugin's decision for one trial, as gate._sampled makes it."""
    return decide(Measurement(trial["current"], trial["current_ref"]),
                  Measurement(base["samples"], base["reference"]), TOLERANCE, confirm,
                  STATISTIC, Blocks(base["paired"]["case"], base["paired"]["reference"]))


def analyze(raw: dict[str, Any]) -> dict[str, Any]:
    from pytest_benchmark.utils import parse_compare_fail

    if raw.get("format") != FORMAT:
        raise SystemExit(f"raw data of format {raw.get('format', 1)}: this script reads "
                         f"format {FORMAT} (measure again)")
    benchmark_check = parse_compare_fail("median:10%")  # type: ignore[no-untyped-call]
    levels = sorted({t["pct"] for t in raw["trials"]})
    fails = {pct: dict.fromkeys(RULES, 0) for pct in levels}
    unstable = dict.fromkeys(levels, 0)
    improved = dict.fromkeys(levels, 0)
    confirmed = dict.fromkeys(levels, 0)
    rounds_used = dict.fromkeys(levels, 0)
    seconds = {pct: dict.fromkeys(RULES, 0.0) for pct in levels}
    counts = dict.fromkeys(levels, 0)
    timed = dict.fromkeys(levels, 0)  # trials in the time figures
    for t in raw["trials"]:
        pct, base = t["pct"], raw["baselines"][t["baseline"]]
        counts[pct] += 1
        recorded = t["rounds"]

        def replay(k: int, recorded: list[dict[str, Any]] = recorded) -> Blocks:
            if k >= len(recorded):
                raise RuntimeError("the rule asked for a round the live run did not measure: "
                                   "the decision code changed since this data was recorded")
            return Blocks(recorded[k]["case"], recorded[k]["reference"])

        result = gate(t, base, replay)
        # Fails must replay exactly (the bootstrap is seeded, the rounds are the recorded
        # ones); other verdicts may differ where the rule's wording of them changed since.
        if (result.outcome == REGRESSED) != (t["outcome"] == REGRESSED):
            raise RuntimeError(f"replay gave {result.outcome}, the live run {t['outcome']}")
        # A phase longer than a minute means the process was stopped (SIGSTOP) while other
        # work ran: its verdicts count, its seconds would not say what the rule costs.
        phases = [t["seconds"]["current"], t["seconds"]["fixed"],
                  *(r["seconds"] for r in recorded)]
        clocked = max(phases) < STOPPED_SECONDS
        timed[pct] += clocked
        fails[pct]["xfperf"] += result.outcome == REGRESSED
        unstable[pct] += result.outcome == UNSTABLE
        improved[pct] += result.outcome == IMPROVED
        confirmed[pct] += bool(recorded)
        rounds_used[pct] += len(recorded)
        first = gate(t, base, None)
        fails[pct]["xfperf_first_only"] += first.outcome == REGRESSED
        fixed = statistics.median(t["fixed"]) / statistics.median(base["samples"][:FIXED_ROUNDS])
        fails[pct]["fixed_rounds_10"] += fixed > 1 + TOLERANCE
        fails[pct]["pytest_benchmark_median_10pct"] += bool(benchmark_check.fails(
            {"median": statistics.median(t["current"])},
            {"median": statistics.median(base["samples"])}))
        if clocked:
            for rule, spent in (
                    ("xfperf", t["seconds"]["current"] + sum(r["seconds"] for r in recorded)),
                    ("xfperf_first_only", t["seconds"]["current"]),
                    ("fixed_rounds_10", t["seconds"]["fixed"]),
                    ("pytest_benchmark_median_10pct", t["seconds"]["current"])):
                seconds[pct][rule] += spent
    table = []
    for pct in levels:
        n = counts[pct]
        table.append({
            "nominal_slowdown_pct": pct, "layers_and_width": raw["layers"][str(pct)],
            "true_factor": round(raw["true_factor"][str(pct)], 4),
            "true_factor_up_front": round(raw["true_factor_up_front"][str(pct)], 4),
            "trials": n, "fail_rate": {r: round(fails[pct][r] / n, 3) for r in RULES},
            "xfperf_unstable_rate": round(unstable[pct] / n, 3),
            "xfperf_improved_rate": round(improved[pct] / n, 3),
            "xfperf_confirmation_rate": round(confirmed[pct] / n, 3),
            "xfperf_rounds_per_case": round(rounds_used[pct] / n, 3),
            "seconds_per_gated_case": {r: round(seconds[pct][r] / max(1, timed[pct]), 3)
                                       for r in RULES},
            "trials_left_out_of_times": n - timed[pct]})
    return {"machine": raw["machine"], "tolerance": raw["tolerance"], "policy": raw["policy"],
            "reference": raw["reference"],
            "records": [{"attempts": b["record_attempts"], "spread": round(record_spread(
                Blocks(b["paired"]["case"], b["paired"]["reference"]), STATISTIC), 4)}
                for b in raw["baselines"]],
            "base_p50_ms": round(raw["base_p50_ms"], 3),
            "calibration_passes": raw["calibration_passes"], "levels": table,
            "measure_seconds": raw.get("total_seconds")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("measure", "analyze"))
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--min-time", type=float, default=0.4)
    parser.add_argument("--min-rounds", type=int, default=30)
    parser.add_argument("--calibration-passes", type=int, default=40)
    parser.add_argument("--reference", choices=("torch", "ort"), default="torch")
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
