"""Time of `python -m pytest_xfperf report merge` on 4 reports of 50 cases each.

The reports are made from a real JSON report (--from): its cases are copied under 50 model
names, and the copies saved as the reports of 4 machines (their keys renamed), so the merged
report holds 4 machines side by side over 50 cases. The merge, Markdown and HTML included, is
run ROUNDS times as a user runs it (a new interpreter each time); the wall times are printed.

    python benchmarks/merge_speed.py --from REPORT.json [--rounds 5] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MACHINES = ("cpu-fleet-a", "cpu-fleet-b", "gpu-fleet-c", "gpu-fleet-d")


def make_reports(source: dict, directory: Path, cases: int) -> list[Path]:
    template = source["cases"]
    paths = []
    for key in MACHINES:
        report = json.loads(json.dumps(source))
        report["schema"] = 2
        report["machine"]["key"] = key
        report["cases"] = []
        for i in range(cases):
            case = json.loads(json.dumps(template[i % len(template)]))
            case["model"] = f"model{i:02d}"
            case["id"] = "/".join([case["model"], *case["id"].split("/")[1:]])
            report["cases"].append(case)
        path = directory / f"{key}.json"
        path.write_text(json.dumps(report))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", required=True)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    from pytest_xfperf.baselines.machine import machine_info

    source = json.loads(Path(args.source).read_text())
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        paths = make_reports(source, directory, args.cases)
        for _ in range(args.rounds):
            began = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "pytest_xfperf", "report", "merge",
                                   *map(str, paths), "--markdown", str(directory / "m.md"),
                                   "--html", str(directory / "m.html")],
                                  capture_output=True, text=True)
            walls.append(round(time.perf_counter() - began, 3))
            if done.returncode not in (0, 1):
                raise SystemExit(done.stderr)
        sizes = {p.name: p.stat().st_size for p in (directory / "m.md", directory / "m.html")}
        status = done.stdout.strip().splitlines()[-1]
    result = {"machine": machine_info(), "command": " ".join(sys.argv),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "reports": len(MACHINES), "cases_each": args.cases, "wall_s": walls,
              "median_s": statistics.median(walls), "output_bytes": sizes, "status": status}
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
