"""The timing loop of one stream of calls (the benchmarks' hand loops use it too); the
gate's blocks are timed by measure/blocks.py. No module outside measure/ reads a clock
around inference."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator
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
    with gc_paused():
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
    return samples


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Collect once, then keep the garbage collector off until the block ends. Nested uses
    do nothing: a measurement's blocks (measure/blocks.py) pause it once around all of them,
    since one collection costs about 0.2 s once torch and transformers are loaded."""
    if not gc.isenabled():
        yield
        return
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
