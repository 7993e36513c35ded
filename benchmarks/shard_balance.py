"""Balance of `--xfperf-shard K/N` on the shipped suite, through the plugin's own selection.

For each N, pytest collects the shipped suite (`pytest --xfperf tests/perf`, the matrix of
[tool.xfperf]) once per shard K with `--xfperf-shard K/N --collect-only`; the cases each shard
selects are summed at their recorded seconds in this machine's baseline file (a case skipped at
collection, or with no entry, costs 0). Every case must be selected exactly once over the N
shards; the spread is the costliest shard over the cheapest, less one. With `--run`, each
shard of N=2 is also run and its wall time measured.

    python benchmarks/shard_balance.py [--counts 2,3,4] [--run] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE = re.compile(r"^tests/perf/test_inference\.py::test_inference\[(.+)\]$")


def selected(spec: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "--xfperf", "tests/perf",
                           "--collect-only", "-q", "-p", "no:cacheprovider",
                           "--xfperf-shard", spec], cwd=ROOT, capture_output=True, text=True)
    if done.returncode not in (0, 5):  # 5: this shard selected nothing
        raise SystemExit(f"collection of shard {spec} failed:\n{done.stdout}\n{done.stderr}")
    return [m.group(1) for line in done.stdout.splitlines() if (m := NODE.match(line.strip()))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="2,3,4")
    parser.add_argument("--run", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pytest_xfperf.baselines.machine import machine_info

    machine = machine_info()
    baseline = json.loads((ROOT / "baselines" / f"{machine['key']}.json").read_text())
    costs = {k: float(v.get("seconds", 0.0)) for k, v in baseline["cases"].items()}
    everything = selected("1/1")
    out: dict[str, Any] = {"machine": machine, "command": " ".join(sys.argv),
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "cases": len(everything), "recorded_s": round(
                               sum(costs.get(c, 0.0) for c in everything), 1), "shards": {}}
    for count in (int(c) for c in args.counts.split(",")):
        shards = [selected(f"{k}/{count}") for k in range(1, count + 1)]
        flat = [c for shard in shards for c in shard]
        loads = [round(sum(costs.get(c, 0.0) for c in shard), 1) for shard in shards]
        row = {"cases": [len(s) for s in shards], "recorded_s": loads,
               "spread": round(max(loads) / min(loads) - 1, 3) if min(loads) > 0 else None,
               "each_case_once": sorted(flat) == sorted(everything)}
        if args.run and count == 2:
            walls = []
            for k in (1, 2):
                began = time.perf_counter()
                subprocess.run([sys.executable, "-m", "pytest", "--xfperf", "tests/perf", "-q",
                                "-p", "no:cacheprovider", "--xfperf-history", "off",
                                "--xfperf-shard", f"{k}/2"], cwd=ROOT, capture_output=True)
                walls.append(round(time.perf_counter() - began, 1))
            row["wall_s"] = walls
        out["shards"][str(count)] = row
        print(count, json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
