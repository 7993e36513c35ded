"""State shared by the cases of one pytest session: cache, models, baselines, references,
results; and the session's end (``finish``: merge xdist workers, record, report, append the
run history). It is long because it holds both: the state the cases share and what the end of
the session does with it."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_xfperf.accuracy import mean_pooled
from pytest_xfperf.artifacts.cache import ArtifactCache
from pytest_xfperf.artifacts.fusion import fusion_warning
from pytest_xfperf.artifacts.pipeline import ArtifactPipeline, BuiltArtifact, calibration_inputs
from pytest_xfperf.backends.base import BackendUnavailable, Runner, RunnerContext
from pytest_xfperf.backends.catalog import BACKENDS, load_factory
from pytest_xfperf.baselines import store
from pytest_xfperf.baselines.machine import differences, fingerprint_of, machine_info, nearest
from pytest_xfperf.fileio import locked
from pytest_xfperf.history.run import RunHistory
from pytest_xfperf.matrix import Case
from pytest_xfperf.measure.peak import PeakCache, count_flops
from pytest_xfperf.models.corpus import sentences
from pytest_xfperf.models.module import primary_output
from pytest_xfperf.models.registry import ModelRegistry
from pytest_xfperf.models.spec import ModelSpec
from pytest_xfperf.notes import Notes
from pytest_xfperf.result import Result
from pytest_xfperf.settings import Settings, history_file

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pytest_xfperf.generation.timing import GenerationMeasurement

RETRIEVAL_BATCH = 32
RETRIEVAL_MAX_SEQ = 128


def _digest_inputs(inputs: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(inputs):
        digest.update(name.encode())
        digest.update(str(inputs[name].shape).encode())
        digest.update(inputs[name].tobytes())
    return digest.hexdigest()


def _installed(module: str) -> bool:
    """A real package, not a bare namespace (tensorrt-stubs installs a 'tensorrt' folder of
    .pyi files that imports as an empty namespace package)."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin not in (None, "namespace")


