"""The history as one pytest session uses it: each case's series read once, for the drift
test of its result, and the run appended at the session's end."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_xfperf.history.db import History, HistoryError, SeriesPoint
from pytest_xfperf.history.trend import DEFAULT_TREND

if TYPE_CHECKING:
    from pytest_xfperf.result import Result


class RunHistory:
    def __init__(self, path: Path, machine_key: str, note: Callable[[str], None]) -> None:
        self.path = path
        self.machine_key = machine_key
        self._note = note
        self._series: dict[str, list[SeriesPoint]] = {}
        if path.exists():
            History(path, create=False).close()  # a foreign or newer file stops the run here

    def findings(self, result: Result) -> list[dict[str, Any]]:
        """The drift test's findings on each block metric of ``result``, this run appended to
        the stored series; none without timing."""
        if not result.timing:
            return []
        from pytest_xfperf.history.drift import finding
        from pytest_xfperf.history.record import summaries

        case_id = result.case.id
        if case_id not in self._series:
            self._series[case_id] = self._read(case_id)
        summary = summaries(result.as_json())
        found = [finding(self._series[case_id], summary, metric)
                 for metric in summary if metric != "stats"]
        return [f for f in found if f is not None]

    def _read(self, case_id: str) -> list[SeriesPoint]:
        if not self.path.exists():
            return []
        try:
            with History(self.path, create=False) as db:
                return db.series(case_id, self.machine_key, DEFAULT_TREND.window - 1)
        except HistoryError as exc:
            self._note(f"the run history was not read: {exc}")
            return []

    def append(self, report: Mapping[str, Any]) -> None:
        """This run, from its JSON report's form (as `history import` would add it)."""
        from pytest_xfperf.history.record import rows_of_report

        run, rows = rows_of_report(report, source="run")
        try:
            with History(self.path) as db:
                db.append(run, rows)
        except HistoryError as exc:
            self._note(f"this run was not added to the history: {exc}")
