"""The verdict of one case against its baseline entry: a pure function of data.

Latency (and the single-stream throughput, its inverse), a generative case's time to first
token and time per output token (and tokens/s, the TPOT's inverse), and the speed-up over eager
PyTorch are decided by the block rule of ``rule.py`` on block records, in the view (own times,
or divided by the yardstick's) with the narrower interval, between-process spread included;
p99, memory, serving rates and accuracy by thresholds (p99 of a few dozen calls has no useful
interval; the others are not noisy). A p99 past its threshold counts only when the p99 of each
half of the run's calls, in time order, is past it too: a tail that grew shows in both halves,
one burst of host interference (a few consecutive calls) in one. A p99 is read over the run's
own p50 (the tail against the level, which the block rule judges). Past the host move the
yardstick corrects, a threshold on another time or rate needs a change beyond that move too,
as a block verdict does. Metric names, units and directions come from ``metrics.METRICS``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_xfperf.baselines import pooling, rule
from pytest_xfperf.measure.stats import percentile
from pytest_xfperf.metrics import METRICS, Verdict
from pytest_xfperf.settings import GateOptions, Tolerances

MIN_HALF_CALLS = 10  # fewer calls in a half than this: the p99 is read on the whole run


@dataclass(frozen=True)
class Evidence:
    """What this run measured of a case, in the shapes a baseline entry stores."""

    metrics: Mapping[str, float]
    timing: Mapping[str, Any] | None = None  # block record of the case
    speedup: Mapping[str, Any] | None = None  # block record of its PyTorch reference
    accuracy_problems: Sequence[str] = ()
    drift: Sequence[str] = ()
    timed: bool = True  # False under --benchmark-disable: timing metrics are not gated
    samples_ms: Sequence[float] = ()  # every timed call, in time order (the p99's halves)
    timing_metric: str = "p50_ms"  # what ``timing`` times (tpot_ms for a generative case)
    more_timing: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # ttft_ms, ...
    memory_mode: str = ""  # how host memory was measured: compared only within one mode

    def records(self) -> dict[str, Mapping[str, Any]]:
        """Every block record of this run by the metric it decides, ``timing``'s first."""
        if not self.timing:
            return {}
        return {self.timing_metric: self.timing, **self.more_timing}


@dataclass
class GateOutcome:
    verdict: Verdict = Verdict.PASS
    regressions: list[str] = field(default_factory=list)
    improvements: list[str] = field(default_factory=list)
    unstable: list[str] = field(default_factory=list)
    deltas: dict[str, float] = field(default_factory=dict)  # metric -> relative change
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # block metrics
    notes: list[str] = field(default_factory=list)


def block_views(now: Mapping[str, Any], then: Mapping[str, Any], policy: rule.GatePolicy,
                spread: bool = True) -> tuple[list[rule.Shift], str]:
    """This run's blocks against the baseline's, in two views: the case's own times, and the
    same divided by the yardstick's where both sides timed the same yardstick (workload,
    library version, threads); with a note when the second view is missing for that reason,
    or when the host moved further than dividing was measured to correct.
    With ``spread``, each view's interval carries the policy's between-process spread for its
    clock (less where the baseline pools several processes), and past
    ``GatePolicy.host_move_covered`` the host's move (``rule.host_move_reach``)."""
    views = [rule.shift(now["case_ms"], then["case_ms"], policy.confidence, normalized=False)]
    note, reach = "", 0.0
    if then.get("yardstick_ms") and now.get("yardstick_ms"):
        if timed_the_same_yardstick(now, then):
            views.append(rule.shift(
                rule.block_values(now["case_ms"], now["yardstick_ms"], True),
                rule.block_values(then["case_ms"], then["yardstick_ms"], True),
                policy.confidence, normalized=True))
            moved = host_moved(now, then, policy)
            reach = rule.host_move_reach(moved, policy.host_move_covered)
            note = _host_move_note(moved, reach, policy) if reach else ""
        else:
            note = (f"the yardstick changed since the baseline ({then.get('yardstick')!r} "
                    f"→ {now.get('yardstick')!r}): only the case's own times are compared")
    if spread:
        views = [rule.widened_by(_with_spread(view, now, then, policy), reach)
                 for view in views]
    return views, note


