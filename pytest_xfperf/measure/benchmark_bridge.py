"""Publish our samples to pytest-benchmark, so cases appear in --benchmark-json and compare.

pytest-benchmark has no public API for samples timed elsewhere (its issue #52 asks for one);
its own pedantic mode does exactly this internally: make a stats record, then update it with
each duration. Those two private names are the only coupling, checked here so that a future
pytest-benchmark that renames them degrades to a warning instead of breaking the run.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any


def publish(benchmark: Any, samples_s: Sequence[float], extra_info: Mapping[str, Any]) -> bool:
    make_stats = getattr(benchmark, "_make_stats", None)
    if make_stats is None or getattr(benchmark, "_mode", None):
        warnings.warn(
            "pytest-xfperf: this pytest-benchmark version cannot receive external samples; "
            "the case is gated by pytest-xfperf but missing from --benchmark-json",
            stacklevel=2,
        )
        return False
    benchmark._mode = "pytest-xfperf"  # marks the fixture used, as pedantic() does
    benchmark.extra_info.update(extra_info)
    stats = make_stats(1)
    for duration in samples_s:
        stats.update(duration)
    return True
