"""The scenarios of MLPerf LoadGen over one model instance, in real time.

- ``single-stream``: one request at a time (the plugin's ordinary latency timing; not here);
- ``offline``: every request is there at the start; the batcher groups them; the figure is
  throughput;
- ``server``: requests arrive as a Poisson process at a rate; latency counts from arrival
  (queueing included); the figure is the highest rate whose p99 stays under a bound, found by a
  search that is bounded in time.

The loop runs the model in the caller's thread. Requests arrive on a precomputed schedule: one
that "arrived" while the model was busy is queued with its scheduled arrival time, exactly as a
request thread would have queued it, so latency includes the wait for a busy model.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_xfperf.measure.stats import percentile
from pytest_xfperf.serving.batcher import DynamicBatcher, Request, unbatch
from pytest_xfperf.serving.workload import TokenPool

SCENARIOS = ("single-stream", "offline", "server")
SINGLE_STREAM = "single-stream"

Execute = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int
    max_delay_s: float
    padding: str
    buckets: tuple[int, ...] = ()

    def batcher(self, max_length: int) -> DynamicBatcher:
        return DynamicBatcher(self.max_batch, self.max_delay_s, self.padding, max_length,
                              self.buckets)


@dataclass
class RunStats:
    """One pass of a scenario over a workload."""

    requests: int
    completed: int
    seconds: float
    latencies_ms: list[float]
    real_tokens: int
    padded_tokens: int
    batch_sizes: Counter[int]
    scheduler_seconds: float  # time in the loop outside the model and outside waiting
    rate: float = 0.0  # offered rate (server), 0 for offline
    aborted: str = ""  # why a server trial stopped early (its p99 was already lost)

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.real_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def padding_share(self) -> float:
        """Share of the tokens computed that were padding."""
        return 1 - self.real_tokens / self.padded_tokens if self.padded_tokens else 0.0

    def latency(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return percentile(ordered, q) if ordered else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "completed": self.completed,
            "seconds": round(self.seconds, 4), "rate": round(self.rate, 3),
            "throughput_rps": round(self.throughput, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "p50_ms": round(self.latency(50), 3) if self.latencies_ms else None,
            "p90_ms": round(self.latency(90), 3) if self.latencies_ms else None,
            "p99_ms": round(self.latency(99), 3) if self.latencies_ms else None,
            "padding_share": round(self.padding_share, 4),
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "scheduler_us_per_request": round(
                1e6 * self.scheduler_seconds / max(1, self.completed), 2),
            **({"aborted": self.aborted} if self.aborted else {}),
        }


def run(
    execute: Execute,
    pool: TokenPool,
    lengths: Sequence[int],
    arrivals: Sequence[float] | None,
    policy: BatchPolicy,
    bound_ms: float | None = None,
    keep_outputs: Sequence[int] = (),
    rate: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[RunStats, dict[int, Any]]:
    """Serve ``lengths`` (request i has lengths[i] tokens) arriving at ``arrivals`` (seconds
    from the start; None: all at once, the offline scenario) offered at ``rate`` per second.

    With ``bound_ms``, the pass stops as soon as more than 1 % of the requests (plus one) are
    already past the bound, completed or still queued: its p99 is lost, and an overloaded
    trial must not run for minutes. Returns the stats and the outputs of ``keep_outputs``.
    """
    count = len(lengths)
    offline = arrivals is None
    times = [0.0] * count if arrivals is None else list(arrivals)
    batcher = policy.batcher(pool.max_length)
    keep = set(keep_outputs)
    kept: dict[int, Any] = {}
    latencies: list[float] = []
    sizes: Counter[int] = Counter()
    real = padded = 0
    late_allowed = int(0.01 * count) + 1
    late = 0
    bound_s = bound_ms / 1000 if bound_ms is not None else math.inf
    busy = 0.0  # seconds in the model and in deliberate waits: the rest is the scheduler's
    aborted = ""
    start = clock()
    admitted = 0
    while len(latencies) < count:
        now = clock() - start
        while admitted < count and times[admitted] <= now:
            batcher.add(Request(admitted, lengths[admitted], times[admitted]))
            admitted += 1
        # A server cannot know that a request is the last one: it waits the delay out. Offline,
        # every request is known, and the last partial batch goes at once.
        batch = batcher.pop(now, more_coming=admitted < count or not offline)
        if batch is None:
            wake = batcher.deadline()
            if admitted < count:
                wake = times[admitted] if wake is None else min(wake, times[admitted])
            if wake is not None and wake > now:
                before = clock()
                sleep(wake - now)
                busy += clock() - before
            continue
        inputs = pool.pad([r.id for r in batch.requests], [r.length for r in batch.requests],
                          batch.padded_length)
        before = clock()
        outputs = execute(inputs)
        done = clock()
        busy += done - before
        finished = done - start
        for request in batch.requests:
            latency = finished - request.arrival
            latencies.append(latency * 1000)
            late += latency > bound_s
        if keep:
            for request_id, item in unbatch(batch, outputs):
                if request_id in keep:
                    # A copy: a view would keep the whole batch's output alive, and every
                    # later batch would then pay for fresh host pages (on an H200's host, 17
                    # ms for BERT-base's 25 MB output at 64x128, 4x the model's own call).
                    kept[request_id] = copy.copy(item)  # an array: a copy of its data
        sizes[batch.size] += 1
        real += batch.real_tokens
        padded += batch.padded_tokens
        if bound_ms is not None:
            waiting_late = _queued_past(batcher, finished - bound_s)
            if late + waiting_late > late_allowed:
                aborted = (f"stopped after {len(latencies)} of {count} requests: "
                           f"{late + waiting_late} already past {bound_ms:g} ms")
                break
    seconds = clock() - start
    stats = RunStats(count, len(latencies), seconds, latencies, real, padded, sizes,
                     max(0.0, seconds - busy), rate, aborted)
    return stats, kept


def _queued_past(batcher: DynamicBatcher, cutoff: float) -> int:
    """Queued requests that arrived before ``cutoff`` (so are already past the bound). Each
    queue is in arrival order: only its late head is walked."""
    late = 0
    for queue in batcher.queues:
        for request in queue:
            if request.arrival >= cutoff:
                break
            late += 1
    return late


@dataclass
class SearchOutcome:
    bound_ms: float
    best_rate: float | None  # the highest rate tried whose p99 met the bound
    best: RunStats | None
    trials: list[RunStats] = field(default_factory=list)
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "bound_ms": self.bound_ms,
            "max_rate": None if self.best_rate is None else round(self.best_rate, 3),
            "at_max_rate": self.best.as_dict() if self.best else None,
            "trials": [{"rate": round(t.rate, 3),
                        "p99_ms": round(t.latency(99), 3) if t.latencies_ms else None,
                        "met": _met(t, self.bound_ms), **({"aborted": t.aborted}
                                                          if t.aborted else {})}
                       for t in self.trials],
            "message": self.message,
        }


def _met(stats: RunStats, bound_ms: float) -> bool:
    return not stats.aborted and stats.completed == stats.requests \
        and stats.latency(99) <= bound_ms


def search_rate(
    trial: Callable[[float], RunStats],
    capacity: float,
    bound_ms: float,
    budget_s: float,
    resolution: float = 1.05,
    min_fraction: float = 1 / 64,
    max_growth: float = 2.0,
    clock: Callable[[], float] = time.perf_counter,
) -> SearchOutcome:
    """Highest Poisson rate whose p99 latency meets ``bound_ms``.

    Starts at ``capacity`` (the offline throughput, about what the model can sustain): halves
    down until a rate passes, or grows by 1.25x (up to ``max_growth`` x capacity) until one
    fails; then bisects [pass, fail] in log space until their ratio is under ``resolution``.
    Ends when the budget is spent (keeping the best rate so far), and with "no rate meets the
    bound" when even ``capacity * min_fraction`` fails.
    """
    if capacity <= 0:
        raise ValueError("capacity must be positive")
    outcome = SearchOutcome(bound_ms, None, None)
    started = clock()
    passed, failed = 0.0, 0.0  # 0: none yet
    rate = capacity
    floor = capacity * min_fraction
    ceiling = capacity * max_growth
    while True:
        stats = trial(rate)
        outcome.trials.append(stats)
        if _met(stats, bound_ms):
            passed = rate
            outcome.best_rate, outcome.best = rate, stats
        else:
            failed = rate
        if passed and failed and failed / passed <= resolution:
            break
        if passed and not failed and rate >= ceiling:
            outcome.message = (f"every rate tried met the bound, up to {rate:.3g} req/s "
                               f"({max_growth:g}x the offline throughput)")
            break
        if not passed and rate <= floor:
            lowest = min(outcome.trials, key=lambda t: t.latency(99))
            outcome.message = (
                f"no rate meets the bound: p99 <= {bound_ms:g} ms failed even at "
                f"{rate:.3g} req/s ({min_fraction:.3g} of the offline throughput "
                f"{capacity:.3g} req/s); the best rate tried was {lowest.rate:.3g} req/s "
                f"with p99 {lowest.latency(99):.1f} ms")
            break
        if clock() - started > budget_s:
            outcome.message = (f"search stopped at its time budget of {budget_s:g} s after "
                               f"{len(outcome.trials)} trials")
            if not passed:
                lowest = min(outcome.trials, key=lambda t: t.latency(99))
                outcome.message += (f"; no rate met the bound yet: the best rate tried was "
                                    f"{lowest.rate:.3g} req/s with p99 "
                                    f"{lowest.latency(99):.1f} ms")
            break
        if passed and failed:
            rate = math.sqrt(passed * failed)
        elif passed:  # the offline figure is itself noisy: a server may sustain a bit more
            rate = min(ceiling, rate * 1.25)
        else:
            rate = max(floor, rate / 2)
    return outcome


def server_trial_size(rate: float, min_requests: int, max_requests: int,
                      seconds: float) -> int:
    """Requests in one server trial: about ``seconds`` of arrivals, within the bounds."""
    return max(min_requests, min(max_requests, int(rate * seconds)))
