"""The history file under concurrent writer processes, and a writer killed with SIGKILL in the
middle of its writes (benchmarks/history_concurrency.py measures the same at 8 x 200)."""

import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

from pytest_xfperf.history.db import CaseRow, History, RunRow

CASES = 40


def run_row(key: str) -> RunRow:
    return RunRow(started="2026-12-01T00:00:00Z", machine_key=key, machine={"key": key},
                  git_commit=None, git_branch=None, versions={}, settings={}, source="test")


def case_rows(prefix: str, count: int, value: float) -> list[CaseRow]:
    return [CaseRow(case_id=f"{prefix}{j}", verdict="pass", timing_metric="p50_ms",
                    metrics={"p50_ms": value}, summary={"p50_ms": {"own": value}},
                    seconds=1.0) for j in range(count)]


def write_runs(path: str, index: int, runs: int, start) -> None:
    start.wait()
    with History(Path(path)) as db:
        for i in range(runs):
            db.append(run_row(f"w{index}"), case_rows(f"w{index}-", 1, float(i)))


def write_forever(path: str) -> None:
    with History(Path(path)) as db:
        i = 0
        while True:
            db.append(run_row("k"), case_rows("c", CASES, float(i)))
            i += 1


def test_concurrent_writers_lose_nothing(tmp_path: Path):
    path = tmp_path / "history.db"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    writers = [context.Process(target=write_runs, args=(str(path), i, 50, start))
               for i in range(4)]
    for proc in writers:
        proc.start()
    start.set()
    for proc in writers:
        proc.join(timeout=120)
    assert [p.exitcode for p in writers] == [0] * 4
    with History(path, create=False) as db:
        assert db.count() == (200, 200)
        assert [len(db.series(f"w{i}-0", f"w{i}")) for i in range(4)] == [50] * 4


def test_a_writer_killed_mid_write_leaves_a_readable_file_of_whole_runs(tmp_path: Path):
    path = tmp_path / "history.db"
    History(path).close()
    context = multiprocessing.get_context("spawn")
    for pause in (1.5, 2.2, 2.9):
        proc = context.Process(target=write_forever, args=(str(path),))
        proc.start()
        time.sleep(pause)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        assert proc.exitcode == -signal.SIGKILL
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            counts = {n for (n,) in raw.execute(
                "SELECT COUNT(*) FROM results GROUP BY run_id")}
        raw.close()
        assert counts <= {CASES}  # every run whole, or not there
    with History(path, create=False) as db:
        runs, rows = db.count()
    assert runs > 0 and rows == runs * CASES
