"""Summary statistics of timing samples."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without importing numpy."""
    if not sorted_values:
        raise ValueError("no samples")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    weight = position - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per call; throughput in samples (batch rows) per second."""

    rounds: int
    mean_ms: float
    stdev_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mad_ms: float  # median absolute deviation: a noise figure robust to outliers
    cv: float  # coefficient of variation (stdev / mean)
    throughput: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(samples_s: Sequence[float], batch: int) -> LatencyStats:
    if not samples_s:
        raise ValueError("no samples to summarize")
    ms = sorted(s * 1000.0 for s in samples_s)
    mean = statistics.fmean(ms)
    stdev = statistics.stdev(ms) if len(ms) > 1 else 0.0
    median = percentile(ms, 50)
    mad = statistics.median(abs(x - median) for x in ms)
    return LatencyStats(
        rounds=len(ms), mean_ms=mean, stdev_ms=stdev, min_ms=ms[0], max_ms=ms[-1],
        p50_ms=median, p90_ms=percentile(ms, 90), p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99), mad_ms=mad, cv=stdev / mean if mean > 0 else 0.0,
        throughput=batch * 1000.0 / mean if mean > 0 else 0.0,
    )


MAD_TO_SIGMA = 1.4826  # MAD of a normal sample times this estimates its standard deviation


def robust_cv(samples: Sequence[float]) -> float:
    """MAD-based coefficient of variation: a noise figure that one outlier does not move."""
    median = statistics.median(samples)
    if median <= 0:
        return 0.0
    return MAD_TO_SIGMA * statistics.median(abs(x - median) for x in samples) / median
