"""Timing generations in blocks, the way measure/blocks.py times single calls.

One generation is a prefill and ``new_tokens - 1`` decode steps. Its time to first token
(TTFT) runs from the prefill's start to the first token; its time per output token (TPOT) is
the mean of its decode steps. A block is generations for about a block's time (at least the
plan's calls), followed by a block of the machine yardstick; a block's TTFT and TPOT are the
medians over its generations. The gate reads the TPOT's and the TTFT's block records exactly
as it reads a single-stream case's latency blocks.

The clock: on the CPU, and for ONNX Runtime's CUDA provider (each step ends with its token
on the host), the wall clock; for the PyTorch GPU generators, CUDA events recorded after the
prefill and after every step, read once at the end of the generation, so that waiting for
the device adds nothing between steps.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_xfperf.backends.catalog import pace_fields
from pytest_xfperf.baselines.rule import GatePolicy
from pytest_xfperf.measure.blocks import BlockPlan, Timed, time_block
from pytest_xfperf.measure.case import ReferenceSource
from pytest_xfperf.measure.timing import gc_paused

if TYPE_CHECKING:
    import contextlib

    import numpy as np

    from pytest_xfperf.generation.generators import Generator
    from pytest_xfperf.measure.yardstick import Yardstick


# The stopping rule, asked after each round with the case's block records by metric, the
# speed-up reference's record of the primary figure (None where there is none) and whether no
# further round is allowed: True stops.
GenerationStopRule = Callable[[Mapping[str, dict[str, Any]], "Mapping[str, Any] | None", bool],
                              bool]


@dataclass(frozen=True)
class GenerationTimes:
    """One generation, in milliseconds."""

    ttft_ms: float
    steps_ms: list[float]  # each decode step
    wall_ms: float  # the whole generation on the wall clock

    @property
    def tpot_ms(self) -> float | None:
        return statistics.fmean(self.steps_ms) if self.steps_ms else None


@dataclass
class GenerationSeries:
    clock: str  # "wall" or "device"
    backend: str = ""  # the generator's backend: its records say what paces it (pace_fields)
    ttft_ms: list[float] = field(default_factory=list)  # block medians
    tpot_ms: list[float] = field(default_factory=list)
    yardstick_ms: list[float] = field(default_factory=list)
    generations: list[GenerationTimes] = field(default_factory=list)
    case_seconds: float = 0.0
    yardstick_seconds: float = 0.0
    warmed_up: bool = False

    @property
    def blocks(self) -> int:
        return len(self.ttft_ms)

    def records(self, yardstick: str | None) -> dict[str, dict[str, Any]]:
        """The block records by metric, in the form a baseline stores them."""
        out: dict[str, dict[str, Any]] = {}
        for metric, values in (("tpot_ms", self.tpot_ms), ("ttft_ms", self.ttft_ms)):
            if not values:
                continue
            record: dict[str, Any] = {"clock": self.clock, "case_ms": list(values),
                                      **pace_fields(self.clock, self.backend,
                                                    prefill=metric == "ttft_ms",
                                                    generation=True)}
            if yardstick is not None and self.yardstick_ms:
                record.update(yardstick=yardstick, yardstick_ms=list(self.yardstick_ms))
            out[metric] = record
        return out


def generate_once(generator: Generator, input_ids: np.ndarray, new_tokens: int,
                  device_clock: bool) -> GenerationTimes:
    """One timed greedy generation of ``new_tokens`` tokens."""
    clock = time.perf_counter
    generator.load(input_ids, new_tokens)
    if device_clock:
        import torch

        events = [torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                  for _ in range(new_tokens + 1)]
        started = clock()
        events[0].record()
        generator.prefill()
        events[1].record()
        for step in range(2, new_tokens + 1):
            generator.decode()
            events[step].record()
        events[-1].synchronize()
        wall = (clock() - started) * 1000
        marks = [float(events[0].elapsed_time(e)) for e in events[1:]]
        steps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
        return GenerationTimes(marks[0], steps, wall)
    started = clock()
    generator.prefill()
    generator.synchronize()
    first = clock()
    steps, previous = [], first
    for _ in range(new_tokens - 1):
        generator.decode()
        generator.synchronize()
        now = clock()
        steps.append((now - previous) * 1000)
        previous = now
    return GenerationTimes((first - started) * 1000, steps, (previous - started) * 1000)


class GenerationMeasurement:
    """Rounds of blocks of generations and yardstick until the gate's stopping rule is
    satisfied (or the policy's maximum), as measure/case.py does for single calls."""

    def __init__(self, generator: Generator, input_ids: np.ndarray, new_tokens: int,
                 yardstick: Yardstick | None, plan: BlockPlan, policy: GatePolicy,
                 lock: Callable[[], contextlib.AbstractContextManager[None]],
                 clock: str = "") -> None:
        """``clock``: "wall" or "device" (CUDA events; a PyTorch GPU generator only), the
        generator's own where not given (a speed-up reference is timed on its case's)."""
        self._generator, self._ids, self._new = generator, input_ids, new_tokens
        self._yardstick, self._plan, self._policy, self._lock = yardstick, plan, policy, lock
        self._device_clock = (clock or generator.clock) == "device"
        self.series = GenerationSeries(clock="device" if self._device_clock else "wall",
                                       backend=generator.name)

    def _block(self) -> None:
        plan, series = self._plan, self.series
        clock = time.perf_counter
        started = clock()
        block: list[GenerationTimes] = []
        while True:
            block.append(generate_once(self._generator, self._ids, self._new,
                                       self._device_clock))
            elapsed = clock() - started
            if (len(block) >= plan.case_calls and elapsed >= plan.case_seconds
                    or elapsed >= plan.case_max_seconds):
                break
        series.case_seconds += elapsed
        series.generations += block
        series.ttft_ms.append(statistics.median(g.ttft_ms for g in block))
        tpots = [g.tpot_ms for g in block if g.tpot_ms is not None]
        if tpots:
            series.tpot_ms.append(statistics.median(tpots))
        if self._yardstick is not None:
            stick = Timed(self._yardstick.call, self._yardstick.synchronize,
                          self._yardstick.device)
            t0 = clock()
            wall, device = time_block(stick, plan.yardstick_calls,
                                      plan.yardstick_block_seconds(elapsed),
                                      plan.case_max_seconds, plan.settle_calls)
            series.yardstick_seconds += clock() - t0
            series.yardstick_ms.append(statistics.median(device if stick.device else wall))

    def _blocks(self, count: int) -> None:
        series = self.series
        with self._lock(), gc_paused():
            if not series.warmed_up:
                # The first generation builds what later ones reuse (a captured graph,
                # allocator pools, ORT's kernels): not timed.
                generate_once(self._generator, self._ids, self._new, self._device_clock)
                if self._yardstick is not None:
                    for _ in range(self._plan.warmup_rounds):
                        self._yardstick.call()
                        self._yardstick.synchronize()
                series.warmed_up = True
            for _ in range(count):
                self._block()

    def close(self) -> None:
        """Release the generator and the yardstick (a reference's, kept by the session)."""
        self._generator.close()
        if self._yardstick is not None:
            self._yardstick.close()
            self._yardstick = None

    def extend(self, count: int) -> dict[str, dict[str, Any]]:
        """``count`` more blocks; the block records by metric so far."""
        self._blocks(count)
        return self.series.records(self._identity())

    def _identity(self) -> str | None:
        return self._yardstick.identity if self._yardstick is not None else None

    def run(self, stop: GenerationStopRule, recording: bool,
            reference: ReferenceSource | None = None
            ) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, int]:
        """(block records by metric, the speed-up reference's record of the primary figure
        or None, rounds taken). After each round the reference is brought to as many blocks
        as the case has, as for a single-stream case (measure/case.py)."""
        policy = self._policy
        self._blocks(policy.record_blocks if recording else policy.first_blocks)
        rounds = 1
        while True:
            records = self.series.records(self._identity())
            eager = reference(self.series.blocks) if reference is not None else None
            final = recording or self.series.blocks + policy.round_blocks > policy.max_blocks
            if final or stop(records, eager, final):
                return records, eager, rounds
            self._blocks(policy.round_blocks)
            rounds += 1