def timed_the_same_yardstick(now: Mapping[str, Any], then: Mapping[str, Any]) -> bool:
    """Whether both block records timed the same yardstick (workload, library, threads)."""
    return bool(now.get("yardstick_ms") and then.get("yardstick_ms")
                and now.get("yardstick") == then.get("yardstick"))


def host_moved(now: Mapping[str, Any], then: Mapping[str, Any], policy: rule.GatePolicy
               ) -> float:
    """How far the host moved between the baseline's process and this one: the yardstick's
    own shift (> 1: slower now), from block records that both timed it."""
    return rule.shift(now["yardstick_ms"], then["yardstick_ms"], policy.confidence,
                      normalized=False).ratio


def threshold_allowance(evidence: Evidence, then_records: Mapping[str, Mapping[str, Any]],
                        policy: rule.GatePolicy) -> float:
    """The factor (>= 1) by which the host moved past ``GatePolicy.host_move_covered``
    between the baseline's process and this one, read off the primary block records' shared
    yardstick; 1 within it or without one. The thresholds' metrics are read on the case's
    own times, which may have followed that whole move."""
    now, then = evidence.timing, then_records.get(evidence.timing_metric)
    if not now or not then or not timed_the_same_yardstick(now, then):
        return 1.0
    return math.exp(rule.host_move_reach(host_moved(now, then, policy),
                                         policy.host_move_covered))


def _host_move_note(moved: float, reach: float, policy: rule.GatePolicy) -> str:
    """The note on a verdict after the host moved further between the baseline's process and
    this one than dividing by the yardstick was measured to correct."""
    return (f"the machine yardstick took {moved:.2f}x its time at the baseline's recording: "
            f"the host moved past the {policy.host_move_covered:g}x either way within which "
            "dividing by it was measured to hold, and the case may have followed that move "
            f"all the way or not at all, so both views' intervals are widened by a factor of "
            f"{math.exp(reach):.2f} either way; record the baseline again in a steadier hour "
            "to gate finer")


def _with_spread(view: rule.Shift, now: Mapping[str, Any], then: Mapping[str, Any],
                 policy: rule.GatePolicy) -> rule.Shift:
    """``view`` widened by its between-process spread, scaled down where the baseline's
    blocks pool several processes (``pooling.spread_factor``)."""
    clock = str(now.get("clock", "wall"))
    # A device-clock record that does not say what paces it gets the widest spread.
    spread = policy.spread(clock, view.normalized, str(now.get("pacing", "launched")))
    spread *= pooling.spread_factor(pooling.processes_of(then))
    return rule.widened(view, spread, policy.confidence)


def speedup_views(case: list[rule.Shift], reference: list[rule.Shift]) -> list[rule.Shift]:
    """The case's shift over the PyTorch reference's, view by view (own times with own
    times, normalized with normalized), each with its between-process spread: the reference
    is timed in blocks of its own, and its level moves between processes apart from the
    case's (PyTorch eager up to 1.8x, measurements.md "Where the CPU noise lives")."""
    by_kind = {view.normalized: view for view in reference}
    return [rule.combined(view, by_kind[view.normalized]) for view in case
            if view.normalized in by_kind]


def _comparable(now: Mapping[str, Any] | None, then: Any) -> bool:
    """Same clock, and for a speed-up reference the same reference backend."""
    return (now is not None and isinstance(then, Mapping)
            and then.get("clock") == now.get("clock")
            and then.get("reference") == now.get("reference"))


