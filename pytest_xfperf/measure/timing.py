"""The timing loop. No other module calls a clock around inference."""

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


# Blocks of an interleaved measurement (a case alternating with its reference). A block
# shorter than this can fall wholly inside a disturbed phase of a shared host (a neighbour
# holding a core for a few hundred ms), and its ratio case/reference then measures the
# disturbance: on the 2-core CI host, 0.08 s blocks gave ratios in two modes 25 % apart,
# 0.4 s blocks of the same pair stayed within 3 % (benchmarks/gate_power.py).
MIN_BLOCK_SECONDS = 0.25


def block_policy(run: TimingPolicy, blocks: int) -> TimingPolicy:
    """One of ``blocks`` blocks that together take about as long as the run's policy, each
    at least MIN_BLOCK_SECONDS when the run itself asks for that much time."""
    return TimingPolicy(1, max(3, -(-max(run.min_rounds, 10) // blocks)),
                        max(run.min_time / blocks, min(run.min_time, MIN_BLOCK_SECONDS)),
                        run.max_time / blocks)


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
    do nothing: interleaved blocks (harness._interleaved) pause it once around all of them,
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
