"""``python -m pytest_xfperf history import|show``: load JSON reports, print a case's series."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_xfperf.history.db import History, HistoryError, SeriesPoint
from pytest_xfperf.history.drift import describe, finding
from pytest_xfperf.history.trend import DEFAULT_TREND

DEFAULT_HISTORY = Path(".xfperf/history.db")


def history_path(given: Path | None, root: Path) -> Path:
    """--history, else ``[tool.xfperf] history`` of the project here, else the default."""
    if given is not None:
        return given
    from pytest_xfperf.settings import HISTORY_OFF, read_pyproject

    configured = read_pyproject(root).get("history")
    if isinstance(configured, str) and configured.strip().lower() not in ("", *HISTORY_OFF):
        return root / configured
    return root / DEFAULT_HISTORY


def import_reports(db_path: Path, reports: Sequence[Path], out: Any) -> int:
    import time

    from pytest_xfperf.history.record import file_digest, rows_of_report
    from pytest_xfperf.report.json_report import read_report

    loaded = []
    for path in reports:  # every file is read before anything is written
        report = read_report(path)
        try:
            written = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
            loaded.append((path, rows_of_report(report, f"import:{path.name}",
                                                file_digest(path), written)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: a case of this report cannot be read ({exc!r}); it "
                             "was written by --xfperf-report?") from None
    with History(db_path) as db:
        for path, (run, rows) in loaded:
            run_id = db.append(run, rows)
            out.write(f"{path}: already in {db_path}, skipped\n" if run_id is None else
                      f"{path}: {len(rows)} case(s) added to {db_path} as run {run_id}\n")
    return 0


def _value(point: SeriesPoint, metric: str, view: str) -> str:
    record = point.summary.get(metric)
    value = record.get(view) if isinstance(record, dict) else None
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def show(db_path: Path, pattern: str, machine: str | None, metric: str | None,
         plot: Path | None, out: Any) -> int:
    with History(db_path, create=False) as db:
        case_ids = db.case_ids(pattern)
        if not case_ids:
            raise ValueError(f"{db_path}: no case matches {pattern!r} (cases are ids like "
                             "model/backend/precision/shape; globs work)")
        series = []
        for case_id in case_ids:
            for key in db.machines_of(case_id):
                if machine is None or key == machine:
                    series.append((case_id, key, db.series(case_id, key)))
    if not series:
        raise ValueError(f"{db_path}: {pattern!r} has no runs on machine {machine!r}")
    drawn = []
    for case_id, key, points in series:
        name = metric or _metric_of(points)
        out.write(f"{case_id} on {key}: {len(points)} run(s), {name} (ms: own time; "
                  "normalized: per yardstick)\n")
        rows = [["run", "started", "commit", "branch", "verdict", name, "normalized"]]
        rows += [[str(p.run_id), p.started[:19], (p.git_commit or "-")[:10],
                  p.git_branch or "-", p.verdict, _value(p, name, "own"),
                  _value(p, name, "normalized")] for p in points]
        _table(rows, out)
        found = finding(points[:-1], points[-1].summary, name) if points else None
        out.write(("drift test: " + describe(found) if found else
                   f"drift test: too few comparable runs (it needs "
                   f"{2 * DEFAULT_TREND.min_segment})") + "\n\n")
        drawn.append((f"{case_id} ({key})", points, name, found))
    if plot is not None:
        from pytest_xfperf.history.plot import plot_series

        plot_series(drawn, plot)
        out.write(f"plot written to {plot}\n")
    return 0


def _metric_of(points: Sequence[SeriesPoint]) -> str:
    for point in reversed(points):
        for name, record in point.summary.items():
            if name != "stats" and isinstance(record, dict):
                return name
    return "p50_ms"


def _table(rows: list[list[str]], out: Any) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                  + "\n")


__all__ = ["HistoryError", "history_path", "import_reports", "show"]
