"""A/A data for the history's drift detector, and the drift simulation on it.

`record` makes real `pytest --xfperf` runs of a user-registered model (COPIES identical copies
of the BERT-shaped encoder of gate_power.py, hidden 128, 20 layers, ort-cpu FP32, 1x128, the
shipped timing defaults, no baseline, so each run is the stopping rule's first round: the 8
blocks a run takes when its gate decides at once) and keeps each run's JSON report. Nothing
changes between runs: every series is A/A.

`simulate` loads the reports into a history database through `python -m pytest_xfperf history
import` (the path users take), then runs the detector of pytest_xfperf/history/trend.py on
windows of 30 consecutive runs of one case: as recorded (no drift: any flag is false), and
with a drift of DRIFT per run from run START on, applied to the run's case blocks (the
yardstick, which measures the host, is left as it was), the way a model that slows run after
run would show. It prints the false-flag count and the run by which each drift was flagged.

    python benchmarks/history_aa.py record --minutes 45 --out DIR
    python benchmarks/history_aa.py simulate --reports DIR [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gate_power import PROFILES, _project, _pytest  # noqa: E402


def record(args: argparse.Namespace) -> None:
    profile = PROFILES["cpu"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _project(root, profile, args.copies, 0)
        baselines = root / "baselines"
        index = 0
        while time.time() < deadline:
            report = root / "r.json"
            code, seconds, data = _pytest(root, profile["base_layers"], profile, args.copies,
                                          [], report, baselines)
            data["aa_run"] = {"index": index, "exit": code, "seconds": round(seconds, 2),
                              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (out / f"run_{index:03d}.json").write_text(json.dumps(data))
            print(f"[{index}] exit {code} {seconds:.0f} s "
                  f"{[c['verdict'] for c in data['cases']]}", flush=True)
            index += 1


def _series(reports: Path, db: Path) -> dict[str, list[dict[str, Any]]]:
    """Every case's run summaries, oldest first, read back from a history the reports were
    imported into by the CLI."""
    from pytest_xfperf.history.db import History

    files = sorted(str(p) for p in reports.glob("run_*.json"))
    done = subprocess.run([sys.executable, "-m", "pytest_xfperf", "history", "import", *files,
                           "--history", str(db)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    with History(db, create=False) as history:
        out = {}
        for case_id in history.case_ids():
            (machine,) = history.machines_of(case_id)
            out[case_id] = [dict(p.summary) for p in history.series(case_id, machine)]
    return out


def _drifted(summaries: list[dict[str, Any]], start: int, per_run: float
             ) -> list[dict[str, Any]]:
    """The runs with the case's blocks slowed by ``per_run`` compounded from run ``start``
    (1-based) on; the yardstick's blocks as recorded."""
    out = []
    for i, summary in enumerate(summaries, start=1):
        factor = (1 + per_run) ** (i - start + 1) if i >= start else 1.0
        record = dict(summary["p50_ms"])
        record["own"] = record["own"] * factor
        if record.get("normalized"):
            record["normalized"] = record["normalized"] * factor
        out.append({**summary, "p50_ms": record})
    return out


def _first_flag(summaries: list[dict[str, Any]], policy: Any, only_last: bool = False
                ) -> int | None:
    """The run (1-based) after which the drift test, run after every run as the plugin runs
    it, first says drifting; None if it never does. ``only_last``: asked once, after the last
    run."""
    from pytest_xfperf.history.drift import views
    from pytest_xfperf.history.trend import assess

    start = len(summaries) if only_last else 2 * policy.min_segment
    for n in range(start, len(summaries) + 1):
        own, normalized, _ = views(summaries[:n], "p50_ms")
        trend = assess(own, normalized, policy)
        if trend is not None and trend.drifting:
            return n
    return None


def simulate(args: argparse.Namespace) -> dict[str, Any]:
    import random
    from dataclasses import asdict, replace

    from pytest_xfperf.baselines.machine import machine_info
    from pytest_xfperf.history.trend import DEFAULT_TREND

    with tempfile.TemporaryDirectory() as tmp:
        series = _series(Path(args.reports), Path(tmp) / "history.db")
    length = 30
    # Contiguous windows keep the host's run-to-run wander; shuffled ones are exchangeable.
    windows = [s[i:i + length] for s in series.values() for i in range(len(s) - length + 1)]
    step = max(1, len(windows) // args.series)
    contiguous = windows[::step][:args.series]
    pool = [run for s in series.values() for run in s]
    rng = random.Random(0)
    shuffled = [rng.sample(pool, length) for _ in range(args.series)]
    policies = {"default": DEFAULT_TREND}
    for name, values in (("min_shift", (0.03, 0.08)), ("alpha", (0.001, 0.005, 0.01, 0.05)),
                         ("min_segment", (4, 6))):
        for value in values:
            policies[f"{name}={value}"] = replace(DEFAULT_TREND, **{name: value})
    rows = {}
    for name, policy in policies.items():
        row: dict[str, Any] = {"policy": asdict(policy)}
        for label, group in (("contiguous", contiguous), ("shuffled", shuffled)):
            false = [_first_flag(w, policy) for w in group]
            found = [_first_flag(_drifted(w, args.start, args.drift), policy) for w in group]
            caught = sorted(f for f in found if f is not None)
            last = [_first_flag(w, policy, only_last=True) for w in group]
            row[label] = {
                "series": len(group),
                "false_flags": sum(f is not None for f in false),
                "false_flags_at_run_30": sum(f is not None for f in last),
                "drift_flagged": len(caught),
                "flagged_by_run_20": sum(f <= 20 for f in caught),
                "median_run": caught[len(caught) // 2] if caught else None,
                "latest_run": caught[-1] if caught else None}
        rows[name] = row
        print(name, json.dumps({k: v for k, v in row.items() if k != "policy"}), flush=True)
    levels = {k: [round(s["p50_ms"]["own"], 4) for s in v] for k, v in series.items()}
    return {"machine": machine_info(), "runs_per_case": {k: len(v) for k, v in series.items()},
            "drift_per_run": args.drift, "drift_start_run": args.start, "results": rows,
            "levels_ms": levels,
            "command": " ".join(sys.argv),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_record = sub.add_parser("record")
    p_record.add_argument("--minutes", type=float, default=45)
    p_record.add_argument("--copies", type=int, default=4)
    p_record.add_argument("--out", required=True)
    p_sim = sub.add_parser("simulate")
    p_sim.add_argument("--reports", required=True)
    p_sim.add_argument("--series", type=int, default=100)
    p_sim.add_argument("--drift", type=float, default=0.015)
    p_sim.add_argument("--start", type=int, default=10)
    p_sim.add_argument("--json")
    args = parser.parse_args()
    if args.command == "record":
        record(args)
    else:
        result = simulate(args)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
