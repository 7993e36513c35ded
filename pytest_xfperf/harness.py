"""What the ``xfperf`` fixture hands to a perf test: one case's setup, check and close.

``check`` runs one skeleton for every scenario: measure (measure/case.py for single-stream,
serving/ for offline and server), check accuracy, judge (the pure ``baselines.gate.verdict``),
publish, and fail the test that regressed. Recording happens once at the session's end
(``XfperfSession.finish``), from the results collected here.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from pytest_xfperf.accuracy import (
    DEFAULT_THRESHOLDS,
    compare,
    retrieval_agreement,
    token_mask,
    violations,
)
from pytest_xfperf.artifacts.pipeline import BuiltArtifact
from pytest_xfperf.backends.base import BackendUnavailable, Runner
from pytest_xfperf.backends.catalog import BACKENDS, fp32_in_tf32, weight_bytes
from pytest_xfperf.baselines.fingerprint import drift, graph_notes
from pytest_xfperf.baselines.gate import Evidence, decided, verdict
from pytest_xfperf.matrix import Case
from pytest_xfperf.measure import machine_state
from pytest_xfperf.measure.blocks import BlockPlan
from pytest_xfperf.measure.case import CaseMeasurement
from pytest_xfperf.measure.memory import PeakMemory
from pytest_xfperf.measure.stats import summarize
from pytest_xfperf.metrics import Verdict
from pytest_xfperf.models.spec import ModelSpec
from pytest_xfperf.result import Result
from pytest_xfperf.settings import Tolerances
from pytest_xfperf.versions import library_versions, version_changes

if TYPE_CHECKING:
    import numpy as np

    from pytest_xfperf.generation.generators import Generator
    from pytest_xfperf.session import XfperfSession


class CaseHarness:
    """Setup errors (a failed export, a model whose build raises) are test errors of this case
    only; a missing library or device is a skip naming what to install."""

    def __init__(self, session: XfperfSession, case: Case, tolerances: Tolerances,
                 benchmark_provider: Callable[[], Any] | None = None,
                 record_property: Callable[[str, object], None] | None = None) -> None:
        self.session = session
        self.case = case
        self.tolerances = tolerances
        self._benchmark_provider = benchmark_provider
        self._record_property = record_property
        self.spec: ModelSpec
        self.inputs: dict[str, np.ndarray] = {}
        self.runner: Runner | None = None
        self.artifact: BuiltArtifact | None = None
        self._memory = PeakMemory()
        self._gpu_memory: Any = None  # measure.gpu.GpuMemory for CUDA backends
        self._call: Callable[[], object] | None = None
        self.generator: Generator | None = None  # generative cases (generation/)
        self.generation_build: dict[str, Any] = {}
        self._started = time.perf_counter()  # the case's wall time counts from setup

    # -- setup and close ----------------------------------------------------------------
    def setup(self) -> None:
        self._started = time.perf_counter()
        case, session = self.case, self.session
        if case.skip_reason:
            pytest.skip(case.skip_reason)
        try:
            session.check_backend(case.backend)
            session.check_device(case.backend)
            self.spec = session.registry.get(case.ref)
        except (BackendUnavailable, ModuleNotFoundError) as exc:
            pytest.skip(str(exc))
        self.inputs = self.spec.make_inputs(case.shape.batch, case.shape.seq, session.settings.seed)
        if case.generative:
            self._setup_generation()
            return
        if not case.serving:  # serving cases check each request against its own reference
            session.reference(self.spec, self.inputs)  # before the memory window: shared
        self.artifact = session.artifact(case, self.spec)
        self._measure_reference()  # before the memory window too: its runner is shared
        self._start_memory_windows()
        try:
            self.runner = session.make_runner(case, self.spec, self.artifact)
        except BackendUnavailable as exc:  # e.g. onnxruntime without the CUDA provider
            pytest.skip(str(exc))

    def _start_memory_windows(self) -> None:
        """Host memory (RSS) always; the device's too on CUDA backends (finish_memory ends
        them)."""
        self._memory.start()
        probe = BACKENDS[self.case.backend].memory_probe
        if probe != "rss":
            from pytest_xfperf.measure.gpu import GpuMemory

            self._gpu_memory = GpuMemory(probe)
            self._gpu_memory.start()

    def _setup_generation(self) -> None:
        from pytest_xfperf.generation.check import make_generator, reference_generation

        if not self.case.is_fp32_reference:  # before the memory window: shared
            try:
                reference_generation(self.session, self.spec, self.inputs["input_ids"],
                                     self.case.shape.new_tokens)
            except TypeError as exc:  # a model that cannot generate: this case fails
                pytest.fail(f"{self.case.id}: {exc}", pytrace=False)
        self._measure_reference()  # before the memory window too: its generator is shared
        self._start_memory_windows()
        try:
            self.generator = make_generator(self)
        except BackendUnavailable as exc:
            pytest.skip(str(exc))
        except TypeError as exc:
            pytest.fail(f"{self.case.id}: {exc}", pytrace=False)

    def _measure_reference(self) -> None:
        """The speed-up's PyTorch reference, measured (once per model, shape and device) for
        as many blocks as the case's first round will have."""
        case, settings = self.case, self.session.settings
        if case.serving or case.is_speedup_reference or settings.timing_disabled:
            return
        policy = settings.gate.policy
        blocks = policy.record_blocks if settings.gate.update_baselines else policy.first_blocks
        if case.generative:
            self.session.generation_reference_record(case, self.spec, self.inputs["input_ids"],
                                                     blocks)
        else:
            self.session.speedup_reference_record(case, self.spec, self.inputs, blocks)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None
        if self.generator is not None:
            self.generator.close()
            self.generator = None
        if BACKENDS[self.case.backend].device == "cuda":
            # Out of memory in one case must not starve the next: return cached blocks.
            import torch

            torch.cuda.empty_cache()

    def _timed_call(self) -> Callable[[], object]:
        """The runner's prepared call, made once: a CUDA graph (torch's or ORT's) is captured
        for fixed buffers, so every later timing of the case must replay the same one."""
        assert self.runner is not None
        if self._call is None:
            self._call = self.runner.prepare(self.inputs)
        return self._call

    # -- the test body ------------------------------------------------------------------
    def check(self, benchmark: Any = None) -> Result:
        """Measure, check accuracy, judge against the baseline; fail the test on a regression.

        ``benchmark`` is pytest-benchmark's fixture when available: the samples are published
        to it, and ``--benchmark-disable`` turns this into a single accuracy-only run.
        """
        assert self.runner is not None or self.generator is not None, "setup() did not run"
        if benchmark is None and self._benchmark_provider is not None:
            benchmark = self._benchmark_provider()
        worker = self.generator if self.generator is not None else self.runner
        assert worker is not None
        result = Result(case=self.case, versions=library_versions(),
                        runner_settings=worker.settings())
        if self.generator is not None:
            from pytest_xfperf.generation.check import generate_case

            generate_case(self, result)
        elif self.case.serving:
            from pytest_xfperf.serving.check import serve_case

            serve_case(self, result)
        else:
            assert self.runner is not None
            self._measure(result)
            self._check_accuracy(result, self.runner.run(self.inputs))
        result.seconds = time.perf_counter() - self._started
        self._judge(result)
        self.session.results.append(result)
        self._publish(result, benchmark)
        if result.failed:
            pytest.fail(result.failure_message(), pytrace=False)
        return result

    def _measure(self, result: Result) -> None:
        """Blocks of the case and the yardstick until the stopping rule is satisfied, then the
        speed-up's PyTorch reference (measure/case.py)."""
        session, case = self.session, self.case
        settings = session.settings
        if settings.timing_disabled:
            self.finish_memory(result)
            return
        assert self.runner is not None
        result.machine_state = machine_state.snapshot()
        session.notes.extend(machine_state.warnings(result.machine_state))
        policy = settings.gate.policy
        plan = BlockPlan.of(settings.timing, policy)
        baseline = session.baseline_for(case)

        def stop(record: Any, reference: Any, final: bool) -> bool:
            return decided(record, reference, baseline, self.tolerances, policy, final)

        def reference(blocks: int) -> dict[str, Any] | None:
            # Extending the reference (a case's further rounds) builds and runs another
            # model's calls and yardstick: left out of the case's memory, which a recording
            # (one round) never sees them in.
            with self.memory_paused():
                return session.speedup_reference_record(case, self.spec, self.inputs, blocks)

        measurement = CaseMeasurement(self.runner, self._timed_call(),
                                      settings.backend_options.get(case.backend, {}), plan,
                                      policy, lambda: session.device_lock(case.backend))
        try:
            series, record, eager, result.rounds = measurement.run(
                stop, None if case.is_speedup_reference else reference,
                recording=settings.gate.update_baselines,
                baseline_pacing=_pacing_of(baseline))
        finally:
            measurement.close()
        self.finish_memory(result)  # the memory windows end with the case's own timing
        result.timing = record
        result.samples_ms = series.samples_ms
        result.stats = summarize([s / 1000 for s in series.samples_ms], case.shape.batch)
        result.measure_seconds = {"case": round(series.case_seconds, 3),
                                  "yardstick": round(series.yardstick_seconds, 3)}
        if series.device_ms:
            result.device_stats = summarize([d / 1000 for d in series.device_ms],
                                            case.shape.batch)
            self._gpu_facts(result)
        self._compute(result)
        if case.is_speedup_reference:
            session.remember_reference(case, record)
        elif eager is not None and eager.get("clock") == record["clock"]:
            result.reference_timing = eager
            result.speedup = (statistics.median(eager["case_ms"])
                              / statistics.median(record["case_ms"]))

    def _compute(self, result: Result) -> None:
        """FLOP/s at p50 and its share of the GEMM peak measured in the case's arithmetic."""
        from pytest_xfperf.measure.peak import arithmetic
        from pytest_xfperf.measure.yardstick import case_threads

        case, session = self.case, self.session
        per_sequence = session.flops_per_sequence(self.spec, case.shape.seq)
        if result.stats is None or not per_sequence:
            return
        flops = per_sequence * case.shape.batch
        achieved = flops / (result.stats.p50_ms / 1000)
        device = BACKENDS[case.backend].device
        # A runner that sets TF32 says so in its settings; else the backend's default.
        tf32 = bool(result.runner_settings.get("tf32", fp32_in_tf32(case.backend)))
        kind = arithmetic(case.precision, device, tf32)
        threads = case_threads(session.settings.backend_options.get(case.backend, {}))
        result.compute = {"flops_per_call": flops, "flops_per_s": achieved, "arithmetic": kind}
        try:
            peak, identity = session.peaks.get(device, kind, threads, achieved)
        except ModuleNotFoundError as exc:  # the CPU peak is an ONNX Runtime product
            session.notes.add(f"no % of peak on the CPU: its peak is measured with {exc.name} "
                              "(pip install 'pytest-xfperf[cpu]')")
            return
        result.compute.update(peak_flops_per_s=peak, peak_percent=achieved / peak,
                              peak=identity)

    def _gpu_facts(self, result: Result) -> None:
        from pytest_xfperf.measure.gpu import gpu_fingerprint, gpu_warnings

        facts = gpu_fingerprint()
        result.machine_state["gpu"] = facts
        self.session.notes.extend(gpu_warnings(facts))

    @contextlib.contextmanager
    def memory_paused(self) -> Iterator[None]:
        """The case's memory windows, paused while other work runs."""
        windows = [w for w in (self._memory, self._gpu_memory) if w is not None]
        for window in windows:
            window.pause()
        try:
            yield
        finally:
            for window in windows:
                window.resume()

    def finish_memory(self, result: Result) -> None:
        """Close the case's memory windows; copy the artifact's facts into the result."""
        self._memory.stop()
        result.memory_mb, result.memory_mode = self._memory.peak_delta_mb, self._memory.mode
        if self._gpu_memory is not None:
            self._gpu_memory.stop()
            result.gpu_memory_mb = self._gpu_memory.peak_mb
            result.gpu_memory_mode = self._gpu_memory.mode
        if self.generation_build:
            result.build_seconds = dict(self.generation_build.get("build_seconds", {}))
            result.built_now = list(self.generation_build.get("built_now", []))
        if self.artifact is not None:
            result.graph = self.artifact.graph
            result.build_seconds = self.artifact.build_seconds
            result.built_now = self.artifact.built_now
            result.prepare_seconds = self.artifact.prepare_seconds
        result.model_mb = self._model_size_mb()

    def _model_size_mb(self) -> float | None:
        """Size of the weights the backend runs: the ONNX file(s) for ONNX backends, the
        torch module's parameters and buffers at the case's precision otherwise."""
        if self.case.backend == "tensorrt":
            return None  # its engine file is built apart from the ONNX artifact
        if self.artifact is not None:
            directory = self.artifact.path.parent
            size = sum(f.stat().st_size for f in directory.iterdir()
                       if f.is_file() and f.suffix != ".json")
            return size / 2**20
        model = self.session.model(self.spec)
        count = sum(t.numel() for t in (*model.parameters(), *model.buffers())
                    if t.is_floating_point())
        return count * weight_bytes(self.case.precision) / 2**20

    def _check_accuracy(self, result: Result, output: np.ndarray) -> None:
        if self.case.is_fp32_reference:
            return  # it is the reference
        reference = self.session.reference(self.spec, self.inputs)
        mask = token_mask(self.inputs.get("attention_mask"), output)
        result.accuracy = compare(output, reference, mask)
        if self.spec.tokenize is not None:
            seq = self.case.shape.seq
            result.accuracy["retrieval"] = retrieval_agreement(
                self.session.corpus_embeddings(self.spec, self.runner, seq),
                self.session.corpus_reference(self.spec, seq))
        thresholds = DEFAULT_THRESHOLDS.get(self.case.precision, DEFAULT_THRESHOLDS["fp32"])
        result.accuracy_problems = violations(result.accuracy, thresholds)

    # -- the verdict ----------------------------------------------------------------------
    def _judge(self, result: Result) -> None:
        """The pure verdict on this result and its baseline entry, plus the notes."""
        from dataclasses import replace

        session, settings = self.session, self.session.settings
        recording = settings.gate.update_baselines
        baseline = None if recording else session.baseline_for(self.case)
        if baseline is not None:
            result.baseline_versions_changed = version_changes(
                baseline.get("versions", {}), result.versions)
            if result.baseline_versions_changed:
                session.notes.add("library versions differ from the baseline's: "
                                  + ", ".join(result.baseline_versions_changed))
            if result.graph and baseline.get("graph"):
                result.drift = drift(baseline["graph"], result.graph, baseline.get("versions"))
                result.graph_notes = graph_notes(baseline["graph"], result.graph)
        evidence = Evidence(metrics=result.metrics(), timing=result.timing,
                            speedup=result.reference_timing,
                            accuracy_problems=result.accuracy_problems, drift=result.drift,
                            timed=not settings.timing_disabled,
                            samples_ms=result.samples_ms,
                            timing_metric=result.timing_metric,
                            more_timing=result.more_timing, memory_mode=result.memory_mode)
        options = replace(settings.gate, tolerances=self.tolerances)
        result.gate = verdict(evidence, baseline, options)
        session.notes.extend(f"{self.case.id}: {note}" for note in result.gate.notes)
        result.verdict = result.gate.verdict
        if recording and not result.accuracy_problems:
            result.verdict = Verdict.RECORDED
        elif result.verdict == Verdict.NO_BASELINE and session.other_machine and not recording:
            result.verdict = (Verdict.OTHER_MACHINE_FAIL if settings.gate.other_machine == "fail"
                              else Verdict.OTHER_MACHINE)
        if result.bound_unmet and not result.verdict.failed:
            result.verdict = Verdict.BOUND_UNMET
        self._judge_history(result)

    def _judge_history(self, result: Result) -> None:
        """The drift test on this case's run history with this run appended (history/): a
        lasting slowdown the baseline's tolerance lets through is ``drifting``."""
        session, settings = self.session, self.session.settings
        result.trend = session.history.findings(result) if session.history else []
        drifting = [f for f in result.trend if f["drifting"]]
        if not drifting:
            return
        from pytest_xfperf.history.drift import describe

        for found in drifting:
            session.notes.add(f"{self.case.id}: {describe(found)}")
        if not result.verdict.failed and result.verdict != Verdict.RECORDED:
            result.verdict = (Verdict.DRIFTING_FAIL if settings.gate.fail_on_drift
                              else Verdict.DRIFTING)

    # -- publishing -----------------------------------------------------------------------
    def _publish(self, result: Result, benchmark: Any) -> None:
        """JUnit XML properties (CI systems show them next to the test) and pytest-benchmark's
        record (``--benchmark-json``, ``pytest-benchmark compare``)."""
        if self._record_property is not None:
            record = self._record_property
            record("xfperf_verdict", result.verdict.value)
            for name, value in result.metrics().items():
                record(f"xfperf_{name}", round(value, 6))
            if result.gate is not None:
                for name, change in result.gate.deltas.items():
                    record(f"xfperf_{name}_vs_baseline", f"{change:+.4f}")
        if (benchmark is not None and result.samples_ms
                and not getattr(benchmark, "disabled", False)):
            from pytest_xfperf.measure.benchmark_bridge import publish

            publish(benchmark, [s / 1000 for s in result.samples_ms], {
                "xfperf_case": result.case.id, "verdict": result.verdict.value,
                "accuracy": result.accuracy, "fused": result.graph.get("fused", {}),
                "memory_mb": result.memory_mb, "versions": result.versions,
                "settings": result.runner_settings, "speedup": result.speedup})


def _pacing_of(baseline: Mapping[str, Any] | None) -> str | None:
    """The pacing the baseline entry's block record names, if any."""
    timing = baseline.get("timing") if baseline else None
    pacing = timing.get("pacing") if isinstance(timing, Mapping) else None
    return pacing if isinstance(pacing, str) else None
