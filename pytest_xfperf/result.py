"""What one case produced, and how it is stored and reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_xfperf.baselines.gate import GateOutcome
from pytest_xfperf.matrix import Case
from pytest_xfperf.measure.stats import LatencyStats
from pytest_xfperf.metrics import Verdict
from pytest_xfperf.values import Shape


@dataclass
class Result:
    case: Case
    stats: LatencyStats | None = None  # None when timing is disabled
    samples_ms: list[float] = field(default_factory=list)
    memory_mb: float | None = None
    memory_mode: str = ""
    model_mb: float | None = None  # size of the weights the backend runs (see harness)
    gpu_memory_mb: float | None = None
    gpu_memory_mode: str = ""
    device_stats: LatencyStats | None = None  # GPU time by CUDA events (GPU cases)
    accuracy: dict[str, float] = field(default_factory=dict)
    accuracy_problems: list[str] = field(default_factory=list)
    graph: dict[str, Any] = field(default_factory=dict)
    build_seconds: dict[str, float] = field(default_factory=dict)
    built_now: list[str] = field(default_factory=list)
    prepare_seconds: float = 0.0
    runner_settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    gate: GateOutcome | None = None
    baseline_versions_changed: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    machine_state: dict[str, Any] = field(default_factory=dict)
    graph_notes: list[str] = field(default_factory=list)
    # Serving scenarios (offline/server): their details and gated figures (see serving/).
    serving: dict[str, Any] = field(default_factory=dict)
    serving_metrics: dict[str, float] = field(default_factory=dict)
    bound_unmet: str = ""
    # Block records (measure/case.py): the case's, and its PyTorch reference's (speed-up).
    timing: dict[str, Any] | None = None
    reference_timing: dict[str, Any] | None = None
    speedup: float | None = None  # eager PyTorch on the same device / this case, this run
    # Generative cases (generation/): ``timing`` is the TPOT's block record, ``more_timing``
    # the TTFT's; ``generation`` holds their details, ``generation_metrics`` the gated figures.
    timing_metric: str = "p50_ms"
    more_timing: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    generation_metrics: dict[str, float] = field(default_factory=dict)
    rounds: int = 0  # rounds of blocks the stopping rule took
    # FLOPs per call, achieved FLOP/s at p50, the measured peak and its share (measure/peak.py)
    compute: dict[str, Any] = field(default_factory=dict)
    measure_seconds: dict[str, float] = field(default_factory=dict)  # case, yardstick
    seconds: float | None = None  # the case's wall time, setup included (shard costs)
    trend: list[dict[str, Any]] = field(default_factory=list)  # history/drift.py findings
    verdict: Verdict = Verdict.NO_BASELINE
    raw: dict[str, Any] | None = None  # the JSON it was rebuilt from (results of xdist workers)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """Rebuild what reports need from ``as_json()`` output (sent by xdist workers)."""
        case = Case(data["model"], data["backend"], data["precision"],
                    Shape(int(data["batch"]), int(data["seq"]), int(data.get("new_tokens", 0))),
                    scenario=str(data.get("scenario", "single-stream")))
        baseline = data.get("baseline")
        gate = None
        verdict = Verdict(str(data["verdict"]))
        if baseline is not None:
            gate = GateOutcome(verdict=verdict,
                               regressions=list(baseline.get("regressions", [])),
                               improvements=list(baseline.get("improvements", [])),
                               unstable=list(baseline.get("unstable", [])),
                               deltas=dict(baseline.get("deltas", {})),
                               decisions=dict(baseline.get("decisions", {})))
        return cls(
            case=case, stats=LatencyStats(**data["stats"]) if data.get("stats") else None,
            samples_ms=list(data.get("samples_ms", [])), memory_mb=data.get("memory_mb"),
            gpu_memory_mb=data.get("gpu_memory_mb"), model_mb=data.get("model_mb"),
            device_stats=LatencyStats(**data["device_time"]) if data.get("device_time")
            else None,
            baseline_versions_changed=list((baseline or {}).get("versions_changed", [])),
            accuracy=dict(data.get("accuracy", {})),
            accuracy_problems=list(data.get("accuracy_problems", [])),
            graph=dict(data.get("graph", {})), gate=gate,
            drift=list((baseline or {}).get("graph_drift", [])),
            graph_notes=list((baseline or {}).get("graph_notes", [])),
            serving=dict(data.get("serving") or {}),
            serving_metrics=dict(data.get("serving_metrics") or {}),
            bound_unmet=str(data.get("bound_unmet", "")),
            speedup=data.get("speedup"), verdict=verdict, raw=data,
            generation=dict(data.get("generation") or {}),
            timing_metric=str(data.get("timing_metric") or "p50_ms"),
            generation_metrics=dict(data.get("generation_metrics") or {}),
            compute=dict(data.get("compute") or {}),
            seconds=data.get("seconds"), trend=list(data.get("trend") or []),
        )

    def metrics(self) -> dict[str, float]:
        """The gated figures of this result (see baselines.gate.GATED)."""
        values: dict[str, float] = {}
        if self.case.generative:
            values.update(self.generation_metrics)
            for key in ("cosine", "top1", "token_agreement"):
                if key in self.accuracy:
                    values[key] = self.accuracy[key]
            if self.speedup is not None:
                values["speedup"] = self.speedup
            return values
        if self.stats is not None:
            values.update(p50_ms=self.stats.p50_ms, p99_ms=self.stats.p99_ms,
                          throughput=self.stats.throughput)
        if self.speedup is not None:
            values["speedup"] = self.speedup
        if self.memory_mb is not None and self.stats is not None:
            values["memory_mb"] = self.memory_mb
        if self.gpu_memory_mb is not None and self.stats is not None:
            values["gpu_memory_mb"] = self.gpu_memory_mb
        values.update(self.serving_metrics)
        if self.memory_mb is not None and self.serving_metrics:
            values["memory_mb"] = self.memory_mb
        if self.gpu_memory_mb is not None and self.serving_metrics:
            values["gpu_memory_mb"] = self.gpu_memory_mb
        for key in ("cosine", "retrieval"):
            if key in self.accuracy:
                values[key] = self.accuracy[key]
        return values

    @property
    def failed(self) -> bool:
        return self.verdict.failed

    def failure_message(self) -> str:
        lines = [f"{self.case.id}: {self.verdict}"]
        lines += [f"  accuracy: {p}" for p in self.accuracy_problems]
        lines += [f"  graph drift: {d}" for d in self.drift]
        if self.bound_unmet:
            lines.append(f"  server: {self.bound_unmet}")
        if self.gate is not None:
            lines += [f"  regression: {r}" for r in self.gate.regressions]
            if self.verdict == Verdict.UNSTABLE_FAIL:
                lines += [f"  unstable: {u}" for u in self.gate.unstable]
            if self.verdict == Verdict.STALE:
                lines += [f"  faster than the baseline: {i}" for i in self.gate.improvements]
                lines.append("  the baseline is stale: record it again with "
                             "--xfperf-update-baselines")
        if self.verdict in (Verdict.DRIFTING, Verdict.DRIFTING_FAIL):
            from pytest_xfperf.history.drift import describe

            lines += [f"  history: {describe(found)}" for found in self.trend
                      if found.get("drifting")]
        if self.verdict == Verdict.OTHER_MACHINE_FAIL:
            lines.append("  the only baseline is from another machine (see the summary); "
                         "record this machine's with --xfperf-update-baselines")
        if self.baseline_versions_changed:
            lines.append("  versions changed since the baseline: "
                         + ", ".join(self.baseline_versions_changed))
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        if self.raw is not None:
            return dict(self.raw)
        case = self.case
        return {
            "id": case.id, "model": case.model, "backend": case.backend,
            "precision": case.precision, "batch": case.shape.batch, "seq": case.shape.seq,
            "new_tokens": case.shape.new_tokens,
            "scenario": case.scenario, "verdict": self.verdict.value,
            "stats": self.stats.as_dict() if self.stats else None,
            "samples_ms": self.samples_ms,
            "memory_mb": self.memory_mb, "memory_mode": self.memory_mode,
            "model_mb": self.model_mb,
            "gpu_memory_mb": self.gpu_memory_mb, "gpu_memory_mode": self.gpu_memory_mode,
            "device_time": self.device_stats.as_dict() if self.device_stats else None,
            "speedup": self.speedup, "rounds": self.rounds, "compute": self.compute or None,
            "measure_seconds": self.measure_seconds,
            "timing": self.timing, "reference_timing": self.reference_timing,
            "accuracy": self.accuracy, "accuracy_problems": self.accuracy_problems,
            "serving": self.serving or None, "serving_metrics": self.serving_metrics,
            "generation": self.generation or None,
            "generation_metrics": self.generation_metrics, "more_timing": self.more_timing,
            "timing_metric": self.timing_metric,
            "bound_unmet": self.bound_unmet,
            "seconds": self.seconds, "trend": self.trend,
            "baseline": None if self.gate is None else {
                "deltas": self.gate.deltas, "regressions": self.gate.regressions,
                "improvements": self.gate.improvements,
                "versions_changed": self.baseline_versions_changed,
                "graph_drift": self.drift, "graph_notes": self.graph_notes,
                "unstable": self.gate.unstable, "decisions": self.gate.decisions,
                "notes": self.gate.notes},
            "machine_state": self.machine_state,
            "graph": self.graph, "build_seconds": self.build_seconds,
            "built_now": self.built_now, "prepare_seconds": self.prepare_seconds,
            "settings": self.runner_settings,
            "versions": self.versions,
        }