def baseline_records(baseline: Mapping[str, Any] | None, metric: str
                     ) -> dict[str, Mapping[str, Any]]:
    """A baseline entry's block records by metric: ``timing`` decides ``metric`` (the
    entry's primary timed figure), ``more_timing`` the others (a generative case's TTFT)."""
    if not baseline or not isinstance(baseline.get("timing"), Mapping):
        return {}
    more = baseline.get("more_timing")
    return {metric: baseline["timing"], **(more if isinstance(more, Mapping) else {})}


def decided(now: Mapping[str, Any], reference: Mapping[str, Any] | None,
            baseline: Mapping[str, Any] | None, tolerances: Tolerances,
            policy: rule.GatePolicy, final: bool, metric: str = "p50_ms",
            more: Mapping[str, Mapping[str, Any]] | None = None) -> bool:
    """The stopping rule after the blocks measured so far: are every block metric (``now``
    times ``metric``; ``more`` holds further records by metric) and the speed-up decided, or
    is there nothing to decide them against?"""
    then_records = baseline_records(baseline, metric)
    if not _comparable(now, then_records.get(metric)):
        return True  # nothing to decide against: stop at the first round
    assert baseline is not None
    views: list[rule.Shift] = []
    for name, record in {metric: now, **(more or {})}.items():
        then = then_records.get(name)
        if not _comparable(record, then):
            continue
        assert then is not None
        shifts, _ = block_views(record, then, policy)
        if rule.verdict(shifts, getattr(tolerances, METRICS[name].tolerance), final) is None:
            return False
        if name == metric:
            views = shifts
    then_ref = baseline.get("speedup")
    if reference is None or not _comparable(reference, then_ref):
        return True
    assert then_ref is not None
    eager, _ = block_views(reference, then_ref, policy)
    lost = speedup_views(views, eager)
    return not lost or rule.verdict(lost, tolerances.speedup, final) is not None


def _decide_block(metric: str, views: list[rule.Shift], tolerance: float,
                  outcome: GateOutcome, figures: str, pooled: int) -> None:
    """Record ``metric``'s verdict and its line; ``pooled``: the processes the baseline's
    block record pools (what the line proposes when the spread alone leaves it unresolved)."""
    decided = rule.verdict(views, tolerance, final=True)
    assert decided is not None
    shown = rule.deciding(views)
    spec = METRICS[metric]
    # A time (direction -1) changes by the ratio; a rate or the speed-up by its inverse.
    change = shown.ratio - 1 if spec.direction < 0 else 1 / shown.ratio - 1
    outcome.deltas[metric] = change
    if spec.inverse:
        outcome.deltas[spec.inverse] = 1 / shown.ratio - 1
    outcome.decisions[metric] = {"outcome": decided.value, "tolerance": tolerance,
                                 **shown.as_dict(),
                                 "views": [view.as_dict() for view in views]}
    if metric == "speedup":
        described = "; ".join(
            f"{'normalized' if v.normalized else 'own times'}: lost {v.ratio - 1:+.1%} [95% "
            f"{v.low - 1:+.1%} .. {v.high - 1:+.1%}]{_deciding(v, shown, views)}"
            for v in views)
        detail = (f"speed-up vs PyTorch {figures}: {described} "
                  f"(tolerance {tolerance:.0%})")
    else:
        described = "; ".join(view.describe() + _deciding(view, shown, views)
                              for view in views)
        detail = f"{METRICS[metric].label} {figures}: {described} (tolerance {tolerance:.0%})"
    if decided is rule.Outcome.UNSTABLE:
        detail += _unresolved(shown, tolerance, pooled)
    {rule.Outcome.REGRESSED: outcome.regressions, rule.Outcome.IMPROVED: outcome.improvements,
     rule.Outcome.UNSTABLE: outcome.unstable}.get(decided, []).append(detail)


