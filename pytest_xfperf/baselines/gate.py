"""The verdict: does a case's result fall outside its baseline's tolerances?"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_xfperf.settings import Tolerances

# metric -> (tolerance field, direction, unit); direction +1: higher is better.
GATED: dict[str, tuple[str, int, str]] = {
    "p50_ms": ("p50", -1, "ms"),
    "p99_ms": ("p99", -1, "ms"),
    "throughput": ("throughput", +1, "/s"),
    "memory_mb": ("memory", -1, "MB"),
    "cosine": ("accuracy", +1, ""),
    "retrieval": ("accuracy", +1, ""),
}
ABSOLUTE_METRICS = {"cosine", "retrieval"}  # compared by absolute drop, not ratio
# Memory deltas of a few MB are allocator noise; below this growth nothing is flagged.
MEMORY_SLACK_MB = 16.0


@dataclass
class GateOutcome:
    regressions: list[str] = field(default_factory=list)
    improvements: list[str] = field(default_factory=list)
    deltas: dict[str, float] = field(default_factory=dict)  # metric -> relative change

    @property
    def passed(self) -> bool:
        return not self.regressions


def _fmt(value: float, unit: str) -> str:
    if not unit:
        return f"{value:.4f}"
    return f"{value:.3f} {unit}" if value < 100 else f"{value:.1f} {unit}"


def compare(
    current: Mapping[str, float],
    baseline: Mapping[str, Any],
    tolerances: Tolerances,
    timing: bool = True,
) -> GateOutcome:
    """Check every metric present in both; ``timing=False`` skips latency and throughput
    (a run with timing disabled measured only accuracy)."""
    outcome = GateOutcome()
    base_metrics = baseline.get("metrics", {})
    for metric, (tol_name, direction, unit) in GATED.items():
        if metric not in current or metric not in base_metrics:
            continue
        if not timing and metric in ("p50_ms", "p99_ms", "throughput", "memory_mb"):
            continue
        now, then = float(current[metric]), float(base_metrics[metric])
        tolerance = getattr(tolerances, tol_name)
        if metric in ABSOLUTE_METRICS:
            change = now - then
            outcome.deltas[metric] = change
            worse = direction * change < -tolerance
            detail = f"{metric} {then:.4f} -> {now:.4f} (allowed drop {tolerance})"
        else:
            if then <= 0:
                continue
            change = now / then - 1.0
            outcome.deltas[metric] = change
            worse = direction * change < -tolerance
            if metric == "memory_mb" and now - then < MEMORY_SLACK_MB:
                worse = False
            detail = (f"{metric} baseline {_fmt(then, unit)}, now {_fmt(now, unit)} "
                      f"({change:+.1%}, tolerance {tolerance:.0%})")
        if worse:
            outcome.regressions.append(detail)
        elif metric == "p50_ms" and -change > tolerance:  # a stale baseline: suggest updating
            outcome.improvements.append(detail)
    return outcome