class XfperfSession:
    def __init__(self, settings: Settings, registry: ModelRegistry, rootpath: Path) -> None:
        self.settings = settings
        self.registry = registry
        self.cache = ArtifactCache(rootpath / settings.cache_dir)  # an absolute path wins
        if settings.clear_cache:
            self.cache.clear()
        self.pipeline = ArtifactPipeline(self.cache, settings.seed, settings.build)
        self.machine = machine_info()
        directory = rootpath / settings.baselines_dir
        self.baseline_file = store.baseline_path(directory, str(self.machine["key"]))
        document = store.load(self.baseline_file)
        self.notes = Notes()  # shown under the summary table
        self.other_machine: list[str] = []  # how the only baselines' machine differs
        recorded = fingerprint_of(document.get("machine", {}))
        if document["cases"] and differences(recorded, fingerprint_of(self.machine)):
            # A file under this machine's name recorded elsewhere (copied by hand).
            self.other_machine = differences(recorded, fingerprint_of(self.machine))
            self.baselines: dict[str, Any] = {}
        else:
            self.baselines = document["cases"]
        if not self.baselines and not settings.gate.update_baselines:
            self._look_for_other_machines(directory)
        self.results: list[Result] = []
        self.rootpath = rootpath
        history = history_file(settings, rootpath)
        self.history = (RunHistory(history, str(self.machine["key"]), self.notes.add)
                        if history is not None else None)
        self.shard: dict[str, Any] = {}  # set by the plugin under --xfperf-shard
        self.peaks = PeakCache(rootpath / settings.cache_dir / "peaks.json",
                               str(self.machine["key"]))
        self._flops: dict[tuple[str, int], float | None] = {}
        # The speed-up reference's block records, per model, shape and device, and its
        # runners with their prepared calls (kept while their model is the current one, so an
        # extension neither copies the model again nor captures another CUDA graph).
        self._references_timed: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._reference_runners: dict[tuple[str, str, str],
                                      tuple[Runner, Callable[[], object]]] = {}
        self._reference_generations: dict[tuple[str, str, str], GenerationMeasurement] = {}
        # Set by the plugin in verbose mode: long steps announce themselves through it.
        self.announce: Callable[[str], None] | None = None
        # One torch model at a time: cases arrive grouped by model, and BERT-large in FP32
        # next to its references would not fit small CI machines twice over.
        self._model_name = ""
        self._model: torch.nn.Module | None = None
        self._references: dict[tuple[str, str], np.ndarray] = {}
        self._corpus_reference: dict[tuple[str, int], np.ndarray] = {}
        # FP32 PyTorch generations (prompt logits, tokens) by model and prompt (generation/).
        self.generation_references: dict[Any, tuple[np.ndarray, np.ndarray]] = {}

    def _look_for_other_machines(self, directory: Path) -> None:
        """No baseline for this machine: name the nearest file of another machine and how it
        differs, so that a CI pool mixing CPU generations gets a true message, not a false
        regression."""
        recorded: dict[str, dict[str, Any]] = {}
        for file in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            try:
                recorded[str(file)] = fingerprint_of(store.load(file).get("machine", {}))
            except store.BaselineError:
                continue
        found = nearest(recorded, fingerprint_of(self.machine))
        if found is None:
            return
        path, diff = found
        self.other_machine = diff
        self.notes.add(
            f"no baseline for this machine ({self.baseline_file.name}); "
            f"{path} was recorded on another machine ({'; '.join(diff)}): its "
            "timings are not comparable here, so nothing is gated against it. Record this "
            "machine's with --xfperf-update-baselines (--xfperf-other-machine=fail makes "
            "this a failure)")

    def baseline_for(self, case: Case) -> dict[str, Any] | None:
        entry: dict[str, Any] | None = self.baselines.get(case.id)
        return entry

    def progress(self, subject: str) -> Callable[[str], None]:
        """A reporter of ``subject``'s steps with the time since it was made (verbose mode
        only; otherwise it does nothing)."""
        import time

        announce, started = self.announce, time.perf_counter()

        def report(message: str) -> None:
            if announce is not None:
                announce(f"xfperf: {subject}: {message} "
                         f"[{time.perf_counter() - started:.1f} s]")

        return report

    # -- availability -------------------------------------------------------------------
    @staticmethod
    def check_backend(backend: str) -> None:
        info = BACKENDS[backend]
        missing = [m for m in info.modules if not _installed(m)]
        if missing:
            raise BackendUnavailable(
                f"{backend} needs {', '.join(missing)}: pip install 'pytest-xfperf[{info.extra}]'"
            )

    # -- models and references ----------------------------------------------------------
    def model(self, spec: ModelSpec) -> torch.nn.Module:
        if self._model_name != spec.name or self._model is None:
            self.close_reference_runners()
            self._model = None  # release the previous one before building the next
            try:
                built = spec.build()
            except Exception as exc:
                raise RuntimeError(
                    f"model {spec.name!r}: build() failed: {type(exc).__name__}: {exc}"
                ) from exc
            self._model = built.eval()
            self._model_name = spec.name
        return self._model

    def flops_per_sequence(self, spec: ModelSpec, seq: int) -> float | None:
        """Matrix-product FLOPs of one sequence of ``seq`` tokens (measure/peak.py), counted
        once per model and length; None, with a note, for a model the counter cannot run."""
        key = (spec.name, seq)
        if key not in self._flops:
            try:
                self._flops[key] = count_flops(self.model(spec),
                                               spec.make_inputs(1, seq, self.settings.seed))
            except Exception as exc:  # a user's forward may raise anything: no figure, go on
                self.notes.add(f"{spec.name}: FLOPs not counted, so no % of peak "
                               f"({type(exc).__name__}: {exc})")
                self._flops[key] = None
        return self._flops[key]

    def reference(self, spec: ModelSpec, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """FP32 PyTorch output for these inputs, computed once per model and shape."""
        import torch

        key = (spec.name, _digest_inputs(inputs))
        if key not in self._references:
            model = self.model(spec)
            with torch.inference_mode():
                tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
                self._references[key] = primary_output(model(**tensors)).float().numpy()
        return self._references[key]

    def corpus_embeddings(self, spec: ModelSpec, runner: Runner | None, seq: int) -> np.ndarray:
        """Sentence embeddings of the bundled corpus, by ``runner`` or (None) the reference."""
        import numpy as np

        assert spec.tokenize is not None
        seq = min(seq, RETRIEVAL_MAX_SEQ)
        texts = sentences()
        chunks = []
        for start in range(0, len(texts), RETRIEVAL_BATCH):
            inputs = spec.tokenize(texts[start:start + RETRIEVAL_BATCH], seq)
            hidden = runner.run(inputs) if runner is not None else self.reference(spec, inputs)
            chunks.append(mean_pooled(hidden, inputs["attention_mask"]))
        return np.concatenate(chunks)

    def corpus_reference(self, spec: ModelSpec, seq: int) -> np.ndarray:
        key = (spec.name, seq)
        if key not in self._corpus_reference:
            self._corpus_reference[key] = self.corpus_embeddings(spec, None, seq)
        return self._corpus_reference[key]

    # -- runners ------------------------------------------------------------------------
    @staticmethod
    def check_device(backend: str) -> None:
        """Skip early (before any artifact is built) when the backend's device is missing."""
        if BACKENDS[backend].device != "cuda":
            return
        from pytest_xfperf.backends.torch_cuda import require_cuda

        require_cuda()

    def artifact(self, case: Case, spec: ModelSpec) -> BuiltArtifact | None:
        info = BACKENDS[case.backend]
        if info.onnx_target is None:
            return None
        artifact = self.pipeline.build(spec, case.precision, lambda: self.model(spec), case.shape,
                                       info.onnx_target, self.progress(case.id))
        # QDQ and portable files are unfused on purpose (see quantize.py, pipeline.py).
        if case.precision != "int8-static" and info.onnx_target != "portable":
            warning = fusion_warning(spec.name, spec.family, spec.num_layers,
                                     artifact.graph.get("fused", {}))
            if warning:
                self.notes.add(warning)
        return artifact

    def make_runner(self, case: Case, spec: ModelSpec, artifact: BuiltArtifact | None) -> Runner:
        """The backend's runner, from its catalog row's factory (imported now)."""
        info = BACKENDS[case.backend]
        context = RunnerContext(case=case, model=lambda: self.model(spec),
                                artifact_path=artifact.path if artifact else None,
                                options=self.settings.backend_options.get(case.backend, {}),
                                session=self,
                                calibration=lambda: calibration_inputs(
                                    spec, case.shape, self.settings.seed,
                                    self.settings.build.calibration_batches))
        runner: Runner = load_factory(info)(context)
        return runner

    def speedup_reference_record(self, case: Case, spec: ModelSpec,
                                 inputs: Mapping[str, np.ndarray], blocks: int
                                 ) -> dict[str, Any] | None:
        """The speed-up's reference (PyTorch on the case's device) as a block record of
        at least ``blocks`` blocks, measured (or extended) on use in this process; None where
        it cannot run here."""
        from pytest_xfperf.measure.blocks import BlockPlan
        from pytest_xfperf.measure.case import extend_reference

        key, backend, precision, have, missing = self._reference_state(case, blocks)
        if missing <= 0:
            return have
        if key not in self._reference_runners:
            reference = Case(case.model, backend, precision, case.shape, case.model_ref)
            try:
                self.check_backend(backend)
                runner = self.make_runner(reference, spec, None)
            except (BackendUnavailable, ModuleNotFoundError):
                return None
            self._reference_runners[key] = (runner, runner.prepare(inputs))
        runner, call = self._reference_runners[key]
        plan = BlockPlan.of(self.settings.timing, self.settings.gate.policy)
        self._references_timed[key] = extend_reference(
            have, runner, call, self.settings.backend_options.get(backend, {}), plan, missing,
            lambda: self.device_lock(backend))
        return self._references_timed[key]

    def generation_reference_record(self, case: Case, spec: ModelSpec, input_ids: np.ndarray,
                                    blocks: int) -> dict[str, Any] | None:
        """A generative case's speed-up reference: PyTorch on the case's device generating the
        same prompt, as a block record of its primary figure (TPOT; TTFT for a single new
        token) with at least ``blocks`` blocks, measured (or extended) on use in this
        process; None where it cannot run here."""
        from pytest_xfperf.generation.check import primary_metric, torch_generator
        from pytest_xfperf.generation.generators import generation_clock
        from pytest_xfperf.generation.timing import GenerationMeasurement
        from pytest_xfperf.measure.blocks import BlockPlan
        from pytest_xfperf.measure.case import make_yardstick, merged_record

        key, backend, precision, have, missing = self._reference_state(case, blocks)
        if missing <= 0:
            return have
        measurement = self._reference_generations.get(key)
        if measurement is None:
            try:
                self.check_backend(backend)
                generator = torch_generator(self, spec, backend, precision)
            except (BackendUnavailable, ModuleNotFoundError):
                return None
            plan = BlockPlan.of(self.settings.timing, self.settings.gate.policy)
            measurement = GenerationMeasurement(
                generator, input_ids, case.shape.new_tokens,
                make_yardstick(backend, self.settings.backend_options.get(backend, {})), plan,
                self.settings.gate.policy, lambda: self.device_lock(backend),
                generation_clock(case.backend))
            self._reference_generations[key] = measurement
        record = measurement.extend(missing)[primary_metric(case.shape.new_tokens)]
        added: dict[str, Any] = dict(record)  # only the blocks measured now, as records go
        for name in ("case_ms", "yardstick_ms"):
            if name in added:
                added[name] = added[name][-missing:]
        self._references_timed[key] = merged_record(have, added, backend)
        return self._references_timed[key]

    def _reference_state(self, case: Case, blocks: int
                         ) -> tuple[tuple[str, str, str], str, str, dict[str, Any] | None, int]:
        """The speed-up reference serving ``case``: its key, backend and precision, its
        record so far (None: none yet) and how many blocks it lacks of ``blocks``."""
        from pytest_xfperf.backends.catalog import speedup_reference

        backend, precision = speedup_reference(case.backend, case.precision)
        key = self._reference_key(case, backend, precision)
        have = self._references_timed.get(key)
        return key, backend, precision, have, blocks - (len(have["case_ms"]) if have else 0)

    def close_reference_runners(self) -> None:
        """Release the speed-up references' runners and generators (a GPU copy of the model
        each)."""
        for runner, _ in self._reference_runners.values():
            runner.close()
        self._reference_runners.clear()
        for measurement in self._reference_generations.values():
            measurement.close()
        self._reference_generations.clear()

    def remember_reference(self, case: Case, record: dict[str, Any]) -> None:
        """A reference case's own record serves as its model's reference (when none is
        yet)."""
        key = self._reference_key(case, case.backend, case.precision)
        self._references_timed.setdefault(key, {**record, "reference": case.backend})

    @staticmethod
    def _reference_key(case: Case, backend: str, precision: str) -> tuple[str, str, str]:
        """Whose speed-up reference record serves ``case``: by model, shape, reference backend
        and precision, and for a generation the case's clock too (ONNX Runtime's GPU steps
        end on the host and are timed on the wall clock, PyTorch's by CUDA events; a ratio
        must not mix the two)."""
        what = f"{backend}/{precision}"
        if case.generative:
            from pytest_xfperf.generation.generators import generation_clock

            what += f"/{generation_clock(case.backend)}"
        return case.model, case.shape.label, what

    def device_lock(self, backend: str) -> contextlib.AbstractContextManager[None]:
        """Held while a case is timed: xdist workers (and parallel jobs sharing this cache)
        never time two cases on one device at once, unless parallel timing was asked for."""
        if self.settings.parallel_timing:
            return contextlib.nullcontext()
        device = BACKENDS[backend].device
        return locked(self.cache.root / "locks" / f"device-{device}.lock")

    # -- the session's end --------------------------------------------------------------
    def baseline_entries(self) -> tuple[dict[str, Any], list[str]]:
        """This run's entries; cases that failed accuracy are refused unless forced, and a
        server case whose bound no rate met has no figure to record."""
        from pytest_xfperf.baselines.record import entry

        entries, refused = {}, []
        for result in self.results:
            if result.stats is None and not result.serving_metrics:
                continue  # timing disabled: nothing measured to record
            if result.bound_unmet or (result.accuracy_problems
                                      and not self.settings.gate.force_record):
                refused.append(result.case.id)
                continue
            entries[result.case.id] = entry(result)
        return entries, refused

    def worker_output(self) -> dict[str, Any]:
        """What an xdist worker hands to the controller."""
        entries, refused = (self.baseline_entries() if self.settings.gate.update_baselines
                            else ({}, []))
        return {"results": [r.as_json() for r in self.results], "entries": entries,
                "refused": refused, "notes": self.notes.lines(), "shard": self.shard}

    def finish(self, worker_outputs: Sequence[Mapping[str, Any]] = ()) -> None:
        """Merge xdist workers' results, record baselines, write the reports."""
        self.close_reference_runners()
        for damaged in self.cache.rebuilt_corrupt:
            self.notes.add(f"damaged cache entry moved aside and rebuilt: {damaged}")
        extra_entries: dict[str, Any] = {}
        extra_refused: list[str] = []
        for output in worker_outputs:
            self.results.extend(Result.from_json(r) for r in output["results"])
            extra_entries.update(output["entries"])
            extra_refused.extend(output["refused"])
            self.notes.extend(output["notes"])
            self.shard = self.shard or dict(output.get("shard") or {})  # workers collected
        if worker_outputs:
            self.results.sort(key=lambda r: r.case.id)
            if not self.settings.parallel_timing:
                self.notes.add(
                    f"{len(worker_outputs)} xdist workers: cases were built in parallel but "
                    "timed one at a time per device (a lock), since concurrent timing measures "
                    "contention; --xfperf-parallel-timing allows it for throughput-only runs")
        if self.settings.gate.update_baselines:
            entries, refused = self.baseline_entries()
            entries.update(extra_entries)
            refused += extra_refused
            pool = self.settings.gate.pool_recordings
            pooled = (store.merge_and_write(self.baseline_file, entries, self.machine, pool)
                      if entries else {})
            self.notes.add(f"recorded {len(entries)} case(s) in {self.baseline_file}")
            if pooled:
                by_outcome: dict[str, list[str]] = {}
                for case_id, what in sorted(pooled.items()):
                    by_outcome.setdefault(what, []).append(case_id)
                self.notes.add(f"pooled recordings (up to {pool} processes): " + "; ".join(
                    f"{what}: {', '.join(ids)}" for what, ids in sorted(by_outcome.items())))
            if refused:
                self.notes.add("NOT recorded (failed their accuracy check, or no rate met the "
                               "latency bound): " + ", ".join(refused))
        from pytest_xfperf.report.json_report import build_report
        from pytest_xfperf.report.render import write_reports

        # One document serves the history and the JSON report; built only when one wants it.
        report = None
        if self.results and (self.history is not None
                             or self.settings.reports.report is not None):
            report = build_report(self.results, self.settings, self.baselines,
                                  self.notes.lines(), self.run_facts())
            if self.history is not None:
                self.history.append(report)
        write_reports(self.settings, self.results, self.baselines, self.machine, self.notes,
                      report)

    def run_facts(self) -> dict[str, Any]:
        """What a report says of the run beyond its cases: commit, branch, shard."""
        from pytest_xfperf.history.record import git_revision

        facts: dict[str, Any] = {"git": git_revision(self.rootpath)}
        if self.shard:
            facts["shard"] = self.shard
        return facts
