"""The timing rule: one estimator, one stopping rule, every knob in ``GatePolicy``.

The rule, in one paragraph (derived in docs/gate.md). A case is timed in blocks; each case
block is followed by a short block of a machine yardstick, a fixed workload owned by the
plugin on the same device. A block's value is the median of its calls. The change against
the baseline is the Hodges-Lehmann shift between the logarithms of this run's block values
and the baseline's, with its 95 % Mann-Whitney (Moses) interval, measured in two views: the
case's own block values, and the same divided by the yardstick's. Each interval is widened
by how far that view's level moves between two processes (``GatePolicy``'s spreads by clock
and view, and by what paces the call: on the CPU its library, on a GPU a captured graph or
the host's launches; measured by A/A runs; scaled down where the baseline pools several
processes, ``pooling.py``), which the blocks of one process cannot show; where the
yardstick itself moved past ``host_move_covered`` since the baseline's recording, each is
widened by that whole move too, since the case may have followed the host's move all the way
or not at all. The view with the narrower interval decides: dividing is used only
where it takes out more noise than it adds, and the verdict says which view it rests on. (An
interval's width depends on how the blocks spread, not on where they lie, so choosing by it
favours no verdict.) After each round of blocks the interval is read against the tolerance
line 1 + t and the improvement line 1 / (1 + t): wholly above the first is REGRESSED, wholly
below the second IMPROVED, wholly between them a pass. Otherwise another round is taken, up
to ``max_blocks``, while more blocks could still change the verdict: while some shift its
blocks leave open, give or take the spread alone, lies wholly past a line, or, for an
interval wider than the tolerance, wholly between them. At the last round, an interval
wider than the tolerance (a measurement that could not resolve it) is UNSTABLE, and any
other is a pass.
The speed-up over eager PyTorch of the same model on the same device is decided the same
way, with its own tolerance, from the case's shift divided by the PyTorch reference's, view
by view (their intervals, spreads included, combined on the log scale: the reference's level
moves between processes apart from the case's).

Pure numpy; unit-tested on synthetic blocks with known answers.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any


@dataclass(frozen=True)
class GatePolicy:
    """Every knob of the timing gate (benchmarks/gate_power.py sweeps them)."""

    first_blocks: int = 8  # blocks of the first round: together the case's measurement time
    round_blocks: int = 8  # blocks added by each further round
    max_blocks: int = 24  # the measurement stops here, decided or not
    record_blocks: int = 12  # blocks a baseline records (the other side of every comparison)
    min_block_calls: int = 3  # calls of the case in one block, at least
    yardstick_share: float = 0.2  # yardstick time per block, as a share of the case's
    min_yardstick_calls: int = 3
    # Untimed calls at the start of every block: the first call after the other side's block
    # can pay for the switch, not for the case (2.23x a block's median on a 2-core EPYC while
    # the yardstick's threads spun; docs/measurements.md).
    settle_calls: int = 1
    # Calls of an eager GPU case (after as many untimed ones) whose medians say whether its
    # launches or its GPU work pace it (measure/pace.py), which picks its yardstick.
    pace_probe_calls: int = 5
    confidence: float = 0.95
    # How far a case's level moves between two processes (standard deviation of its log), by
    # clock and view: what the blocks of one process cannot show, added to every interval.
    # Measured by A/A runs (root mean square of the log of the shifts; docs/measurements.md,
    # "The case's threads and the yardstick", and docs/generation.md, "Generation A/A on the
    # GPU"): on a 2-core cloud EPYC own times moved 0.78x-1.30x (0.134), and divided by the
    # yardstick 0.95x-1.06x (0.022; 0.028 in the first half of the runs). On a GPU, timed by
    # CUDA events, a captured CUDA graph's replay (a compiled BERT-base call, 0.0033 over 32
    # trials on an H200, and the power runs' encoder, 0.0033 over 206; a generation's decode
    # step, 0.0079 over 42 on an H100 and an H200) moved within 3 %.
    spread_wall_own: float = 0.15
    spread_wall_normalized: float = 0.03
    # On the CPU, a call run by PyTorch's threads (torch-cpu cases, and the eager reference of
    # every CPU speed-up), which the ONNX Runtime yardstick follows less: over the 408 A/A
    # trials of four power runs on that EPYC, the eager reference moved 0.199 (own) and 0.074
    # (divided), where the ONNX Runtime case moved 0.026 divided (docs/measurements.md, "The
    # eager reference's own spread").
    spread_wall_torch_own: float = 0.21
    spread_wall_torch_normalized: float = 0.08
    # How far the host may move between the baseline's process and this one (the yardstick's
    # own shift, either way) for dividing by the yardstick to be trusted: up to 1.35x the
    # divided view's error stayed within 0.017-0.033 (root mean square, 777 trials on that
    # EPYC; eager PyTorch over the launch yardstick on an H100 likewise, 0.022 up to 1.11x
    # and 0.07-0.13 past 1.35x); past it, 0.09-0.11 (27 trials), one unchanged case read +25 %
    # after a 2.1x move, and one followed a 0.65x move not at all and read +61 %
    # (docs/measurements.md, "a false failure after a 2x move of the host" and "When the host
    # moves past what the yardstick corrects"). Past it both views are widened by the whole
    # move (``host_move_reach``) and the verdict carries a note saying so.
    host_move_covered: float = 1.35
    spread_device_own: float = 0.008  # a captured replay, the larger of the two figures above
    spread_device_normalized: float = 0.03
    # Other GPU spans, in both views (the GEMM yardstick does not track what moves them): a
    # generation's prefill, one captured replay after the host's work between generations
    # (TTFT: own times 0.031 over the same 42 trials, up to +10.3 %); kernels launched one by
    # one by the host (eager PyTorch, ONNX Runtime's CUDA provider), 0.49 on BERT-base-shaped
    # cases on an H200, the host's launch rate moving eager PyTorch 0.64x-1.87x between
    # processes (docs/gpu.md, "the spread by what paces a call").
    spread_device_prefill: float = 0.031
    spread_device_launched: float = 0.5
    # Eager PyTorch's launches divided by the launch yardstick's (measure/yardstick.py), which
    # PyTorch launches from Python the same way: on an H100, eager BERT-base FP16 at batch 1
    # moved 0.045 between 16 processes so divided (0.24 on its own), and a 20-layer encoder's
    # 40 unchanged trials in pytest runs 0.038 (0.154 on its own; docs/gpu.md, "A yardstick
    # for eager PyTorch on a GPU"). Its own times keep the launched spread.
    spread_device_eager_normalized: float = 0.05
    # An eager call its GPU work paces (measure/pace.py), timed beside the GEMMs, in both
    # views: on H100 hosts of one CPU model, BERT-base FP32 at batch 32 moved 19.9-21.4 ms
    # over nine unchanged processes in three machine starts (0.024 on its own times), where
    # its captured graph moved within 1 % (docs/gpu.md, "Eager PyTorch paced by its GPU
    # work"): its launches still leave some gaps.
    spread_device_eager_work: float = 0.03

    @staticmethod
    def spread_name(clock: str, normalized: bool, pacing: str) -> str:
        """Which spread (its name without ``spread_``, as ``[tool.xfperf] spreads`` writes
        it) a view measured on ``clock`` ("wall" or "device") takes, by what paces the timed
        span (``catalog.pace_fields``). On the device clock: "captured", "prefill", "eager"
        (divided by the launch yardstick; its own times are launched ones), "device" (an eager
        call whose GPU work outlasts its launches, measure/pace.py: one spread for both
        views); anything else counts as launched, the widest. On the wall clock: "torch"
        (PyTorch's threads) has spreads of its own; anything else (ONNX Runtime's threads,
        the yardstick's own library) takes ``wall_own`` and ``wall_normalized``."""
        if clock == "device" and pacing == "eager" and normalized:
            return "device_eager_normalized"
        if clock == "device" and pacing == "device":
            return "device_eager_work"
        if clock == "device" and pacing != "captured":
            return "device_prefill" if pacing == "prefill" else "device_launched"
        if clock == "device":
            prefix = "device_"
        else:
            prefix = "wall_torch_" if pacing == "torch" else "wall_"
        return prefix + ("normalized" if normalized else "own")

    def spread(self, clock: str, normalized: bool, pacing: str) -> float:
        """The between-process spread of that view (``spread_name``)."""
        value: float = getattr(self, "spread_" + self.spread_name(clock, normalized, pacing))
        return value


DEFAULT_POLICY = GatePolicy()


class Outcome(str, enum.Enum):
    PASS = "pass"
    REGRESSED = "regressed"
    IMPROVED = "improved"
    UNSTABLE = "unstable"


@dataclass(frozen=True)
class Shift:
    """This run against the baseline, as a ratio of times (> 1: slower)."""

    ratio: float
    low: float
    high: float
    current_blocks: int
    baseline_blocks: int
    normalized: bool
    # The part of the half-width (log scale) that more blocks cannot narrow: the between-
    # process spread at the interval's confidence.
    floor: float = 0.0

    @property
    def half_width(self) -> float:
        """Half the interval's width on the log scale: the change this measurement resolves."""
        return (math.log(self.high) - math.log(self.low)) / 2

    def describe(self) -> str:
        how = "normalized by the yardstick" if self.normalized else "own time"
        return (f"{self.ratio - 1:+.1%} [95% {self.low - 1:+.1%} .. {self.high - 1:+.1%}], "
                f"{self.current_blocks} vs {self.baseline_blocks} blocks, {how}")

    def as_dict(self) -> dict[str, Any]:
        return {"ratio": round(self.ratio, 5), "low": round(self.low, 5),
                "high": round(self.high, 5), "blocks": self.current_blocks,
                "baseline_blocks": self.baseline_blocks, "normalized": self.normalized}


def block_values(case_ms: Sequence[float], yardstick_ms: Sequence[float] | None,
                 normalize: bool) -> list[float]:
    """The values compared: case block medians, divided by the paired yardstick medians when
    normalizing."""
    if not normalize:
        return list(case_ms)
    assert yardstick_ms is not None and len(yardstick_ms) == len(case_ms)
    return [c / y for c, y in zip(case_ms, yardstick_ms, strict=True)]


def shift(current: Sequence[float], baseline: Sequence[float], confidence: float,
          normalized: bool) -> Shift:
    """Hodges-Lehmann estimate of the shift of log(current) against log(baseline), with the
    distribution-free Moses interval (the rank-order interval of Mann-Whitney's test)."""
    import numpy as np

    now = np.log(np.asarray(current, dtype=np.float64))
    then = np.log(np.asarray(baseline, dtype=np.float64))
    n, m = len(now), len(then)
    if n == 0 or m == 0:
        raise ValueError("a shift needs blocks on both sides")
    differences = np.sort((now[:, None] - then[None, :]).ravel())
    estimate = float(np.median(differences))
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    # Rank of the lower bound among the n*m differences (normal approximation, continuity-
    # corrected); with too few blocks the interval is the whole range of differences.
    k = math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12))
    k = max(k, 0)
    low, high = float(differences[k]), float(differences[len(differences) - 1 - k])
    return Shift(math.exp(estimate), math.exp(low), math.exp(high), n, m, normalized)


