"""The history under concurrent writers, and a writer killed mid-write.

WRITERS processes each append ROWS runs of one case to one history file at once, through
`History.append` (the call a run's end makes); every row must be there afterwards. Then a
writer appending large runs in a loop is killed with SIGKILL at a random moment, KILLS times;
after each kill the file must pass SQLite's integrity check, open as a history, and hold only
whole runs (each run's case count as written).

    python benchmarks/history_concurrency.py [--writers 8] [--rows 200] [--kills 20]
                                             [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CASES_PER_KILLED_RUN = 50


def _run_row(key: str) -> Any:
    from pytest_xfperf.history.db import RunRow

    return RunRow(started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), machine_key=key,
                  machine={"key": key}, git_commit=None, git_branch=None, versions={},
                  settings={}, source="benchmark")


def _case(case_id: str, value: float) -> Any:
    from pytest_xfperf.history.db import CaseRow

    return CaseRow(case_id=case_id, verdict="pass", timing_metric="p50_ms",
                   metrics={"p50_ms": value},
                   summary={"p50_ms": {"own": value, "clock": "wall", "blocks": 8,
                                       "case_ms": [value] * 8}}, seconds=1.0)


def _writer(path: str, index: int, rows: int, start: Any) -> None:
    from pytest_xfperf.history.db import History

    start.wait()
    with History(Path(path)) as db:
        for i in range(rows):
            db.append(_run_row(f"writer-{index}"), [_case(f"case-{index}", float(i))])


def _endless(path: str) -> None:
    from pytest_xfperf.history.db import History

    with History(Path(path)) as db:
        i = 0
        while True:
            db.append(_run_row("killed"), [_case(f"c{j}", float(i)) for j in
                                           range(CASES_PER_KILLED_RUN)])
            i += 1


def concurrent(writers: int, rows: int) -> dict[str, Any]:
    from pytest_xfperf.history.db import History

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        context = multiprocessing.get_context("spawn")
        start = context.Event()
        procs = [context.Process(target=_writer, args=(str(path), i, rows, start))
                 for i in range(writers)]
        for proc in procs:
            proc.start()
        time.sleep(1.0)  # every writer imported and waiting
        began = time.perf_counter()
        start.set()
        for proc in procs:
            proc.join()
        seconds = time.perf_counter() - began
        with History(path, create=False) as db:
            runs, cases = db.count()
            per_writer = [len(db.series(f"case-{i}", f"writer-{i}")) for i in range(writers)]
        ok = all(p.exitcode == 0 for p in procs)
    return {"writers": writers, "rows_each": rows, "runs": runs, "case_rows": cases,
            "per_writer": per_writer, "expected": writers * rows, "writers_ok": ok,
            "lost": writers * rows - cases, "seconds": round(seconds, 2)}


def killed(kills: int) -> dict[str, Any]:
    from pytest_xfperf.history.db import History

    rng = random.Random(0)
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        History(path).close()
        context = multiprocessing.get_context("spawn")
        for _ in range(kills):
            proc = context.Process(target=_endless, args=(str(path),))
            proc.start()
            time.sleep(1.0 + rng.random())  # past start-up, somewhere inside a write
            os.kill(proc.pid or 0, signal.SIGKILL)
            proc.join()
            journal = path.with_name(path.name + "-journal").exists()
            with sqlite3.connect(path) as raw:  # rolls a hot journal back, as any opener does
                integrity = raw.execute("PRAGMA integrity_check").fetchone()[0]
                partial = raw.execute(
                    "SELECT COUNT(*) FROM (SELECT run_id FROM results GROUP BY run_id "
                    f"HAVING COUNT(*) != {CASES_PER_KILLED_RUN})").fetchone()[0]
            raw.close()
            with History(path, create=False) as db:
                runs, rows = db.count()
            outcomes.append({"journal_left": journal, "integrity": integrity,
                             "partial_runs": partial, "runs": runs, "rows": rows})
    return {"kills": kills, "all_readable": all(o["integrity"] == "ok" for o in outcomes),
            "partial_runs": sum(o["partial_runs"] for o in outcomes),
            "kills_mid_transaction": sum(o["journal_left"] for o in outcomes),
            "final_runs": outcomes[-1]["runs"] if outcomes else 0, "each": outcomes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    from pytest_xfperf.baselines.machine import machine_info

    result = {"machine": machine_info(), "command": " ".join(sys.argv),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "concurrent": concurrent(args.writers, args.rows), "killed": killed(args.kills)}
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}
                     | {"killed": {k: v for k, v in result["killed"].items() if k != "each"}},
                     indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
