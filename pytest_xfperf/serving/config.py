"""The serving scenarios' workload and batcher settings, built once from the run's options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_xfperf.serving.workload import LengthDistribution


@dataclass(frozen=True)
class ServingConfig:
    lengths: LengthDistribution = field(
        default_factory=lambda: LengthDistribution.parse("lognormal:48:0.6"))
    padding: str = "buckets"
    buckets: tuple[int, ...] = ()
    max_delay_ms: float = 10.0
    requests: int = 400
    bound_ms: float = 100.0
    budget_s: float = 60.0
    seed: int = 0
    # Seconds of arrivals per server trial: a queue that grows slowly past capacity shows in
    # a trial of seconds, not in one of a few hundred milliseconds.
    trial_s: float = 5.0

    def describe(self) -> dict[str, Any]:
        return {"lengths": str(self.lengths), "padding": self.padding,
                "buckets": list(self.buckets) or "auto", "max_queue_delay_ms": self.max_delay_ms,
                "requests": self.requests, "p99_bound_ms": self.bound_ms,
                "search_budget_s": self.budget_s, "server_trial_s": self.trial_s}