def _unresolved(shown: rule.Shift, tolerance: float, pooled: int) -> str:
    """What an unresolved interval was made of, so that the user knows what would decide it:
    more blocks narrow only the part above the floor (the level's move between processes,
    the policy's spread at the interval's confidence)."""
    width, floor = math.expm1(shown.half_width), math.expm1(shown.floor)
    if shown.floor < math.log1p(tolerance):
        return (f"; unresolved: the interval reaches {width:.0%} either side, wider than the "
                "tolerance, in the rounds allowed")
    return (f"; unresolved: how far this view's level moves between processes (the policy's "
            "spread, and the host's move where a note names one) alone spans "
            f"{floor:.0%} either side, so no number of blocks resolves "
            f"{tolerance:.0%}: use a wider tolerance, or this machine's own spreads where its "
            "A/A runs measured them smaller (`history spreads`, --xfperf-spreads)"
            + (f", or a baseline pooled from more recordings than its {pooled} "
               "(--xfperf-pool-recordings)" if pooled < pooling.MAX_PROCESSES else ""))


def _deciding(view: rule.Shift, shown: rule.Shift, views: list[rule.Shift]) -> str:
    return " (the narrower: decides)" if view is shown and len(views) > 1 else ""


def _thresholds(evidence: Evidence, baseline: Mapping[str, Any], tolerances: Tolerances,
                skip: set[str], outcome: GateOutcome, host_move: float) -> None:
    """Metrics without a block record against a threshold each. ``host_move`` (>= 1) is how
    far the host moved past what the yardstick corrects (``threshold_allowance``): a time or
    rate the host's pace moves must change by more than that move as well as the tolerance,
    as a block metric's verdict must."""
    then_metrics = baseline.get("metrics", {})
    for name, metric in METRICS.items():
        if name in skip or name not in evidence.metrics or name not in then_metrics:
            continue
        if metric.timing and not evidence.timed:
            continue
        now, then = float(evidence.metrics[name]), float(then_metrics[name])
        tolerance = getattr(tolerances, metric.tolerance)
        # A time counts as worse past (1 + tolerance) x the allowance, a rate below
        # (1 - tolerance) / it. A tail is read over the run's own p50: whatever moved the
        # case's level (the host, or a change the p50's block rule judges) moved its tail too.
        allowance, allowed_by = (host_move, f"the host's {host_move:.2f}x move") if (
            metric.paced) else (1.0, "")
        level = _level_change(evidence.metrics, then_metrics) if metric.tail else None
        if level is not None:
            allowance, allowed_by = level, f"its p50's {level:.2f}x"
        change: float | None
        if metric.absolute:
            change = now - then
            worse = metric.direction * change < -tolerance
            detail = f"{name} {then:.4f} -> {now:.4f} (allowed drop {tolerance})"
        elif then > 0:
            change = now / then - 1.0
            beyond_move = now / then * allowance ** metric.direction - 1.0
            past_slack = abs(now - then) >= metric.slack
            worse = metric.direction * beyond_move < -tolerance and past_slack
            beyond = f" beyond {allowed_by}" if allowance != 1.0 else ""
            detail = (f"{name} baseline {metric.render(then)}, now {metric.render(now)} "
                      f"({change:+.1%}, tolerance {tolerance:.0%}{beyond})")
            if not worse and past_slack and metric.direction * change < -tolerance:
                outcome.notes.append(f"{detail}: past the tolerance, within {allowed_by}, "
                                     "so not a regression")
        else:
            # A zero baseline (the memory of a case too small to grow the process) has no
            # ratio: only a move past the metric's slack, the wrong way, counts.
            change = None
            worse = metric.direction * (now - then) < 0 and abs(now - then) >= metric.slack
            detail = (f"{name} baseline {metric.render(then)}, now {metric.render(now)} (from "
                      f"zero, past the {metric.render(metric.slack)} allowance)")
        if change is not None:
            outcome.deltas[name] = change
        if worse and metric.tail and not _tail_in_both_halves(
                evidence.samples_ms, then * (1 + tolerance) * allowance):
            outcome.notes.append(f"{detail}: not in both halves of the run's calls (a burst, "
                                 "not a longer tail), so not a regression")
            continue
        if worse:
            outcome.regressions.append(detail)


