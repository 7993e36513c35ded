"""The timing loop. No other module calls a clock around inference."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class TimingPolicy:
    warmup_rounds: int = 3
    min_rounds: int = 10
    min_time: float = 2.0  # seconds of timed calls, at least
    max_time: float = 30.0  # seconds of timed calls, at most (wins over min_rounds)


def time_calls(
    call: Callable[[], object], synchronize: Callable[[], None], policy: TimingPolicy
) -> list[float]:
    """Warm up, then time one call per round (synchronized) until both minimums are met.

    Returns per-call wall-clock seconds. The garbage collector is paused while timing so that
    a collection triggered by earlier allocations does not land inside a sample.
    """
    for _ in range(policy.warmup_rounds):
        call()
        synchronize()
    samples: list[float] = []
    clock = time.perf_counter
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        started = clock()
        while True:
            t0 = clock()
            call()
            synchronize()
            samples.append(clock() - t0)
            elapsed = clock() - started
            if len(samples) >= policy.min_rounds and elapsed >= policy.min_time:
                break
            if elapsed >= policy.max_time:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples
