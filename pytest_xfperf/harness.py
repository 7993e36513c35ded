"""One case from setup to verdict: what the ``xfperf`` fixture hands to a perf test."""

from __future__ import annotations

import functools
from collections.abc import Callable
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
from pytest_xfperf.backends.catalog import BACKENDS, REFERENCE_BACKEND, REFERENCE_PRECISION
from pytest_xfperf.baselines.decision import Blocks, calmest_record
from pytest_xfperf.baselines.fingerprint import drift, graph_notes
from pytest_xfperf.baselines.gate import SAMPLED
from pytest_xfperf.baselines.gate import compare as gate_compare
from pytest_xfperf.matrix import Case
from pytest_xfperf.measure import machine_state
from pytest_xfperf.measure.memory import PeakMemory
from pytest_xfperf.measure.stats import summarize
from pytest_xfperf.measure.timing import TimingPolicy, block_policy, gc_paused, time_calls
from pytest_xfperf.models.spec import ModelSpec
from pytest_xfperf.result import (
    ACCURACY,
    BOUND_UNMET,
    DRIFT,
    IMPROVED,
    NO_BASELINE,
    PASS,
    RECORDED,
    REGRESSED,
    STALE,
    UNSTABLE,
    UNSTABLE_FAIL,
    Result,
)
from pytest_xfperf.settings import Tolerances
from pytest_xfperf.versions import library_versions, version_changes

if TYPE_CHECKING:
    import numpy as np

    from pytest_xfperf.session import XfperfSession


# Blocks of one round of the confirmation re-measure, alternating case and reference.
CONFIRM_BLOCKS = 5
# Blocks of the interleaved record kept with a baseline (two rounds' worth: the baseline side
# of every later confirmation, so it should be the finer of the two).
PAIRED_BLOCKS = 2 * CONFIRM_BLOCKS
# The reference backend's library: when its version changed since the baseline, the
# reference measures more than the machine and normalization is dropped.
REFERENCE_LIBRARY = "torch"
# Calls timed by CUDA events after the wall-clock rounds (device time of GPU cases).
DEVICE_TIME_ROUNDS = 50
# Distinct token rows the requests of a serving workload draw from (see serving/workload.py).
SERVING_POOL_ROWS = 64


