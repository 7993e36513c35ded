"""The verdict of one case against its baseline entry: a pure function of data.

Latency (and the single-stream throughput, its inverse) and the speed-up over eager PyTorch
are decided by the block rule of ``rule.py`` on block records; p99, memory, serving rates and
accuracy by thresholds (p99 of a few dozen calls has no useful interval; the others are not
noisy). Metric names, units and directions come from ``metrics.METRICS``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_xfperf.baselines import rule
from pytest_xfperf.metrics import METRICS, Verdict
from pytest_xfperf.settings import GateOptions, Tolerances


@dataclass(frozen=True)
class Evidence:
    """What this run measured of a case, in the shapes a baseline entry stores."""

    metrics: Mapping[str, float]
    timing: Mapping[str, Any] | None = None  # block record of the case
    speedup: Mapping[str, Any] | None = None  # block record of its eager reference
    accuracy_problems: Sequence[str] = ()
    drift: Sequence[str] = ()
    timed: bool = True  # False under --benchmark-disable: timing metrics are not gated


@dataclass
class GateOutcome:
    verdict: Verdict = Verdict.PASS
    regressions: list[str] = field(default_factory=list)
    improvements: list[str] = field(default_factory=list)
    unstable: list[str] = field(default_factory=list)
    deltas: dict[str, float] = field(default_factory=dict)  # metric -> relative change
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # block metrics
    notes: list[str] = field(default_factory=list)


def _normalizing(now: Mapping[str, Any], then: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the comparison divides by the yardstick: whenever both sides timed the same
    yardstick (workload, library version, threads). The yardstick's purpose is the drift of
    the host between the baseline's run and this one, which no interval of one run can see,
    so it is not dropped where a run's own blocks happen to look steadier without it."""
    if not then.get("yardstick_ms"):
        return False, "the baseline has no yardstick blocks: own times compared"
    if not now.get("yardstick_ms") or now.get("yardstick") != then.get("yardstick"):
        return False, (f"the yardstick changed since the baseline ({then.get('yardstick')!r} "
                       f"→ {now.get('yardstick')!r}): own times compared")
    return True, ""


def block_shift(now: Mapping[str, Any], then: Mapping[str, Any], confidence: float
                ) -> tuple[rule.Shift, str]:
    """This run's blocks against the baseline's (normalized where both have the same
    yardstick), and a note when normalization had to be dropped."""
    normalize, note = _normalizing(now, then)
    current = rule.block_values(now["case_ms"], now.get("yardstick_ms"), normalize)
    baseline = rule.block_values(then["case_ms"], then.get("yardstick_ms"), normalize)
    return rule.shift(current, baseline, confidence, normalize), note


def decided(now: Mapping[str, Any], reference: Mapping[str, Any] | None,
            baseline: Mapping[str, Any] | None, tolerances: Tolerances,
            policy: rule.GatePolicy, final: bool) -> bool:
    """The stopping rule after the blocks measured so far: are latency and speed-up both
    decided (or is there nothing to decide them against)?"""
    then = baseline.get("timing") if baseline else None
    if then is None or then.get("clock") != now.get("clock"):
        return True  # nothing to decide against: stop at the first round
    estimate, _ = block_shift(now, then, policy.confidence)
    if rule.decide(estimate, tolerances.p50, final) is None:
        return False
    then_ref = baseline.get("speedup") if baseline else None
    if not reference or not then_ref or then_ref.get("clock") != reference.get("clock"):
        return True
    eager, _ = block_shift(reference, then_ref, policy.confidence)
    return rule.decide(rule.combined(estimate, eager), tolerances.speedup, final) is not None


def _decide_block(metric: str, estimate: rule.Shift, tolerance: float, outcome: GateOutcome,
                  figures: str) -> None:
    decided = rule.decide(estimate, tolerance, final=True)
    assert decided is not None
    change = estimate.ratio - 1 if metric == "p50_ms" else 1 / estimate.ratio - 1
    outcome.deltas[metric] = change
    if metric == "p50_ms":
        outcome.deltas["throughput"] = 1 / estimate.ratio - 1
    outcome.decisions[metric] = {"outcome": decided.value, "tolerance": tolerance,
                                 **estimate.as_dict()}
    detail = (f"{METRICS[metric].label} {figures}: {estimate.describe()} "
              f"(tolerance {tolerance:.0%})")
    if metric == "speedup":
        detail = (f"speed-up vs eager PyTorch {figures}: the case lost "
                  f"{estimate.ratio - 1:+.1%} against its reference [95% "
                  f"{estimate.low - 1:+.1%} .. {estimate.high - 1:+.1%}] "
                  f"(tolerance {tolerance:.0%})")
    {rule.Outcome.REGRESSED: outcome.regressions, rule.Outcome.IMPROVED: outcome.improvements,
     rule.Outcome.UNSTABLE: outcome.unstable}.get(decided, []).append(detail)


