"""Verdicts and gated metrics, defined once: the gate, the baseline store, every report and the
CLI read them from here."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(str, enum.Enum):
    """What the gate says of one case. The value is the text reports show: upper case for the
    verdicts that fail the test."""

    PASS = "pass"
    RECORDED = "recorded"
    NO_BASELINE = "no baseline"
    # A baseline exists, but from a machine whose fingerprint differs: not comparable.
    OTHER_MACHINE = "other machine"
    OTHER_MACHINE_FAIL = "OTHER MACHINE"  # the same with --xfperf-other-machine=fail
    IMPROVED = "improved"  # faster than the baseline past the tolerance: suggest recording
    UNSTABLE = "unstable"  # the measurement cannot resolve the tolerance
    REGRESSED = "REGRESSED"
    ACCURACY = "ACCURACY"
    DRIFT = "DRIFT"  # the graph lost fusions or quantization
    UNSTABLE_FAIL = "UNSTABLE"  # unstable, with --xfperf-fail-on-unstable
    STALE = "STALE"  # improved, with --xfperf-fail-on-improvement
    BOUND_UNMET = "BOUND UNMET"  # server scenario: no arrival rate met the p99 bound
    # Within the baseline's tolerance, but the run history shows a lasting slowdown.
    DRIFTING = "drifting"
    DRIFTING_FAIL = "DRIFTING"  # the same with --xfperf-fail-on-drift

    @property
    def failed(self) -> bool:
        return self.value.isupper()

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Metric:
    """One gated figure.

    ``direction`` is +1 where higher is better; ``tolerance`` names the field of
    ``settings.Tolerances`` that bounds it; ``absolute`` metrics are compared by their drop,
    the others by their ratio; ``slack`` is a change too small to flag whatever the ratio
    (host memory depends on what earlier cases left in the allocators); a ``tail`` metric
    (a high percentile of the calls) counts only when both halves of the run show it."""

    name: str
    unit: str
    direction: int
    tolerance: str
    label: str
    format: str
    timing: bool = False  # needs timing (not measured under --benchmark-disable)
    absolute: bool = False
    slack: float = 0.0
    tail: bool = False
    inverse: str = ""  # the metric that is this one's inverse (decided with it)
    paced: bool = False  # a time or rate the host's pace moves (not a size, not a ratio)

    def render(self, value: float) -> str:
        return format(value, self.format) + (f" {self.unit}" if self.unit else "")


METRICS: dict[str, Metric] = {m.name: m for m in (
    # Decided by the block rule (baselines/rule.py); the others by thresholds.
    Metric("p50_ms", "ms", -1, "p50", "p50 latency", ".3f", timing=True, paced=True,
           inverse="throughput"),
    Metric("throughput", "/s", +1, "throughput", "samples/s", ".1f", timing=True, paced=True),
    Metric("speedup", "x", +1, "speedup", "speed-up vs PyTorch", ".2f", timing=True),
    Metric("p99_ms", "ms", -1, "p99", "p99 latency", ".3f", timing=True, paced=True,
           tail=True),
    Metric("tokens_per_s", "tok/s", +1, "throughput", "tokens/s", ".0f", timing=True,
           paced=True),
    # Generation (prefill, then greedy decode with a KV cache): time to first token and time
    # per output token, block-decided like p50; tokens/s is the batch over the TPOT.
    Metric("ttft_ms", "ms", -1, "p50", "time to first token", ".3f", timing=True, paced=True),
    Metric("tpot_ms", "ms", -1, "p50", "time per output token", ".3f", timing=True, paced=True,
           inverse="tokens_per_s"),
    Metric("kv_cache_mb", "MB", -1, "memory", "KV cache", ".1f", timing=True, slack=1.0),
    Metric("max_rate", "req/s", +1, "throughput", "max rate at the p99 bound", ".1f",
           timing=True, paced=True),
    Metric("memory_mb", "MB", -1, "memory", "host memory growth", ".1f", timing=True,
           slack=128.0),
    Metric("gpu_memory_mb", "MB", -1, "memory", "GPU memory", ".1f", timing=True, slack=16.0),
    Metric("cosine", "", +1, "accuracy", "cosine vs FP32", ".5f", absolute=True),
    Metric("retrieval", "", +1, "accuracy", "retrieval agreement", ".3f", absolute=True),
    Metric("top1", "", +1, "accuracy", "top-1 agreement of prompt logits", ".3f",
           absolute=True),
    Metric("token_agreement", "", +1, "accuracy", "greedy tokens FP32 would choose", ".3f",
           absolute=True),
)}
# Decided on interleaved blocks against the baseline's block record, not by a threshold.
BLOCK_METRICS = ("p50_ms", "speedup", "ttft_ms", "tpot_ms")