def _level_change(now: Mapping[str, float], then: Mapping[str, Any]) -> float | None:
    """The case's p50 now over the baseline's, where both have one: the level a tail is
    read over."""
    if now.get("p50_ms", 0) > 0 and float(then.get("p50_ms", 0)) > 0:
        return float(now["p50_ms"]) / float(then["p50_ms"])
    return None


def _tail_in_both_halves(samples_ms: Sequence[float], limit_ms: float) -> bool:
    """Whether the p99 of each half of ``samples_ms`` (time order) is above ``limit_ms``; with
    too few calls to split, the whole run's p99 (already above it) stands."""
    if len(samples_ms) < 2 * MIN_HALF_CALLS:
        return True
    middle = len(samples_ms) // 2
    return all(percentile(sorted(half), 99) > limit_ms
               for half in (samples_ms[:middle], samples_ms[middle:]))


def verdict(evidence: Evidence, baseline: Mapping[str, Any] | None, options: GateOptions
            ) -> GateOutcome:
    """Compare ``evidence`` with ``baseline`` (None: this machine has none) and say what it
    means. Accuracy problems and graph drift fail whatever the timing says."""
    outcome = GateOutcome()
    tolerances, policy = options.tolerances, options.policy
    if baseline is not None:
        decided: set[str] = set()
        then_records = baseline_records(baseline, evidence.timing_metric)
        primary = evidence.timing_metric
        if evidence.timed and evidence.timing and then_records:
            views: list[rule.Shift] | None = None  # the primary metric's, for the speed-up
            for metric, record in evidence.records().items():
                if not _comparable(record, then_records.get(metric)):
                    continue
                shifts, note = block_views(record, then_records[metric], policy)
                if metric == primary:
                    views = shifts
                    if note:
                        outcome.notes.append(note)
                spec = METRICS[metric]
                _decide_block(metric, shifts, getattr(tolerances, spec.tolerance), outcome,
                              _figures(metric, evidence.metrics, baseline),
                              pooling.processes_of(then_records[metric]))
                decided |= {metric, spec.inverse} - {""}
            if views is not None:
                then_ref, now_ref = baseline.get("speedup"), evidence.speedup
                if _comparable(now_ref, then_ref):
                    assert now_ref is not None and then_ref is not None
                    eager, ref_note = block_views(now_ref, then_ref, policy)
                    if ref_note:
                        outcome.notes.append("PyTorch reference: " + ref_note)
                    lost = speedup_views(views, eager)
                    if lost:
                        _decide_block("speedup", lost, tolerances.speedup, outcome,
                                      _figures("speedup", evidence.metrics, baseline),
                                      min(pooling.processes_of(then_records[primary]),
                                          pooling.processes_of(then_ref)))
        elif evidence.timed and evidence.timing:
            outcome.notes.append("the baseline entry has no block record (recorded by an "
                                 "older pytest-xfperf): latency is not gated; record it again "
                                 "with --xfperf-update-baselines")
            decided |= {"p50_ms", "throughput", "speedup", "ttft_ms", "tpot_ms", "tokens_per_s"}
        decided.add("speedup")  # never by threshold: only against its block record
        if ("memory_mb" in evidence.metrics
                and baseline.get("memory_mode", "") != evidence.memory_mode):
            decided.add("memory_mb")  # growth measured another way is not comparable
            outcome.notes.append(
                "host memory not compared where the baseline measured it another way "
                f"({baseline.get('memory_mode') or 'before modes were recorded'}; now "
                f"{evidence.memory_mode}): record the baselines again to compare it")
        _thresholds(evidence, baseline, tolerances, decided, outcome,
                    threshold_allowance(evidence, then_records, policy))
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
