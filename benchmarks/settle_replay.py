"""When may the gate stop taking rounds? Three answers replayed on recorded power runs.

The stopping rule takes another round while more blocks could still matter. Which interval
more blocks tend to depends on where the shift lies, and the first rounds do not know that
exactly:

- ``estimate`` (the rule before 2026-12-08): the estimate, give or take the floor (the
  spread no number of blocks removes), lies clear of a line: above the tolerance line,
  below the improvement line, or between the two;
- ``any-clearance``: some shift the blocks leave open (``rule.open_shifts``), give or take
  the floor, lies clear of a line, a pass between the lines included;
- ``shipped`` (``rule.could_change``): the same, where it would change the verdict: past a
  line, or between the lines only for an interval that would be unstable now.

Every trial of power runs measured with ``--every-block`` (all of max_blocks, no early
verdict) is decided again round by round under each, against a baseline pooled from the
last k recordings before it (as ``gate_power.py pool`` does). Only trials with at least
three recordings before them count, so every k decides the same trials. Printed per k and
rule: each level's verdicts and its mean rounds.

    python benchmarks/settle_replay.py RAW.json [RAW.json ...] [--pool 1,3] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import gate_power

LEVELS = ("A/A", "+5%", "+20%", "+50%")
NEED = 3  # recordings before a trial, for it to count under every k


def settles_by_estimate(estimate: Any, tolerance: float) -> bool:
    """The rule before 2026-12-08: the estimate, give or take the floor, clear of a line."""
    line, centre = math.log1p(tolerance), math.log(estimate.ratio)
    return (centre - estimate.floor > line or centre + estimate.floor < -line
            or abs(centre) + estimate.floor < line)


def settles_by_any_clearance(estimate: Any, tolerance: float) -> bool:
    """Some open shift, give or take the floor, clear of a line, whatever the verdict now."""
    from pytest_xfperf.baselines import rule

    line, floor = math.log1p(tolerance), estimate.floor
    low, high = rule.open_shifts(estimate)
    return (high - floor > line or low + floor < -line
            or (floor < line and low < line - floor and high > floor - line))


def replay(paths: Sequence[str], pooled: int, settles: Callable[[Any, float], bool]
           ) -> dict[str, dict[str, float]]:
    """Each level's verdict counts and mean rounds, the gate deciding with ``settles``."""
    from pytest_xfperf.baselines import rule

    shipped = rule.could_change
    rule.could_change = settles  # rule.decide reads it from the module
    table: dict[str, dict[str, float]] = {}
    try:
        policy = rule.DEFAULT_POLICY
        for path in paths:
            raw = gate_power._load(path)
            if not raw.get("every_block"):
                raise SystemExit(f"{path}: measured without --every-block; its later rounds "
                                 "are missing, so no rule can be replayed on it")
            tolerance = float(raw["tolerance"].rstrip("%")) / 100
            records = sorted(raw["records"], key=lambda r: r["index"])
            for run in raw["runs"]:
                if run["level"] not in LEVELS:
                    continue
                before = [r for r in records if r["index"] <= run["index"]]
                for case in run["cases"]:
                    processes = gate_power._processes(before, case["id"], NEED)
                    if not case.get("timing") or len(processes) < NEED:
                        continue
                    now = gate_power._paced(case["timing"], case["id"].split("/")[1])
                    then = gate_power._pooled([p["timing"] for p in processes[-pooled:]])
                    verdict, _, rounds = gate_power._decided(now, then, policy, tolerance)
                    row = table.setdefault(run["level"], {"trials": 0, "rounds": 0})
                    row["trials"] += 1
                    row["rounds"] += rounds
                    row[verdict] = row.get(verdict, 0) + 1
    finally:
        rule.could_change = shipped
    for row in table.values():
        row["rounds"] = round(row["rounds"] / row["trials"], 2)
    return table


def main() -> None:
    from pytest_xfperf.baselines import rule

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", nargs="+")
    parser.add_argument("--pool", default="1,3", help="recordings the baseline pools")
    parser.add_argument("--json")
    args = parser.parse_args()
    out: dict[str, Any] = {"raw": args.raw}
    for pooled in (int(k) for k in args.pool.split(",")):
        for name, settles in (("estimate", settles_by_estimate),
                              ("any-clearance", settles_by_any_clearance),
                              ("shipped", rule.could_change)):
            table = replay(args.raw, pooled, settles)
            out[f"k={pooled} {name}"] = table
            print(f"k={pooled}, {name}:")
            for level in LEVELS:
                if level in table:
                    row = table[level]
                    counts = ", ".join(f"{v} {int(row[v])}" for v in
                                       ("regressed", "pass", "unstable", "improved") if v in row)
                    print(f"  {level}: {int(row['trials'])} trials: {counts}; "
                          f"mean rounds {row['rounds']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
