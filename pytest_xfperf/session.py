"""State shared by the cases of one pytest session: cache, models, references, results."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_xfperf.accuracy import mean_pooled
from pytest_xfperf.artifacts.cache import ArtifactCache
from pytest_xfperf.artifacts.fusion import fusion_warning
from pytest_xfperf.artifacts.pipeline import ArtifactPipeline, BuildOptions, BuiltArtifact
from pytest_xfperf.backends.base import BackendUnavailable, Runner
from pytest_xfperf.backends.catalog import BACKENDS
from pytest_xfperf.baselines import store
from pytest_xfperf.baselines.machine import machine_info, machine_key
from pytest_xfperf.matrix import Case
from pytest_xfperf.models.corpus import sentences
from pytest_xfperf.models.module import primary_output
from pytest_xfperf.models.registry import ModelRegistry
from pytest_xfperf.models.spec import ModelSpec
from pytest_xfperf.result import Result
from pytest_xfperf.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    import torch

RETRIEVAL_BATCH = 32
RETRIEVAL_MAX_SEQ = 128


def _digest_inputs(inputs: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(inputs):
        digest.update(name.encode())
        digest.update(str(inputs[name].shape).encode())
        digest.update(inputs[name].tobytes())
    return digest.hexdigest()


class XfperfSession:
    def __init__(self, settings: Settings, registry: ModelRegistry, rootpath: Path) -> None:
        self.settings = settings
        self.registry = registry
        self.cache = ArtifactCache(rootpath / settings.cache_dir)  # an absolute path wins
        if settings.clear_cache:
            self.cache.clear()
        self.pipeline = ArtifactPipeline(self.cache, settings.seed, BuildOptions(
            exporter=settings.exporter, calibration_method=settings.calibration_method,
            calibration_batches=settings.calibration_batches, per_channel=settings.per_channel))
        self.baseline_file = store.baseline_path(rootpath / settings.baselines_dir, machine_key())
        self.baselines: dict[str, Any] = store.load(self.baseline_file)["cases"]
        self.results: list[Result] = []
        self.notes: list[str] = []  # shown under the summary table
        # One torch model at a time: cases arrive grouped by model, and BERT-large in FP32
        # next to its references would not fit small CI machines twice over.
        self._model_name = ""
        self._model: torch.nn.Module | None = None
        self._references: dict[tuple[str, str], np.ndarray] = {}
        self._corpus_reference: dict[tuple[str, int], np.ndarray] = {}

    # -- availability -------------------------------------------------------------------
    @staticmethod
    def check_backend(backend: str) -> None:
        info = BACKENDS[backend]
        missing = [m for m in info.modules if importlib.util.find_spec(m) is None]
        if missing:
            raise BackendUnavailable(
                f"{backend} needs {', '.join(missing)}: pip install 'pytest-xfperf[{info.extra}]'"
            )

    # -- models and references ----------------------------------------------------------
    def model(self, spec: ModelSpec) -> torch.nn.Module:
        if self._model_name != spec.name or self._model is None:
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
    def artifact(self, case: Case, spec: ModelSpec) -> BuiltArtifact | None:
        if not BACKENDS[case.backend].uses_onnx:
            return None
        artifact = self.pipeline.build(spec, case.precision, lambda: self.model(spec), case.shape)
        if case.precision != "int8-static":  # QDQ is built unfused on purpose (see quantize)
            warning = fusion_warning(spec.name, spec.family, spec.num_layers,
                                     artifact.graph.get("fused", {}))
            if warning and "xfperf: " + warning not in self.notes:
                self.notes.append("xfperf: " + warning)
        return artifact

    def make_runner(self, case: Case, spec: ModelSpec, artifact: BuiltArtifact | None) -> Runner:
        if case.backend == "torch-cpu":
            from pytest_xfperf.backends.pytorch import TorchCpuRunner

            threads = self.settings.backend_options.get("torch-cpu", {}).get("threads", 0)
            return TorchCpuRunner(self.model(spec), threads)
        if case.backend == "ort-cpu":
            from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner

            assert artifact is not None
            return OrtCpuRunner(artifact.path, self.settings.backend_options.get("ort-cpu"))
        raise BackendUnavailable(f"no runner for backend {case.backend!r}")

    # -- baselines ----------------------------------------------------------------------
    def record_baselines(self) -> tuple[int, list[str]]:
        """Write results into the baseline file; cases that failed accuracy are refused."""
        entries, refused = {}, []
        for result in self.results:
            if result.stats is None:
                continue
            if result.accuracy_problems:
                refused.append(result.case.id)
                continue
            entries[result.case.id] = result.baseline_entry()
        if entries:
            store.merge_and_write(self.baseline_file, entries, machine_info())
        return len(entries), refused