def widened(view: Shift, spread: float, confidence: float) -> Shift:
    """``view`` with each side of its interval widened in quadrature by ``spread`` (a log-scale
    standard deviation) at the same confidence: the move of the level between the two
    processes compared, which the blocks of one process cannot show."""
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    return widened_by(view, z * spread)


def widened_by(view: Shift, reach: float) -> Shift:
    """``view`` with each side of its interval widened in quadrature by ``reach``, a log-scale
    half-width at the interval's confidence that more blocks cannot narrow (it joins the
    floor)."""
    centre, low, high = math.log(view.ratio), math.log(view.low), math.log(view.high)
    return Shift(view.ratio, math.exp(centre - math.hypot(centre - low, reach)),
                 math.exp(centre + math.hypot(high - centre, reach)),
                 view.current_blocks, view.baseline_blocks, view.normalized,
                 math.hypot(view.floor, reach))


def host_move_reach(moved: float, covered: float) -> float:
    """How far the case's level may be off, on the log scale, after the host moved ``moved``
    (the yardstick's own shift) between the baseline's process and this one. Within
    ``covered`` dividing by the yardstick was measured to correct the move: nothing beyond the
    policy's spreads. Past it the case may have followed the move all the way (its own times
    off by the move) or not at all (its divided times off by it), and one run cannot tell
    which: the whole move."""
    return 0.0 if max(moved, 1 / moved) <= covered else abs(math.log(moved))