class CaseHarness:
    """Builds the case's artifact and runner (fixture setup), then measures and judges it.

    Setup errors (a failed export, a model whose build raises) surface as test errors of this
    case only; a missing library or model package is a skip naming what to install.
    """

    def __init__(
        self,
        session: XfperfSession,
        case: Case,
        tolerances: Tolerances,
        benchmark_provider: Callable[[], Any] | None = None,
        record_property: Callable[[str, object], None] | None = None,
    ) -> None:
        self.session = session
        self._record_property = record_property
        self._benchmark_provider = benchmark_provider
        self.case = case
        self.tolerances = tolerances
        self.spec: ModelSpec
        self.inputs: dict[str, np.ndarray] = {}
        self.runner: Runner | None = None
        self.artifact: BuiltArtifact | None = None
        self._memory = PeakMemory()
        self._gpu_memory: Any = None  # measure.gpu.GpuMemory for CUDA backends
        self._call: Callable[[], object] | None = None

    def setup(self) -> None:
        case = self.case
        if case.skip_reason:
            pytest.skip(case.skip_reason)
        try:
            self.session.check_backend(case.backend)
            self.session.check_device(case.backend)
            self.spec = self.session.registry.get(case.ref)
        except (BackendUnavailable, ModuleNotFoundError) as exc:
            pytest.skip(str(exc))
        spec, shape = self.spec, case.shape
        self.inputs = spec.make_inputs(shape.batch, shape.seq, self.session.settings.seed)
        if not case.serving:  # serving cases check each request against its own reference
            self.session.reference(spec, self.inputs)  # before the memory window: shared
        self.artifact = self.session.artifact(case, spec)
        self._memory.start()
        if self._on_gpu:
            from pytest_xfperf.measure.gpu import GpuMemory

            self._gpu_memory = GpuMemory("torch" if case.backend.startswith("torch-") else "nvml")
            self._gpu_memory.start()
        try:
            self.runner = self.session.make_runner(case, spec, self.artifact)
        except BackendUnavailable as exc:  # e.g. onnxruntime without the CUDA provider
            pytest.skip(str(exc))

    def _timed_call(self) -> Callable[[], object]:
        """The runner's prepared call, made once: a CUDA graph (torch's or ORT's) is captured
        for fixed buffers, so every later timing of the case must replay the same one."""
        assert self.runner is not None
        if self._call is None:
            self._call = self.runner.prepare(self.inputs)
        return self._call

    @property
    def _on_gpu(self) -> bool:
        return BACKENDS[self.case.backend].device == "cuda"

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None
        if self._on_gpu:
            # Out of memory in one case must not starve the next: return cached blocks.
            import torch

            torch.cuda.empty_cache()

    # -- the test body ------------------------------------------------------------------
    def check(self, benchmark: Any = None) -> Result:
        """Measure, check accuracy, compare with the baseline; fail the test on a regression.

        ``benchmark`` is pytest-benchmark's fixture when available: the samples are published
        to it, and ``--benchmark-disable`` turns this into a single accuracy-only run.
        """
        assert self.runner is not None, "setup() did not run"
        if self.case.serving:
            return self._check_serving()
        if benchmark is None and self._benchmark_provider is not None:
            benchmark = self._benchmark_provider()
        runner, case, settings = self.runner, self.case, self.session.settings
        timing = not settings.timing_disabled
        result = Result(case=case, versions=library_versions(),
                        runner_settings=runner.settings())
        samples: list[float] = []
        if timing:
            result.machine_state = machine_state.snapshot()
            for warning in machine_state.warnings(result.machine_state):
                if "xfperf: " + warning not in self.session.notes:
                    self.session.notes.append("xfperf: " + warning)
            with self.session.device_lock(case.backend):
                samples = time_calls(self._timed_call(), runner.synchronize,
                                     self._run_policy())
            result.stats = summarize(samples, case.shape.batch)
            result.samples_ms = [s * 1000 for s in samples]
            if self._on_gpu:
                self._measure_device_time(result, len(samples))
        output = runner.run(self.inputs)
        self._finish(result)
        self._check_accuracy(result, output)
        self._judge(result)
        self.session.results.append(result)
        self._publish_properties(result)
        if benchmark is not None and timing and not getattr(benchmark, "disabled", False):
            from pytest_xfperf.measure.benchmark_bridge import publish

            publish(benchmark, samples, _extra_info(result))
        if result.failed:
            pytest.fail(result.failure_message(), pytrace=False)
        return result

    def _check_serving(self) -> Result:
        """The offline or server scenario: a seeded workload of varied lengths through the
        dynamic batcher on this runner; its figures are gated by the threshold rule."""
        from pytest_xfperf.serving.case import ServingConfig, serve
        from pytest_xfperf.serving.workload import LengthDistribution, TokenPool

        assert self.runner is not None
        runner, case, settings = self.runner, self.case, self.session.settings
        result = Result(case=case, versions=library_versions(),
                        runner_settings=runner.settings())
        pool = TokenPool(self.spec.make_inputs(SERVING_POOL_ROWS, case.shape.seq,
                                               settings.seed))
        config = ServingConfig(
            LengthDistribution.parse(settings.lengths), settings.padding, settings.buckets,
            settings.max_queue_delay_ms,
            # --benchmark-disable: a short accuracy-only pass, no load.
            settings.serving_requests if not settings.timing_disabled else 16,
            settings.p99_bound_ms, settings.server_budget, settings.seed,
            settings.server_trial)
        result.machine_state = machine_state.snapshot()
        with self.session.device_lock(case.backend):
            if settings.timing_disabled:
                from pytest_xfperf.serving.scenarios import BatchPolicy, run

                lengths = config.lengths.sample(config.requests, case.shape.seq, config.seed)
                policy = BatchPolicy(case.shape.batch, 0.0, config.padding, config.buckets)
                _, kept = run(runner.run, pool, lengths, None, policy,
                              keep_outputs=range(len(lengths)))
            else:
                outcome = serve(case.scenario, runner.run, pool, case.shape.batch, config,
                                self.session.progress(case.id))
                kept, lengths = outcome.kept, outcome.lengths
                result.serving = outcome.details
                result.serving_metrics = outcome.metrics
                result.bound_unmet = outcome.bound_unmet
        self._finish(result)
        self._check_request_accuracy(result, pool, kept, lengths)
        self._judge(result)
        if result.bound_unmet and result.verdict not in (ACCURACY, REGRESSED, DRIFT):
            result.verdict = BOUND_UNMET
        self.session.results.append(result)
        self._publish_properties(result)
        if result.failed:
            pytest.fail(result.failure_message(), pytrace=False)
        return result

    def _finish(self, result: Result) -> None:
        """Close the case's memory windows and copy the artifact's facts into the result
        (both the single-stream and the serving path end their measurement here)."""
        self._memory.stop()
        result.memory_mb, result.memory_mode = self._memory.peak_delta_mb, self._memory.mode
        if self._gpu_memory is not None:
            self._gpu_memory.stop()
            result.gpu_memory_mb = self._gpu_memory.peak_mb
            result.gpu_memory_mode = self._gpu_memory.mode
        if self.artifact is not None:
            result.graph = self.artifact.graph
            result.build_seconds = self.artifact.build_seconds
            result.built_now = self.artifact.built_now
            result.prepare_seconds = self.artifact.prepare_seconds
        result.model_mb = self._model_size_mb()

    def _model_size_mb(self) -> float | None:
        """Size of the weights the backend runs: the ONNX file(s) for ONNX backends, the
        torch module's parameters and buffers at the case's precision otherwise (the memory
        reduction of quantization and FP16, independent of allocator noise)."""
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
        return count * (2 if self.case.precision in ("fp16", "bf16") else 4) / 2**20

    def _publish_properties(self, result: Result) -> None:
        """The case's key figures as JUnit XML properties (pytest's record_property), which CI
        systems show next to the test."""
        if self._record_property is None:
            return
        record = self._record_property
        record("xfperf_verdict", result.verdict)
        for name, value in result.metrics().items():
            record(f"xfperf_{name}", round(value, 6))
        if result.gate is not None:
            for name, change in result.gate.deltas.items():
                record(f"xfperf_{name}_vs_baseline", f"{change:+.4f}")

    def _check_request_accuracy(self, result: Result, pool: Any, kept: dict[int, Any],
                                lengths: list[int]) -> None:
        """Each kept request's unbatched output against the same backend's output for that
        request alone, unpadded: what batching changes (padding, masks, unbatching order, and
        dynamic INT8's scales, which it takes from the whole padded batch). The precision's
        own drop against FP32 is the single-stream case's check."""
        import numpy as np

        assert self.runner is not None
        if not kept:
            return
        outputs, alone_outputs = [], []
        for request_id, output in sorted(kept.items()):
            length = lengths[request_id]
            alone = self.runner.run(pool.pad([request_id], [length], length))[0]
            if alone.ndim == 2:  # per token: the request's own rows
                alone = alone[:length]
            outputs.append(np.asarray(output, dtype=np.float32).reshape(alone.shape))
            alone_outputs.append(np.asarray(alone, dtype=np.float32))
        joined = np.concatenate([o.reshape(-1) for o in outputs])
        expected = np.concatenate([r.reshape(-1) for r in alone_outputs])
        result.accuracy = compare(joined, expected, np.ones(joined.shape, dtype=bool))
        if result.serving:
            result.serving["accuracy_versus"] = "same backend, each request alone, unpadded"
        thresholds = DEFAULT_THRESHOLDS.get(self.case.precision, DEFAULT_THRESHOLDS["fp32"])
        problems = [p.replace(" vs FP32", "") for p in violations(result.accuracy, thresholds)]
        why = (" (dynamic INT8 takes its activation scales from the whole padded batch, so "
               "batch-mates and padding change each request's result)"
               if self.case.precision == "int8-dynamic" else "")
        result.accuracy_problems = [f"batched vs the same request alone: {p}{why}"
                                    for p in problems]

    def _measure_device_time(self, result: Result, rounds: int) -> None:
        """GPU time by CUDA events next to the synced wall clock, and the GPU's state."""
        from pytest_xfperf.measure.gpu import device_time_ms, gpu_fingerprint, gpu_warnings

        assert self.runner is not None
        with self.session.device_lock(self.case.backend):
            device = device_time_ms(self._timed_call(),
                                    max(5, min(rounds, DEVICE_TIME_ROUNDS)))
        result.device_stats = summarize([d / 1000 for d in device], self.case.shape.batch)
        facts = gpu_fingerprint()
        result.machine_state["gpu"] = facts
        for warning in gpu_warnings(facts):
            if "xfperf: " + warning not in self.session.notes:
                self.session.notes.append("xfperf: " + warning)

    def _check_accuracy(self, result: Result, output: np.ndarray) -> None:
        if self.case.is_reference:
            return  # it is the reference
        reference = self.session.reference(self.spec, self.inputs)
        mask = token_mask(self.inputs.get("attention_mask"), output)
        result.accuracy = compare(output, reference, mask)
        if self.spec.tokenize is not None:
            seq = self.case.shape.seq
            result.accuracy["retrieval"] = retrieval_agreement(
                self.session.corpus_embeddings(self.spec, self.runner, seq),
                self.session.corpus_reference(self.spec, seq),
            )
        thresholds = DEFAULT_THRESHOLDS.get(self.case.precision, DEFAULT_THRESHOLDS["fp32"])
        result.accuracy_problems = violations(result.accuracy, thresholds)

    def _judge(self, result: Result) -> None:
        settings = self.session.settings
        baseline = self.session.baselines.get(self.case.id)
        if result.accuracy_problems:
            result.verdict = ACCURACY
        elif settings.update_baselines:
            result.verdict = RECORDED
        elif baseline is None:
            result.verdict = NO_BASELINE
        if settings.update_baselines and settings.confirm and result.samples_ms:
            # What a later confirmation is compared with: case and reference interleaved,
            # recorded again while the host disturbed it (decision.calmest_record).
            kept = calmest_record(lambda: self._interleaved(PAIRED_BLOCKS),
                                  self.tolerances.p50, SAMPLED["p50_ms"])
            if kept.spread is not None:  # usable: paired blocks with the reference
                paired = kept.blocks
                result.paired = {"case_ms": [list(b) for b in paired.case],
                                 "reference_ms": [list(b) for b in paired.reference]}
                self._check_record(kept.spread)
        if baseline is None or settings.update_baselines:
            return
        result.baseline_versions_changed = version_changes(
            baseline.get("versions", {}), result.versions)
        if result.baseline_versions_changed:
            note = ("xfperf: library versions differ from the baseline's: "
                    + ", ".join(result.baseline_versions_changed))
            if note not in self.session.notes:
                self.session.notes.append(note)
        if result.graph and baseline.get("graph"):
            result.drift = drift(baseline["graph"], result.graph, baseline.get("versions"))
            result.graph_notes = graph_notes(baseline["graph"], result.graph)
        reference_id = self._reference_case().id
        reference_entry = self.session.baselines.get(reference_id)
        # The reference case of this run, if it ran (cases come grouped by model and shape,
        # the reference first): its samples normalize the first comparison too.
        reference_now = next((r.samples_ms for r in self.session.results
                              if r.case.id == reference_id and r.samples_ms), None)
        # A reference whose own library changed since the baseline no longer measures only
        # the machine: compare the case's own times then, and say so.
        moved = [c for c in result.baseline_versions_changed
                 if c.split(" ", 1)[0] == REFERENCE_LIBRARY]
        normalize = not self.case.is_reference and not moved  # by the reference backend
        if moved and not self.case.is_reference:
            note = (f"xfperf: {moved[0]} changed the reference backend since the baseline: "
                    "timings are compared without normalization by it")
            if note not in self.session.notes:
                self.session.notes.append(note)
        result.gate = gate_compare(
            result.metrics(), baseline, self.tolerances,
            timing=result.stats is not None or bool(result.serving_metrics),
            samples_ms=result.samples_ms,
            confirm=functools.partial(self._confirm, normalize=normalize)
            if settings.confirm and result.samples_ms else None,
            reference_baseline=None if not normalize or reference_entry is None
            else reference_entry.get("samples_ms"),
            reference_current=reference_now if normalize else None,
        )
        for note in result.gate.notes:
            if "xfperf: " + note not in self.session.notes:
                self.session.notes.append("xfperf: " + note)
        for detail in result.gate.near_tolerance:
            self.session.notes.append(
                f"xfperf: {self.case.id}: passed, but its estimate is past the tolerance "
                f"while its interval reaches inside it ({detail}): not a significant "
                "regression; a slowdown this close to the tolerance needs a quieter "
                "machine or more time (--xfperf-min-time) to be told apart")
        if result.verdict == ACCURACY:
            return
        gate = result.gate
        if result.drift:
            result.verdict = DRIFT
        elif gate.regressions:
            result.verdict = REGRESSED
        elif gate.unstable:
            result.verdict = UNSTABLE_FAIL if settings.fail_on_unstable else UNSTABLE
        elif gate.improvements:
            result.verdict = STALE if settings.fail_on_improvement else IMPROVED
        else:
            result.verdict = PASS

    def _check_record(self, spread: float) -> None:
        """Warn when the record kept cannot anchor a comparison at the p50 tolerance: even
        the calmest of its recordings has balanced blocks that disagree (``spread``) by more
        than that (the host was busy throughout)."""
        if spread > self.tolerances.p50:
            self.session.notes.append(
                f"xfperf: {self.case.id}: the interleaved record's balanced blocks disagree by "
                f"{spread:.1%}, more than the p50 tolerance: the machine was busy while "
                "it was recorded, and later confirmations compare with it; record the "
                "baselines again on a quieter machine")

    def _run_policy(self) -> TimingPolicy:
        """The run's timing policy (the settings'): the first measurement's, and what the
        blocks of an interleaved measurement divide between them."""
        settings = self.session.settings
        return TimingPolicy(settings.warmup_rounds, settings.min_rounds, settings.min_time,
                            settings.max_time)

    def _reference_case(self) -> Case:
        case = self.case
        return Case(case.model, REFERENCE_BACKEND, REFERENCE_PRECISION, case.shape,
                    case.model_ref)

    def _confirm(self, round_index: int, normalize: bool) -> Blocks:
        """Round ``round_index`` of the re-measure of a first measurement that was not a clear
        pass: the case in blocks interleaved with the reference backend (PyTorch FP32 eager of
        the same model), so both see the same machine state; without the reference where
        normalization was dropped."""
        return self._interleaved(CONFIRM_BLOCKS, with_reference=normalize)

    def _interleaved(self, blocks: int, with_reference: bool = True) -> Blocks:
        """``blocks`` blocks of the case alternating with blocks of the reference backend
        (none for the reference case itself, or where the reference cannot run)."""
        assert self.runner is not None
        reference: Runner | None = None
        if with_reference and not self.case.is_reference:
            try:
                self.session.check_backend(REFERENCE_BACKEND)
                reference = self.session.make_runner(
                    self._reference_case(), self.spec, None)
            except (BackendUnavailable, ModuleNotFoundError):
                reference = None
        policy = block_policy(self._run_policy(), CONFIRM_BLOCKS)
        case_call = self._timed_call()
        ref_call = reference.prepare(self.inputs) if reference else None
        case_blocks: list[list[float]] = []
        ref_blocks: list[list[float]] = []
        try:
            with self.session.device_lock(self.case.backend), gc_paused():
                for _ in range(blocks):
                    case_blocks.append([s * 1000 for s in time_calls(
                        case_call, self.runner.synchronize, policy)])
                    if reference is not None and ref_call is not None:
                        ref_blocks.append([s * 1000 for s in time_calls(
                            ref_call, reference.synchronize, policy)])
        finally:
            if reference is not None:
                reference.close()
        return Blocks(case_blocks, ref_blocks)


def _extra_info(result: Result) -> dict[str, Any]:
    return {"xfperf_case": result.case.id, "verdict": result.verdict,
            "accuracy": result.accuracy, "fused": result.graph.get("fused", {}),
            "memory_mb": result.memory_mb, "versions": result.versions,
            "settings": result.runner_settings}
