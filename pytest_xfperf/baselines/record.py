"""The record step: what a baseline entry keeps of one case's result."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pytest_xfperf.baselines.store import MAX_SAMPLES, noise_block

if TYPE_CHECKING:
    from pytest_xfperf.result import Result


def spread(samples: list[float], keep: int = MAX_SAMPLES) -> list[float]:
    """At most ``keep`` of ``samples``, evenly spread over the run."""
    if len(samples) <= keep:
        return samples
    step = len(samples) / keep
    return [samples[int(i * step)] for i in range(keep)]


def _rounded(record: dict[str, Any]) -> dict[str, Any]:
    return {k: [round(x, 5) for x in v] if isinstance(v, list) else v
            for k, v in record.items()}


def entry(result: Result) -> dict[str, Any]:
    """Metrics, stats, a spread of the samples (reports and pytest-benchmark), the block
    records the gate compares with, and what reproduces the number (versions, graph,
    settings). A case recorded despite a failed accuracy check is marked ``forced``."""
    samples = spread(result.samples_ms)
    stats = result.stats.as_dict() if result.stats else {}
    out: dict[str, Any] = {
        "metrics": {k: round(v, 6) for k, v in result.metrics().items()},
        "stats": {k: round(v, 6) for k, v in stats.items()},
        "samples_ms": [round(s, 4) for s in samples],
        "noise": noise_block(samples, stats),
        "versions": dict(result.versions),
        "graph": result.graph,
        "settings": result.runner_settings,
    }
    if result.timing:
        out["timing"] = _rounded(result.timing)
    if result.reference_timing:
        out["speedup"] = _rounded(result.reference_timing)
    if result.more_timing:
        out["more_timing"] = {k: _rounded(v) for k, v in result.more_timing.items()}
    if result.generation:
        out["generation"] = result.generation
    if result.serving:
        out["serving"] = result.serving
    if result.memory_mb is not None:
        out["memory_mode"] = result.memory_mode  # memory is compared only within one mode
    if result.seconds is not None:
        out["seconds"] = round(result.seconds, 2)  # what sharding balances
    if result.accuracy_problems:
        out["forced"] = True
    out["recorded"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return out
