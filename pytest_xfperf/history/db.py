"""The run history: one SQLite file (the standard library's ``sqlite3``), one row per case per
run, written in one transaction per run.

Concurrency: SQLite's own file locks serialize writers (xdist controllers, parallel jobs on a
shared disk); a writer waits up to ``BUSY_SECONDS`` for the lock. The rollback journal (not
WAL) keeps the history one file, so a CI cache or artifact of that file is the whole history,
and a writer killed mid-transaction leaves a journal the next opener rolls back.

The file is checked before SQLite opens it for writing: a file that is not SQLite, or SQLite of
another application, or of a newer schema, is refused with a message and left as it was.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APPLICATION_ID = 0x78667066  # "xfpf" in the SQLite header: marks the file as ours
SCHEMA = 1
BUSY_SECONDS = 120.0
HEADER = b"SQLite format 3\x00"

# MIGRATIONS[i] takes a database at user_version i to i + 1 (0: a new file).
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started TEXT NOT NULL,
            machine_key TEXT NOT NULL,
            machine TEXT NOT NULL,
            git_commit TEXT,
            git_branch TEXT,
            versions TEXT NOT NULL,
            settings TEXT NOT NULL,
            source TEXT NOT NULL,
            digest TEXT UNIQUE
        )""",
        """CREATE TABLE results (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            case_id TEXT NOT NULL,
            machine_key TEXT NOT NULL,
            verdict TEXT NOT NULL,
            timing_metric TEXT NOT NULL,
            metrics TEXT NOT NULL,
            summary TEXT NOT NULL,
            seconds REAL
        )""",
        "CREATE INDEX results_series ON results (case_id, machine_key, run_id)",
    ),
]


class HistoryError(Exception):
    """A history file that cannot be used; the message names it and what to do."""


@dataclass(frozen=True)
class RunRow:
    started: str
    machine_key: str
    machine: Mapping[str, Any]
    git_commit: str | None
    git_branch: str | None
    versions: Mapping[str, Any]
    settings: Mapping[str, Any]
    source: str
    digest: str | None = None  # an imported report's sha256: importing it twice adds nothing


@dataclass(frozen=True)
class CaseRow:
    case_id: str
    verdict: str
    timing_metric: str
    metrics: Mapping[str, float]
    summary: Mapping[str, Any]  # block medians by metric (see history/record.py)
    seconds: float | None


@dataclass(frozen=True)
class SeriesPoint:
    """One run of one case, as the series of ``history show`` and the drift test read it."""

    run_id: int
    started: str
    git_commit: str | None
    git_branch: str | None
    verdict: str
    metrics: Mapping[str, float]
    summary: Mapping[str, Any]


def _check_header(path: Path) -> int:
    """The file's schema version from its header (0: empty, to be created), or HistoryError
    naming the problem; nothing is written."""
    try:
        with path.open("rb") as handle:
            head = handle.read(100)
    except OSError as exc:
        raise HistoryError(f"{path}: cannot read the history file: {exc}") from None
    if not head:
        return 0
    if len(head) < 100 or not head.startswith(HEADER):
        raise HistoryError(
            f"{path}: not an SQLite database, so not an xfperf history; it was left as it is. "
            "Move it aside, or point [tool.xfperf] history (--xfperf-history) elsewhere")
    version = int.from_bytes(head[60:64], "big")
    application = int.from_bytes(head[68:72], "big")
    # (0, 0) is also a database another process is creating now: _migrate tells them apart.
    if application != APPLICATION_ID and (application, version) != (0, 0):
        raise _foreign(path, application)
    if version > SCHEMA:
        raise HistoryError(
            f"{path}: history schema {version} was written by a newer pytest-xfperf (this one "
            f"reads up to {SCHEMA}); upgrade pytest-xfperf")
    return version


def _foreign(path: Path, application: int) -> HistoryError:
    return HistoryError(
        f"{path}: an SQLite database of another application (application_id "
        f"{application:#x}), not an xfperf history; it was left as it is. Point [tool.xfperf] "
        "history (--xfperf-history) at another file")


