"""The verdict: does a case's result fall outside its baseline's tolerances?

Latency (p50) and throughput go through the significance-and-confirmation rule of
``decision.py`` when both sides have timing samples; p99, memory and accuracy keep simple
thresholds (p99 of a few dozen samples has no useful interval; the others are not noisy).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_xfperf.baselines import decision
from pytest_xfperf.measure.stats import percentile
from pytest_xfperf.settings import Tolerances

# metric -> (tolerance field, direction, unit); direction +1: higher is better.
GATED: dict[str, tuple[str, int, str]] = {
    "p50_ms": ("p50", -1, "ms"),
    "p99_ms": ("p99", -1, "ms"),
    "throughput": ("throughput", +1, "/s"),
    # Serving scenarios: offline tokens/s, and the server's highest rate meeting its p99 bound.
    "tokens_per_s": ("throughput", +1, "tok/s"),
    "max_rate": ("throughput", +1, "req/s"),
    "memory_mb": ("memory", -1, "MB"),
    "gpu_memory_mb": ("memory", -1, "MB"),
    "cosine": ("accuracy", +1, ""),
    "retrieval": ("accuracy", +1, ""),
}
ABSOLUTE_METRICS = {"cosine", "retrieval"}  # compared by absolute drop, not ratio
# Growth below these is not flagged. GPU memory is exact to a few MB. Host memory is the
# growth of the process's peak RSS over a case, which depends on what earlier cases and builds
# left in the allocators: on the CPU suite the same case measured 0.7 MB in one run and 89 MB
# in the next (bert-base INT8), so only growth past 128 MB is a signal there.
MEMORY_SLACK_MB = {"memory_mb": 128.0, "gpu_memory_mb": 16.0}


@dataclass
class GateOutcome:
    regressions: list[str] = field(default_factory=list)
    improvements: list[str] = field(default_factory=list)
    unstable: list[str] = field(default_factory=list)
    # Timing estimates past the tolerance whose interval reaches inside it: passed, reported.
    near_tolerance: list[str] = field(default_factory=list)
    deltas: dict[str, float] = field(default_factory=dict)  # metric -> relative change
    decisions: dict[str, decision.TimingDecision] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.regressions


def _fmt(value: float, unit: str) -> str:
    if not unit:
        return f"{value:.4f}"
    return f"{value:.3f} {unit}" if value < 100 else f"{value:.1f} {unit}"


# Timing metrics decided on samples: metric -> statistic of the latency samples compared.
# The first quartile, for both: on a shared host, interference only ever adds time, so q25
# moves least with the neighbours and most with the code (benchmarks/gate_power.py measured
# it against the median: same false-alarm rate, far higher detection; see docs).
SAMPLED = {"p50_ms": "q25", "throughput": "q25"}


def paired_record(baseline: Mapping[str, Any]) -> decision.Blocks | None:
    """The baseline's interleaved record of the case and its reference, if it has one."""
    paired = baseline.get("paired")
    if not isinstance(paired, Mapping):
        return None
    blocks = decision.Blocks(paired.get("case_ms") or [], paired.get("reference_ms") or [])
    return blocks if blocks.usable else None