def combined(case: Shift, reference: Shift) -> Shift:
    """The case's shift divided by the reference's: the change of its speed-up lost (> 1: the
    case lost ground against eager PyTorch). Interval half-widths add in quadrature on the
    log scale (the two are measured apart, so independent)."""
    centre = math.log(case.ratio) - math.log(reference.ratio)
    spread = math.hypot(case.half_width, reference.half_width)  # both at the same confidence
    return Shift(math.exp(centre), math.exp(centre - spread), math.exp(centre + spread),
                 case.current_blocks, case.baseline_blocks,
                 case.normalized and reference.normalized,
                 math.hypot(case.floor, reference.floor))


def open_shifts(estimate: Shift) -> tuple[float, float]:
    """The shifts the blocks leave open (log scale): the interval before its floor was added.
    Its sides are the blocks' reach and the floor's added in quadrature."""
    centre, floor = math.log(estimate.ratio), estimate.floor
    low = centre - math.sqrt(max((centre - math.log(estimate.low)) ** 2 - floor**2, 0.0))
    high = centre + math.sqrt(max((math.log(estimate.high) - centre) ** 2 - floor**2, 0.0))
    return low, high


def could_change(estimate: Shift, tolerance: float) -> bool:
    """Whether more blocks could still change the verdict of an interval across a line: some
    shift the blocks leave open, give or take the floor (the interval more blocks tend to
    around that shift), lies wholly past a line, a change shown; or, where the interval is
    wider than the tolerance (unresolved if decided now), wholly between the lines, a pass.
    Every shift left open, not the estimate alone: the estimate moves as blocks come (docs/
    gate.md, "Sequential, bounded")."""
    line, floor = math.log1p(tolerance), estimate.floor
    low, high = open_shifts(estimate)
    if high - floor > line or low + floor < -line:
        return True
    unresolved = estimate.half_width > line
    return unresolved and floor < line and low < line - floor and high > floor - line


