"""Interleaved blocks: the case, then the yardstick, block after block, under one lock.

A block of the case is its calls for about ``min_time / first_blocks`` seconds; the yardstick
block after it is a fixed share of that. A block's value is the median of its calls, on the
gate's clock: wall clock of a synchronized call on the CPU, device time by CUDA events on the
GPU (steadier there: it leaves out the host's launch jitter). Every wall-clock sample is kept
too, for the reported percentiles.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_xfperf.baselines.rule import GatePolicy
from pytest_xfperf.measure.timing import TimingPolicy, gc_paused


@dataclass(frozen=True)
class Timed:
    """Something to time: a prepared call, how to wait for it, and its clock."""

    call: Callable[[], object]
    synchronize: Callable[[], None]
    device: bool = False  # True: CUDA events decide the block's value


@dataclass(frozen=True)
class BlockPlan:
    """How long a block of each side lasts, from the run's timing settings and the policy."""

    case_seconds: float
    case_calls: int
    case_max_seconds: float
    yardstick_seconds: float
    yardstick_calls: int
    warmup_rounds: int
    settle_calls: int = 0

    def yardstick_block_seconds(self, case_block_seconds: float) -> float:
        """The yardstick block after a case block that lasted ``case_block_seconds``: the
        policy's share of it. A case whose minimum calls outlast the planned block (slow
        calls, a generation) gets a proportionally longer yardstick block, not a shorter
        share."""
        return self.yardstick_seconds * max(1.0, case_block_seconds / self.case_seconds)

    @classmethod
    def of(cls, timing: TimingPolicy, policy: GatePolicy) -> BlockPlan:
        seconds = timing.min_time / policy.first_blocks
        calls = max(policy.min_block_calls, math.ceil(timing.min_rounds / policy.first_blocks))
        return cls(seconds, calls, max(seconds, timing.max_time / policy.max_blocks),
                   seconds * policy.yardstick_share, policy.min_yardstick_calls,
                   timing.warmup_rounds, policy.settle_calls)


@dataclass
class Series:
    """Blocks measured so far."""

    clock: str  # "wall" or "device"
    case_ms: list[float] = field(default_factory=list)  # block medians, gate's clock
    yardstick_ms: list[float] = field(default_factory=list)
    samples_ms: list[float] = field(default_factory=list)  # every case call, wall clock
    device_ms: list[float] = field(default_factory=list)  # every case call, CUDA events
    case_seconds: float = 0.0
    yardstick_seconds: float = 0.0
    warmed_up: bool = False

    @property
    def blocks(self) -> int:
        return len(self.case_ms)


def time_block(target: Timed, calls: int, seconds: float, max_seconds: float,
               settle: int = 0) -> tuple[list[float], list[float]]:
    """Wall-clock and (GPU) device milliseconds of each call of one block, after ``settle``
    untimed calls."""
    for _ in range(settle):
        target.call()
        target.synchronize()
    wall: list[float] = []
    device: list[float] = []
    clock = time.perf_counter
    events = _events() if target.device else None
    started = clock()
    while True:
        t0 = clock()
        if events is not None:
            begin, end = events
            begin.record()
            target.call()
            end.record()
            end.synchronize()
            # The wall sample ends at the synchronize: reading the events' interval is
            # the harness's work, not the call's.
            wall.append((clock() - t0) * 1000)
            device.append(float(begin.elapsed_time(end)))
        else:
            target.call()
            target.synchronize()
            wall.append((clock() - t0) * 1000)
        elapsed = clock() - started
        if (len(wall) >= calls and elapsed >= seconds) or elapsed >= max_seconds:
            return wall, device


def _events() -> tuple[Any, Any]:
    import torch

    return (torch.cuda.Event(enable_timing=True),  # type: ignore[no-untyped-call]
            torch.cuda.Event(enable_timing=True))  # type: ignore[no-untyped-call]


def measure(series: Series, case: Timed, yardstick: Timed | None, plan: BlockPlan,
            blocks: int) -> None:
    """Add ``blocks`` blocks to ``series`` (warming both sides up first, once)."""
    if not series.warmed_up:
        for target in (case, yardstick):
            for _ in range(plan.warmup_rounds if target is not None else 0):
                assert target is not None
                target.call()
                target.synchronize()
        series.warmed_up = True
    clock = time.perf_counter
    with gc_paused():
        for _ in range(blocks):
            t0 = clock()
            wall, device = time_block(case, plan.case_calls, plan.case_seconds,
                                       plan.case_max_seconds, plan.settle_calls)
            lasted = clock() - t0
            series.case_seconds += lasted
            series.samples_ms += wall
            series.device_ms += device
            series.case_ms.append(statistics.median(device if case.device else wall))
            if yardstick is None:
                continue
            t0 = clock()
            y_wall, y_device = time_block(yardstick, plan.yardstick_calls,
                                          plan.yardstick_block_seconds(lasted),
                                          plan.case_max_seconds, plan.settle_calls)
            series.yardstick_seconds += clock() - t0
            series.yardstick_ms.append(statistics.median(y_device if yardstick.device
                                                         else y_wall))
