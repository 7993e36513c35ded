"""Drift in a case's run history: one change-point test, every knob in ``TrendPolicy``.

The rule, in one paragraph (derived in docs/history.md). A case's series on one machine is the
level of each of its last ``window`` runs, oldest first: the logarithm of the median of the
run's blocks divided by the yardstick's (the gate's normalized view), or of the case's own
times where its runs did not all time the same yardstick. Across runs, unlike within one, the
state of each process dominates (on the 2-core CI host one process runs a case 38 % slower
than the next), and the yardstick, timed in the same process, carries it: the normalized view
is the one that follows the model. Every split of the series into an earlier and a later
segment of at least ``min_segment`` runs is scored by the later segment's Mann-Whitney count
(of later runs above earlier ones), centred and divided by its standard deviation under
permutation: the maximally selected rank statistic, one-sided towards slower times. The best
split is the change point. Its size is the Hodges-Lehmann shift of the later segment against
the earlier, and its significance the share of ``permutations`` seeded shuffles of the series
whose best split scores as high (a max-statistic permutation test, which pays for having
tried every split; a shift smaller than ``min_shift`` is not tested, since it could not be
reported). The series is ``drifting`` when that share is at most ``alpha`` and the later
segment is slower by at least ``min_shift``; the change is dated at the first run of the later
segment. A gradual drift is a ramp, which this test sees as a step placed inside it; a change
the host made alone cancels in the normalized view; one run's outlier cannot fill a segment.
The same test the other way finds a lasting speed-up, which is reported, never failed.

Pure numpy; unit-tested on synthetic series with known answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrendPolicy:
    """Every knob of the drift test (benchmarks/history_aa.py sweeps them)."""

    window: int = 30  # runs looked at, the current one included
    min_segment: int = 5  # runs on each side of a split: a step must last this long
    # The permutation p-value a change must reach. The test runs after every run, so this is
    # paid at each of up to 21 looks per 30 runs (docs/history.md has the sweep).
    alpha: float = 0.002
    min_shift: float = 0.05  # and its size, as a ratio of times past 1
    permutations: int = 1999
    seed: int = 0


DEFAULT_TREND = TrendPolicy()


@dataclass(frozen=True)
class ChangePoint:
    """The best split of one view of a series."""

    split: int  # index of the first run of the later segment
    shift: float  # later / earlier, as a ratio of times (> 1: slower)
    # None: not tested, the shift being smaller than any change the rule reports
    p_value: float | None
    runs: int
    normalized: bool

    def as_dict(self) -> dict[str, Any]:
        return {"split": self.split, "shift": round(self.shift, 5),
                "p_value": None if self.p_value is None else round(self.p_value, 5),
                "runs": self.runs, "normalized": self.normalized}


def _ranks(values: Any) -> Any:
    """Mid-ranks from 1 (tied values share their mean rank)."""
    import numpy as np

    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    ordered = values[order]
    for value in np.unique(ordered[1:][np.diff(ordered) == 0]):
        same = values == value
        ranks[same] = ranks[same].mean()
    return ranks


def _split_scores(ranks: Any, min_segment: int, sign: int) -> tuple[Any, Any]:
    """The maximally selected rank statistic of each row of ``ranks`` (shuffles x runs), one-
    sided: at every allowed split, the later segment's centred rank sum (its Mann-Whitney U
    less its mean) over its standard deviation under permutation, times ``sign`` (+1: later
    slower); returns the best score and its split. Standardizing makes a short recent segment
    count as much as a long one."""
    import numpy as np

    n = ranks.shape[1]
    k = np.arange(1, n)  # the earlier segment's length
    centred = ranks - ranks.mean(axis=1, keepdims=True)
    later = -np.cumsum(centred, axis=1)[:, :-1]  # the later segment's centred rank sum
    spread = (centred ** 2).sum(axis=1, keepdims=True) / (n - 1)
    allowed = (k >= min_segment) & (n - k >= min_segment)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(allowed & (spread > 0), sign * later / np.sqrt(spread * k * (n - k) / n),
                     -np.inf)
    best = z.argmax(axis=1)
    return z[np.arange(len(z)), best], best + 1


def change_point(levels: Sequence[float], policy: TrendPolicy = DEFAULT_TREND,
                 normalized: bool = False, sign: int = 1) -> ChangePoint | None:
    """The best split of one view's series (positive run levels, oldest first) towards slower
    times (``sign`` -1: faster), or None when the series is too short for two segments."""
    import numpy as np

    values = np.log(np.asarray(levels, dtype=np.float64))
    n = len(values)
    if n < 2 * policy.min_segment:
        return None
    ranks = _ranks(values)[None, :]
    observed, split = _split_scores(ranks, policy.min_segment, sign)
    cut = int(split[0])
    later, earlier = values[cut:], values[:cut]
    shift = float(np.median((later[:, None] - earlier[None, :]).ravel()))
    if sign * shift < math.log1p(policy.min_shift) or not np.isfinite(observed[0]):
        return ChangePoint(cut, math.exp(shift), None, n, normalized)  # too small to report
    rng = np.random.default_rng(policy.seed)
    shuffled = rng.permuted(np.repeat(ranks, policy.permutations, axis=0), axis=1)
    scores, _ = _split_scores(shuffled, policy.min_segment, sign)
    # A shuffle scoring as high as the series counts against it (ties are common in ranks).
    p_value = (1 + int((scores >= observed[0] - 1e-9).sum())) / (policy.permutations + 1)
    return ChangePoint(cut, math.exp(shift), p_value, n, normalized)


@dataclass(frozen=True)
class Trend:
    """The drift test's finding on one series."""

    views: tuple[ChangePoint, ...]  # the view tested
    drifting: bool
    faster: bool  # a lasting change to faster times

    @property
    def binding(self) -> ChangePoint:
        return self.views[0]


def assess(own: Sequence[float], normalized: Sequence[float] | None,
           policy: TrendPolicy = DEFAULT_TREND) -> Trend | None:
    """The drift test on a series: its normalized view where the runs have one (``normalized``
    None where they did not all time the same yardstick), else its own times; None when the
    series is too short."""
    levels, is_normalized = (normalized, True) if normalized is not None else (own, False)
    levels = levels[-policy.window:]
    slower = change_point(levels, policy, normalized=is_normalized, sign=1)
    if slower is None:
        return None
    if slower.p_value is not None and slower.p_value <= policy.alpha:
        return Trend((slower,), drifting=True, faster=False)
    faster = change_point(levels, policy, normalized=is_normalized, sign=-1)
    if faster is not None and faster.p_value is not None and faster.p_value <= policy.alpha:
        return Trend((faster,), drifting=False, faster=True)
    return Trend((slower,), drifting=False, faster=False)
