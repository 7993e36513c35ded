"""Between-process spreads of generative cases on a GPU, from the JSON reports of unchanged
re-runs (A/A) gated against a baseline recorded in another process.

Each gated generative case's report holds the shift of its TTFT and TPOT against the
baseline, in both views (own device time, and divided by the GEMM yardstick). Their root
mean square of the log, pooled by the spread each record takes today
(``catalog.pace_fields``), is what ``GatePolicy``'s device spreads stand for.

    python benchmarks/generation_aa_spreads.py REPORT.json... [--json OUT.json]
        [--replay REPORT.json BASELINE.json]...

``--replay`` decides a report's cases again under today's policy (``rule.DEFAULT_POLICY``),
from their block records and the baseline file the run was gated against, at 5 % and 10 %,
taking the run's blocks as the last round.

(Unlike ``python -m pytest_xfperf history spreads``, which reads one history database, this
pools reports from several machines and sessions, including reports of runs made before
records said which span paced them.)
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from pytest_xfperf.backends.catalog import pace_fields
from pytest_xfperf.baselines import gate, rule
from pytest_xfperf.baselines.rule import GatePolicy
from pytest_xfperf.history.spreads import rms_of_log

METRICS = ("tpot_ms", "ttft_ms")
TOLERANCES = (0.05, 0.10)


def trials(report: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """One row per gated (case, metric, view) of a report."""
    rows = []
    for case in report.get("cases", []):
        case_id = str(case.get("id"))
        backend = case_id.split("/")[1]
        decisions = (case.get("baseline") or {}).get("decisions") or {}
        for metric in METRICS:
            decision = decisions.get(metric)
            if not isinstance(decision, dict) or "views" not in decision:
                continue
            pacing = pace_fields("device", backend, prefill=metric == "ttft_ms",
                                 generation=True).get("pacing", "")
            for view in decision["views"]:
                rows.append({
                    "source": source, "case": case_id, "metric": metric,
                    "normalized": bool(view["normalized"]), "ratio": float(view["ratio"]),
                    "verdict": decision.get("outcome"),
                    "spread": GatePolicy.spread_name("device", bool(view["normalized"]),
                                                     pacing)})
    return rows


def replay(report: dict[str, Any], baseline: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Verdict counts by tolerance and metric of the report's generative cases, decided again
    under today's policy, each record carrying the pacing ``catalog.pace_fields`` gives it
    now."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for case in report.get("cases", []):
        case_id = str(case.get("id"))
        entry = baseline.get("cases", {}).get(case_id)
        if not entry or not case.get("more_timing"):
            continue
        backend = case_id.split("/")[1]
        pairs = {"tpot_ms": (case.get("timing"), entry.get("timing")),
                 "ttft_ms": (case["more_timing"].get("ttft_ms"),
                             (entry.get("more_timing") or {}).get("ttft_ms"))}
        for metric, (now, then) in pairs.items():
            if not now or not then:
                continue
            now = {**now, **pace_fields(str(now.get("clock")), backend,
                                        prefill=metric == "ttft_ms", generation=True)}
            views, _ = gate.block_views(now, then, rule.DEFAULT_POLICY)
            for tolerance in TOLERANCES:
                outcome = rule.verdict(views, tolerance, final=True)
                assert outcome is not None
                counts[f"{tolerance:.0%} {metric}"][outcome.value] += 1
    return {name: dict(values) for name, values in sorted(counts.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--json")
    parser.add_argument("--replay", nargs=2, action="append", default=[],
                        metavar=("REPORT", "BASELINE"))
    args = parser.parse_args()
    rows = [row for path in args.reports
            for row in trials(json.loads(Path(path).read_text()), Path(path).name)]
    groups: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        view = "normalized" if row["normalized"] else "own"
        backend = row["case"].split("/")[1]
        groups[f"{backend} {row['metric']} {view}"].append(row["ratio"])
        groups[f"spread {row['spread']}"].append(row["ratio"])
    table = {name: {"trials": len(values), "rms_log": round(rms_of_log(values), 4),
                    "max_abs_shift": round(max(abs(v - 1) for v in values), 4)}
             for name, values in sorted(groups.items())}
    for name, figures in table.items():
        print(f"{name:45s} {figures['trials']:4d} trials  rms {figures['rms_log']:.4f}  "
              f"max {100 * figures['max_abs_shift']:.1f} %")
    replayed: dict[str, Any] = {}
    for report_path, baseline_path in args.replay:
        replayed[report_path] = replay(json.loads(Path(report_path).read_text()),
                                       json.loads(Path(baseline_path).read_text()))
        for name, outcomes in replayed[report_path].items():
            print(f"replay {Path(report_path).name} {name}: {outcomes}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "reports": args.reports, "table": table, "replay": replayed, "trials": rows},
            indent=1) + "\n")


if __name__ == "__main__":
    main()
