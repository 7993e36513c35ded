"""The machine-readable report (``--xfperf-report PATH``)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pytest_xfperf.baselines.machine import machine_info
from pytest_xfperf.fileio import atomic_write_bytes
from pytest_xfperf.metrics import METRICS, Verdict
from pytest_xfperf.report.tables import speedups
from pytest_xfperf.result import Result
from pytest_xfperf.settings import Settings
from pytest_xfperf.versions import library_versions

# 2: "schema", "created", "git", "shard" and each case's "seconds" and "trend" (reports
# without "schema" are 1). ``report merge`` reads only its own schema.
REPORT_SCHEMA = 2


def _finite(value: Any) -> Any:
    """JSON has no NaN: a failed accuracy metric is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def build_report(results: Sequence[Result], settings: Settings,
                 baselines: Mapping[str, Any] | None = None,
                 notes: Sequence[str] = (), facts: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    ups = speedups(results)
    cases = []
    for r in results:
        entry = r.as_json()
        entry["speedup_vs_torch"] = ups.get(r.case.id)
        entry["failure_message"] = r.failure_message() if r.failed else None
        if r.verdict == Verdict.REGRESSED and baselines and r.case.id in baselines:
            # What the regression was judged against: the report's distribution plot.
            entry["baseline_samples_ms"] = baselines[r.case.id].get("samples_ms", [])
        cases.append(entry)
    report: dict[str, Any] = _finite({
        "schema": REPORT_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(facts or {}),
        "machine": machine_info(), "versions": library_versions(),
        "timing": {**asdict(settings.timing),
                   "mode": "wall clock per synchronized call (perf_counter), host inputs "
                           "pre-bound outside the timed region; on GPUs the gate's clock is "
                           "device time by CUDA events"},
        "gate_policy": asdict(settings.gate.policy),
        "metrics": {m.name: {"unit": m.unit, "direction": m.direction, "label": m.label,
                             "tolerance": m.tolerance} for m in METRICS.values()},
        "tolerances": asdict(settings.gate.tolerances),
        "prices": dict(settings.reports.prices),
        "notes": list(notes),
        "cases": cases,
    })
    return report


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """A document of ``build_report``, written atomically."""
    text = json.dumps(report, indent=1, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def read_report(path: Path) -> dict[str, Any]:
    """A JSON report written by ``--xfperf-report``; ValueError names the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
            raise ValueError("no 'cases' list")
        return data
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable xfperf JSON report (--xfperf-report): "
                         f"{exc}") from None
