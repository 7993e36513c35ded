"""How steady is a yardstick? Block ratios of an ORT case to PyTorch and to another ORT session.

    python benchmarks/yardstick_probe.py [--seconds 480] [--out PROBE.json]

The timing gate normalizes a case by a reference timed in the same minute, so drift of the
host cancels, as far as both slow down alike. This probe measures how far they do on this
machine. It times, in a loop, one 0.4 s block each of: the power benchmark's +5 % variant
(ORT CPU FP32, 21 layers), its base (ORT, 20 layers), another ORT session of the base, and
PyTorch FP32 eager of the base (the plugin's reference backend). Each block's first quartile
is its level. It prints, per pair, the median ratio and the spread (standard deviation over
the mean) of medians of 10-block windows, the size of an interleaved record: how much a
record's ratio moves from one state of the host to the next.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

PAIRS = (("ort21", "torch20"), ("ort21", "ort20"), ("ort21", "ort20_other_session"),
         ("ort20_other_session", "ort20"))
WINDOW = 10  # blocks per window: an interleaved record's length (harness.PAIRED_BLOCKS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=480.0)
    parser.add_argument("--cache-dir", type=Path, default=Path(".xfperf-cache"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from gate_power import power_models, power_spec  # the same models, built alike

    from pytest_xfperf.backends.pytorch import TorchCpuRunner
    from pytest_xfperf.baselines.machine import machine_key
    from pytest_xfperf.measure.timing import TimingPolicy, gc_paused, time_calls

    ort, inputs = power_models(args.cache_dir)
    calls = {"ort21": ort(21).prepare(inputs), "ort20": ort(20).prepare(inputs),
             "torch20": TorchCpuRunner(power_spec(20).build().eval()).prepare(inputs),
             "ort20_other_session": ort(20).prepare(inputs)}
    block = TimingPolicy(1, 6, 0.4, 6.0)
    levels: list[dict[str, float]] = []
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        with gc_paused():
            row = {}
            for name, call in calls.items():
                samples = sorted(time_calls(call, lambda: None, block))
                row[name] = samples[len(samples) // 4] * 1000
        levels.append(row)
    if len(levels) < 2 * WINDOW:
        raise SystemExit(f"{len(levels)} blocks in {args.seconds:g} s: a spread needs at least "
                         f"{2 * WINDOW} (two windows); give it more --seconds")
    summary: dict[str, Any] = {"machine": machine_key(), "seconds": args.seconds,
                               "blocks": len(levels), "pairs": {}}
    for num, den in PAIRS:
        ratios = [row[num] / row[den] for row in levels]
        windows = [statistics.median(ratios[i:i + WINDOW])
                   for i in range(0, len(ratios) - WINDOW + 1, WINDOW)]
        summary["pairs"][f"{num}/{den}"] = {
            "median_ratio": round(statistics.median(ratios), 4),
            "window_spread": round(statistics.pstdev(windows) / statistics.fmean(windows), 4),
            "window_range": [round(min(windows), 4), round(max(windows), 4)]}
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        args.out.write_text(json.dumps({**summary, "levels_ms": levels}) + "\n")


if __name__ == "__main__":
    main()
