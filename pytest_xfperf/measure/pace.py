"""What paces an eager GPU call: the host launching its kernels, or the GPU's work.

Eager PyTorch returns from a call once the host has launched its kernels; the GPU finishes
them later. Where the host's launching takes about as long as the whole call, the GPU waits
on each launch and the host's launch rate paces the call (the launch yardstick follows it).
Where the GPU's work outlasts the launching by more than the host routinely moves between
processes (``GatePolicy.host_move_covered``), the launches run ahead and hide behind the
work: the GPU paces the call, and the GEMM yardstick is its yardstick. On an H100, BERT-base
FP32 at batch 32 took 20.4 ms of device time, its captured graph 19.5 ms; divided by the
launch yardstick, which had moved 1.36x with the host, it read -26 % (docs/gpu.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Pace:
    """One eager call's median host time to launch it, and to its end on the GPU."""

    launched_ms: float
    finished_ms: float

    def paced_by_device(self, host_move_covered: float) -> bool:
        """Whether the GPU's work paces the call: it outlasts the launching by more than
        the host's routine move, so a host that slows its launches by that much still
        leaves the GPU the slower side."""
        return self.finished_ms > host_move_covered * self.launched_ms


def probe(call: Callable[[], object], synchronize: Callable[[], None], calls: int) -> Pace:
    """The medians over ``calls`` calls of ``call`` (after as many untimed ones): when it
    returned, and when ``synchronize`` after it did."""
    for _ in range(calls):
        call()
        synchronize()
    launched: list[float] = []
    finished: list[float] = []
    clock = time.perf_counter
    for _ in range(calls):
        t0 = clock()
        call()
        launched.append((clock() - t0) * 1000)
        synchronize()
        finished.append((clock() - t0) * 1000)
    return Pace(statistics.median(launched), statistics.median(finished))