def between_lines(low: float, high: float, tolerance: float) -> bool:
    """Whether an interval lies wholly between the improvement line and the tolerance line:
    a pass that the measurement settled (one at the last round may straddle a line)."""
    return high < 1 + tolerance and low > 1 / (1 + tolerance)


def decide(estimate: Shift, tolerance: float, final: bool) -> Outcome | None:
    """The stopping rule: an outcome once the interval is clear of the lines, else None
    (take another round) unless this is the last round or more blocks could not change it."""
    if estimate.low > 1 + tolerance:
        return Outcome.REGRESSED
    if estimate.high < 1 / (1 + tolerance):
        return Outcome.IMPROVED
    if between_lines(estimate.low, estimate.high, tolerance):
        return Outcome.PASS
    if not final and could_change(estimate, tolerance):
        return None
    # At the end, an interval across a line has not shown a change: a pass, unless it is
    # wider than the tolerance, so that it could not have shown one.
    return Outcome.UNSTABLE if estimate.half_width > math.log1p(tolerance) else Outcome.PASS


def deciding(views: Sequence[Shift]) -> Shift:
    """The view a verdict rests on: the one with the narrower interval (own times, listed
    first, on a tie)."""
    return min(views, key=lambda view: view.half_width)


def verdict(views: Sequence[Shift], tolerance: float, final: bool) -> Outcome | None:
    """The stopping rule on the deciding view (None: take another round)."""
    return decide(deciding(views), tolerance, final)
