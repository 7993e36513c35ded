"""Between-process spreads of a suite's own cases, from the runs its history recorded.

Every gated run appends each case's block medians (and its yardstick's) to the history
database. Runs of an unchanged suite against one baseline file are A/A trials: the
Hodges-Lehmann shift of each run's blocks against the baseline's is how far the case's level
moved between the recording process and that run, in each view. Their root mean square of the
log is what `GatePolicy`'s wall-clock spreads stand for (docs/gate.md), measured on the
suite's own models instead of the power runs' encoder.

    python benchmarks/history_spreads.py --history .xfperf/history.db \
        --baseline baselines/cpu-amd-epyc-2c-9a2dc94c.json [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
from pathlib import Path
from typing import Any

from pytest_xfperf.baselines import rule


def _rms(logs: list[float]) -> float:
    return math.sqrt(statistics.fmean(x * x for x in logs))


def trials(history: Path, baseline: Path) -> dict[str, list[dict[str, Any]]]:
    """By case id: each recorded run's own and normalized shift against the baseline."""
    cases = json.loads(baseline.read_text())["cases"]
    out: dict[str, list[dict[str, Any]]] = {}
    with sqlite3.connect(f"file:{history}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT run_id, case_id, verdict, timing_metric, summary FROM results "
                          "ORDER BY run_id").fetchall()
    for run, case, verdict, metric, summary in rows:
        now = json.loads(summary).get(metric)
        then = (cases.get(case) or {}).get("timing")
        if not now or not then or now.get("clock") != then.get("clock"):
            continue
        own = rule.shift(now["case_ms"], then["case_ms"], 0.95, normalized=False)
        row = {"run": run, "verdict": verdict, "own": own.ratio}
        if now.get("yardstick_ms") and then.get("yardstick_ms"):
            normalized = rule.shift(
                rule.block_values(now["case_ms"], now["yardstick_ms"], True),
                rule.block_values(then["case_ms"], then["yardstick_ms"], True), 0.95,
                normalized=True)
            row["normalized"] = normalized.ratio
        out.setdefault(case, []).append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    by_case = trials(args.history, args.baseline)
    summary: dict[str, Any] = {"history": str(args.history), "baseline": str(args.baseline),
                               "cases": {}}
    every: dict[str, list[float]] = {"own": [], "normalized": []}
    for case, rows in by_case.items():
        line = {}
        for view in every:
            logs = [math.log(r[view]) for r in rows if view in r]
            every[view] += logs
            if logs:
                line[view] = {"rms": round(_rms(logs), 4),
                              "ratios": [round(math.exp(x), 3) for x in logs]}
        summary["cases"][case] = {**line, "verdicts": [r["verdict"] for r in rows]}
        print(f"{case}: " + "; ".join(f"{v} rms {d['rms']:.3f} {d['ratios']}"
                                      for v, d in line.items()))
    summary["trials"] = len(every["own"])
    summary["rms"] = {view: round(_rms(logs), 4) for view, logs in every.items() if logs}
    print(f"{summary['trials']} trials; root mean square of the log: {summary['rms']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