def _thresholds(evidence: Evidence, baseline: Mapping[str, Any], tolerances: Tolerances,
                skip: set[str], outcome: GateOutcome) -> None:
    then_metrics = baseline.get("metrics", {})
    for name, metric in METRICS.items():
        if name in skip or name not in evidence.metrics or name not in then_metrics:
            continue
        if metric.timing and not evidence.timed:
            continue
        now, then = float(evidence.metrics[name]), float(then_metrics[name])
        tolerance = getattr(tolerances, metric.tolerance)
        if metric.absolute:
            change = now - then
            worse = metric.direction * change < -tolerance
            detail = f"{name} {then:.4f} -> {now:.4f} (allowed drop {tolerance})"
        else:
            change = now / then - 1.0
            worse = (metric.direction * change < -tolerance
                     and abs(now - then) >= metric.slack)
            detail = (f"{name} baseline {metric.render(then)}, now {metric.render(now)} "
                      f"({change:+.1%}, tolerance {tolerance:.0%})")
        outcome.deltas[name] = change
        if worse:
            outcome.regressions.append(detail)


def verdict(evidence: Evidence, baseline: Mapping[str, Any] | None, options: GateOptions
            ) -> GateOutcome:
    """Compare ``evidence`` with ``baseline`` (None: this machine has none) and say what it
    means. Accuracy problems and graph drift fail whatever the timing says."""
    outcome = GateOutcome()
    tolerances, policy = options.tolerances, options.policy
    if baseline is not None:
        decided: set[str] = set()
        then_timing = baseline.get("timing")
        if evidence.timed and evidence.timing and then_timing:
            if then_timing.get("clock") == evidence.timing.get("clock"):
                estimate, note = block_shift(evidence.timing, then_timing, policy.confidence)
                if note:
                    outcome.notes.append(note)
                _decide_block("p50_ms", estimate, tolerances.p50, outcome,
                              _figures("p50_ms", evidence.metrics, baseline))
                decided |= {"p50_ms", "throughput"}
                then_ref, now_ref = baseline.get("speedup"), evidence.speedup
                if then_ref and now_ref and then_ref.get("clock") == now_ref.get("clock"):
                    reference, ref_note = block_shift(now_ref, then_ref, policy.confidence)
                    if ref_note:
                        outcome.notes.append("eager reference: " + ref_note)
                    _decide_block("speedup", rule.combined(estimate, reference),
                                  tolerances.speedup, outcome,
                                  _figures("speedup", evidence.metrics, baseline))
        elif evidence.timed and evidence.timing:
            outcome.notes.append("the baseline entry has no block record (recorded by an "
                                 "older pytest-xfperf): latency is not gated; record it again "
                                 "with --xfperf-update-baselines")
            decided |= {"p50_ms", "throughput", "speedup"}
        decided.add("speedup")  # never by threshold: only against its block record
        _thresholds(evidence, baseline, tolerances, decided, outcome)
    outcome.verdict = _summarize(evidence, baseline, outcome, options)
    return outcome


def _figures(metric: str, now: Mapping[str, float], baseline: Mapping[str, Any]) -> str:
    then = baseline.get("metrics", {}).get(metric)
    if then is None or metric not in now:
        return ""
    spec = METRICS[metric]
    return f"baseline {spec.render(float(then))}, now {spec.render(float(now[metric]))}"


def _summarize(evidence: Evidence, baseline: Mapping[str, Any] | None, outcome: GateOutcome,
               options: GateOptions) -> Verdict:
    if evidence.accuracy_problems:
        return Verdict.ACCURACY
    if evidence.drift:
        return Verdict.DRIFT
    if baseline is None:
        return Verdict.NO_BASELINE
    if outcome.regressions:
        return Verdict.REGRESSED
    if outcome.unstable:
        return Verdict.UNSTABLE_FAIL if options.fail_on_unstable else Verdict.UNSTABLE
    if outcome.improvements:
        return Verdict.STALE if options.fail_on_improvement else Verdict.IMPROVED
    if evidence.timed and evidence.timing and not baseline.get("timing"):
        return Verdict.NO_BASELINE
    return Verdict.PASS