def _sampled(
    metric: str,
    outcome: GateOutcome,
    current_value: float,
    samples: Sequence[float],
    baseline: Mapping[str, Any],
    reference_baseline: Sequence[float] | None,
    reference_current: Sequence[float] | None,
    tolerance: float,
    confirm: Callable[[int], decision.Blocks] | None,
) -> None:
    then = list(baseline.get("samples_ms") or [])
    paired = None
    if len(then) < decision.MIN_SAMPLES:
        # An older baseline: its stored figure against this run's (throughput inverted, so
        # that the ratio reads as a latency ratio like the sampled rule's).
        value, figure = float(baseline["metrics"][metric]), float(current_value)
        then = [value if metric == "p50_ms" else 1.0 / value]
        samples = [figure if metric == "p50_ms" else 1.0 / figure]
        confirm = None  # nothing to re-measure against: the old file holds one figure
    else:
        paired = paired_record(baseline)
    base = decision.Measurement(then, reference_baseline)
    now = decision.Measurement(samples, reference_current)
    result = decision.decide(now, base, tolerance, confirm, SAMPLED[metric], paired)
    outcome.decisions[metric] = result
    final = result.own or result.confirmation or result.first
    change = final.ratio - 1 if metric == "p50_ms" else 1 / final.ratio - 1
    outcome.deltas[metric] = change
    then_value = float(baseline["metrics"][metric])
    now_value = float(current_value)  # this run's figure (the ratios below are the decision)
    unit = "ms" if metric == "p50_ms" else "/s"
    measure = f"{SAMPLED[metric]} latency"
    detail = (f"{metric} baseline {_fmt(then_value, unit)}, now {_fmt(now_value, unit)}: "
              f"{measure} {result.first.describe()}")
    if result.confirmation is not None:
        rounds = (f" ({result.confirm_rounds} rounds)" if result.confirm_rounds > 1 else "")
        detail += f"; confirmation{rounds} {result.confirmation.describe()}"
    detail += f" (tolerance {tolerance:.0%})"
    for note in result.notes:
        if note not in outcome.notes:
            outcome.notes.append(note)
    if result.outcome == decision.REGRESSED:
        outcome.regressions.append(detail)
    elif result.outcome == decision.UNSTABLE:
        outcome.unstable.append(detail)
    elif result.outcome == decision.IMPROVED:
        outcome.improvements.append(detail)
    elif final.ratio > 1 + tolerance:
        outcome.near_tolerance.append(detail)


def compare(
    current: Mapping[str, float],
    baseline: Mapping[str, Any],
    tolerances: Tolerances,
    timing: bool = True,
    samples_ms: Sequence[float] | None = None,
    confirm: Callable[[int], decision.Blocks] | None = None,
    reference_baseline: Sequence[float] | None = None,
    reference_current: Sequence[float] | None = None,
) -> GateOutcome:
    """Check every metric present in both; ``timing=False`` skips latency and throughput
    (a run with timing disabled measured only accuracy).

    With ``samples_ms`` (this run's latency samples), p50 and throughput are decided by the
    sample rule; ``confirm(k)`` measures round ``k`` of a re-measure of a first
    measurement that was not a clear pass (each round measured once, shared by both; the
    baseline's ``paired`` record is what a re-measure is compared with);
    ``reference_baseline`` and ``reference_current`` hold the reference backend's samples of
    the baseline and of this run (same model and shape): with both, every ratio is taken of
    speeds normalized by the reference, so drift of the whole machine cancels.
    """
    outcome = GateOutcome()
    base_metrics = baseline.get("metrics", {})
    rounds: list[decision.Blocks] = []

    def confirm_round(k: int) -> decision.Blocks:
        """Round ``k`` of the re-measure, measured once and shared by every metric."""
        assert confirm is not None
        while len(rounds) <= k:
            rounds.append(confirm(len(rounds)))
        return rounds[k]

    for metric, (tol_name, direction, unit) in GATED.items():
        if metric not in current or metric not in base_metrics:
            continue
        if not timing and metric in ("p50_ms", "p99_ms", "throughput", "memory_mb",
                                     "gpu_memory_mb", "tokens_per_s", "max_rate"):
            continue
        if samples_ms and metric in SAMPLED:
            _sampled(metric, outcome, current[metric], samples_ms, baseline, reference_baseline,
                     reference_current, getattr(tolerances, tol_name),
                     confirm_round if confirm else None)
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
            if metric in MEMORY_SLACK_MB and now - then < MEMORY_SLACK_MB[metric]:
                worse = False
            detail = (f"{metric} baseline {_fmt(then, unit)}, now {_fmt(now, unit)} "
                      f"({change:+.1%}, tolerance {tolerance:.0%})")
        if worse and metric == "p99_ms" and confirm is not None:
            # A tail is where a passing neighbour shows first: re-measured like p50 (one
            # shared confirmation), it fails only if the fresh samples' p99 is past it too.
            again = percentile(sorted(confirm_round(0).pooled().samples), 99)
            worse = again / then - 1.0 > tolerance
            detail += f"; confirmation {_fmt(again, unit)} ({again / then - 1.0:+.1%})"
        if worse:
            outcome.regressions.append(detail)
        elif metric == "p50_ms" and -change > tolerance:  # a stale baseline: suggest updating
            outcome.improvements.append(detail)
    return outcome