class History:
    """An open history file; use as a context manager, or call ``close``."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        if not path.exists():
            if not create:
                raise HistoryError(f"{path}: no such history file (a run with the history "
                                   "on writes it; `history import` loads JSON reports)")
            path.parent.mkdir(parents=True, exist_ok=True)
            version = 0
        else:
            version = _check_header(path)
        self._db = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
        try:
            if version < SCHEMA:
                self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise HistoryError(f"{path}: the history file is damaged ({exc}); move it aside "
                               "and start a new one") from None
        except HistoryError:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock is taken at the start, so two writers queue instead
        of failing halfway."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{self.path}: cannot write the history ({exc})") from None
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction() as db:
            # Read again under the lock: another process may have migrated meanwhile.
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            application = int(db.execute("PRAGMA application_id").fetchone()[0])
            if version == 0 and db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                raise _foreign(self.path, application)  # tables, but none of ours
            for step in MIGRATIONS[version:SCHEMA]:
                for statement in step:
                    db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA}")

    # -- writing ------------------------------------------------------------------------
    def append(self, run: RunRow, cases: Sequence[CaseRow]) -> int | None:
        """One run and its cases, in one transaction; the run's id, or None where a run of the
        same digest (an imported report) is there already."""
        try:
            with self._transaction() as db:
                if run.digest is not None and db.execute(
                        "SELECT 1 FROM runs WHERE digest = ?", (run.digest,)).fetchone():
                    return None
                cursor = db.execute(
                    "INSERT INTO runs (started, machine_key, machine, git_commit, git_branch, "
                    "versions, settings, source, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run.started, run.machine_key, _json(run.machine), run.git_commit,
                     run.git_branch, _json(run.versions), _json(run.settings), run.source,
                     run.digest))
                run_id = int(cursor.lastrowid or 0)
                db.executemany(
                    "INSERT INTO results (run_id, case_id, machine_key, verdict, timing_metric, "
                    "metrics, summary, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(run_id, c.case_id, run.machine_key, c.verdict, c.timing_metric,
                      _json(c.metrics), _json(c.summary), c.seconds) for c in cases])
                return run_id
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{self.path}: cannot write the history ({exc})") from None

    # -- reading ------------------------------------------------------------------------
    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._db.execute(sql, args))
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{self.path}: cannot read the history ({exc}); move it aside "
                               "and start a new one if it is damaged") from None

    def series(self, case_id: str, machine_key: str, limit: int | None = None
               ) -> list[SeriesPoint]:
        """The case's runs on that machine, oldest first (the last ``limit`` of them)."""
        rows = self._query(
            "SELECT r.id, r.started, r.git_commit, r.git_branch, x.verdict, x.metrics, "
            "x.summary FROM results x JOIN runs r ON r.id = x.run_id "
            "WHERE x.case_id = ? AND x.machine_key = ? ORDER BY r.id DESC LIMIT ?",
            (case_id, machine_key, -1 if limit is None else limit))
        return [SeriesPoint(run_id=int(r[0]), started=str(r[1]), git_commit=r[2],
                            git_branch=r[3], verdict=str(r[4]), metrics=json.loads(r[5]),
                            summary=json.loads(r[6])) for r in reversed(rows)]

    def machines_of(self, case_id: str) -> list[str]:
        return [str(r[0]) for r in self._query(
            "SELECT DISTINCT machine_key FROM results WHERE case_id = ? ORDER BY machine_key",
            (case_id,))]

    def case_ids(self, pattern: str = "*") -> list[str]:
        return [str(r[0]) for r in self._query(
            "SELECT DISTINCT case_id FROM results WHERE case_id GLOB ? ORDER BY case_id",
            (pattern,))]

    def costs(self) -> dict[str, float]:
        """Each case's median recorded seconds over every run and machine (sharding)."""
        by_case: dict[str, list[float]] = {}
        for case_id, seconds in self._query(
                "SELECT case_id, seconds FROM results WHERE seconds IS NOT NULL"):
            by_case.setdefault(str(case_id), []).append(float(seconds))
        return {case_id: statistics.median_high(v) for case_id, v in by_case.items()}

    def count(self) -> tuple[int, int]:
        """Runs and case rows held."""
        runs = self._query("SELECT COUNT(*) FROM runs")[0][0]
        rows = self._query("SELECT COUNT(*) FROM results")[0][0]
        return int(runs), int(rows)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
