"""What the history keeps of a run: built from the JSON report's form of it, so that a live
run and ``history import`` of a report write the same rows."""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_xfperf.history.db import CaseRow, RunRow

# CI systems check out a detached commit; their variables name the branch the run is for.
COMMIT_VARIABLES = ("GITHUB_SHA", "CI_COMMIT_SHA", "BUILDKITE_COMMIT", "GIT_COMMIT")
BRANCH_VARIABLES = ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME",
                    "BUILDKITE_BRANCH", "GIT_BRANCH")


def git_revision(root: Path) -> dict[str, str | None]:
    """The commit and branch of the run: from the CI's variables, else from git in ``root``;
    None for what neither knows (not a checkout, no git)."""
    commit = next((os.environ[v] for v in COMMIT_VARIABLES if os.environ.get(v)), None)
    branch = next((os.environ[v] for v in BRANCH_VARIABLES if os.environ.get(v)), None)

    def ask(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        out = done.stdout.strip()
        return out if done.returncode == 0 and out and out != "HEAD" else None

    return {"commit": commit or ask("rev-parse", "HEAD"),
            "branch": branch or ask("rev-parse", "--abbrev-ref", "HEAD")}


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def block_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """A block record's level in both views (the drift test's input) and its block medians."""
    case_ms = [float(x) for x in record.get("case_ms", [])]
    yard_ms = [float(x) for x in record.get("yardstick_ms", [])]
    out: dict[str, Any] = {"own": round(_median(case_ms), 6), "clock": record.get("clock"),
                           "blocks": len(case_ms), "case_ms": [round(x, 5) for x in case_ms]}
    if record.get("pacing"):
        out["pacing"] = record["pacing"]  # which spread its shifts stand for (history spreads)
    if yard_ms and len(yard_ms) == len(case_ms):
        out.update(normalized=round(_median([c / y for c, y in zip(case_ms, yard_ms,
                                                                   strict=True)]), 6),
                   yardstick=record.get("yardstick"), yardstick_ms=[round(x, 5)
                                                                     for x in yard_ms])
    return out


def summaries(case: Mapping[str, Any]) -> dict[str, Any]:
    """A report case's block records summarized per metric (what the drift test reads), and
    its latency stats."""
    metric = str(case.get("timing_metric") or "p50_ms")
    records: dict[str, Mapping[str, Any]] = {}
    if isinstance(case.get("timing"), Mapping) and case["timing"].get("case_ms"):
        records[metric] = case["timing"]
    for name, record in (case.get("more_timing") or {}).items():
        if isinstance(record, Mapping) and record.get("case_ms"):
            records[str(name)] = record
    out: dict[str, Any] = {name: block_summary(r) for name, r in records.items()}
    stats = case.get("stats") or {}
    if stats:
        out["stats"] = {k: stats[k] for k in ("p50_ms", "p99_ms", "mean_ms", "rounds")
                        if k in stats}
    return out


def case_row(case: Mapping[str, Any]) -> CaseRow:
    """One report case as a history row: its gated figures and its ``summaries``."""
    seconds = case.get("seconds")
    return CaseRow(case_id=str(case["id"]), verdict=str(case.get("verdict", "")),
                   timing_metric=str(case.get("timing_metric") or "p50_ms"),
                   metrics={k: float(v) for k, v in _metrics(case).items()},
                   summary=summaries(case),
                   seconds=float(seconds) if isinstance(seconds, (int, float)) else None)


def _metrics(case: Mapping[str, Any]) -> dict[str, Any]:
    """The case's gated figures, as ``Result.metrics`` gives them, from its JSON form."""
    from pytest_xfperf.result import Result

    values = Result.from_json(dict(case)).metrics()
    return {k: v for k, v in values.items() if isinstance(v, (int, float))}


def run_row(report: Mapping[str, Any], source: str, digest: str | None = None,
            started: str | None = None) -> RunRow:
    """The run's row; ``started`` stands in for a report that does not say when it ran
    (schema 1)."""
    machine = report.get("machine") or {}
    git = report.get("git") or {}
    settings = {"timing": report.get("timing"), "gate_policy": report.get("gate_policy"),
                "tolerances": report.get("tolerances"), "shard": report.get("shard")}
    return RunRow(started=str(report.get("created") or started
                              or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
                  machine_key=str(machine.get("key", "unknown")), machine=machine,
                  git_commit=git.get("commit"), git_branch=git.get("branch"),
                  versions=report.get("versions") or {}, settings=settings, source=source,
                  digest=digest)


def rows_of_report(report: Mapping[str, Any], source: str, digest: str | None = None,
                   started: str | None = None) -> tuple[RunRow, list[CaseRow]]:
    return run_row(report, source, digest, started), [case_row(c) for c in report["cases"]]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
