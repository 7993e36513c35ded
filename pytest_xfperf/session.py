"""State shared by the cases of one pytest session: cache, models, references, results."""

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
from pytest_xfperf.artifacts.pipeline import ArtifactPipeline, BuildOptions, BuiltArtifact
from pytest_xfperf.backends.base import BackendUnavailable, Runner
from pytest_xfperf.backends.catalog import BACKENDS
from pytest_xfperf.baselines import store
from pytest_xfperf.baselines.machine import machine_info, machine_key
from pytest_xfperf.fileio import locked
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
        self.pipeline = ArtifactPipeline(self.cache, settings.seed, BuildOptions(
            exporter=settings.exporter, calibration_method=settings.calibration_method,
            calibration_batches=settings.calibration_batches, per_channel=settings.per_channel))
        self.baseline_file = store.baseline_path(rootpath / settings.baselines_dir, machine_key())
        self.baselines: dict[str, Any] = store.load(self.baseline_file)["cases"]
        self.results: list[Result] = []
        self.notes: list[str] = []  # shown under the summary table
        # Set by the plugin in verbose mode: long steps announce themselves through it.
        self.announce: Callable[[str], None] | None = None
        # One torch model at a time: cases arrive grouped by model, and BERT-large in FP32
        # next to its references would not fit small CI machines twice over.
        self._model_name = ""
        self._model: torch.nn.Module | None = None
        self._references: dict[tuple[str, str], np.ndarray] = {}
        self._corpus_reference: dict[tuple[str, int], np.ndarray] = {}

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
    @staticmethod
    def check_device(backend: str) -> None:
        """Skip early (before any artifact is built) when the backend's device is missing."""
        if BACKENDS[backend].device != "cuda":
            return
        from pytest_xfperf.backends.torch_cuda import require_cuda

        require_cuda()
        if backend in ("tensorrt", "ort-trt"):
            from pytest_xfperf.backends.tensorrt import load_tensorrt

            trt = load_tensorrt()
            if not hasattr(trt, "Builder"):  # tensorrt-stubs alone installs a bare package
                raise BackendUnavailable(
                    "only TensorRT's type stubs are installed, not TensorRT: "
                    "pip install 'pytest-xfperf[tensorrt]'")

    def artifact(self, case: Case, spec: ModelSpec) -> BuiltArtifact | None:
        info = BACKENDS[case.backend]
        if not info.uses_onnx:
            return None
        artifact = self.pipeline.build(spec, case.precision, lambda: self.model(spec), case.shape,
                                       info.onnx_target, self.progress(case.id))
        # QDQ and portable files are unfused on purpose (see quantize.py, pipeline.py).
        if case.precision != "int8-static" and info.onnx_target != "portable":
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
        options = dict(self.settings.backend_options.get(case.backend, {}))
        if case.backend.startswith("torch-"):
            from pytest_xfperf.backends.torch_cuda import TorchCudaRunner

            mode = {"torch-cuda": "eager", "torch-cuda-graph": "graph",
                    "torch-compile": "compile"}[case.backend]
            return TorchCudaRunner(self.model(spec), case.precision, mode,
                                   tf32=bool(options.get("tf32", False)),
                                   compile_mode=str(options.get("compile_mode",
                                                                "reduce-overhead")))
        assert artifact is not None
        if case.backend in ("ort-cuda", "ort-cuda-graph", "ort-trt"):
            from pytest_xfperf.backends.onnxruntime_cuda import OrtCudaRunner

            provider = ("TensorrtExecutionProvider" if case.backend == "ort-trt"
                        else "CUDAExecutionProvider")
            return OrtCudaRunner(artifact.path, case.precision,
                                 cuda_graph=case.backend == "ort-cuda-graph", provider=provider,
                                 options=options)
        if case.backend == "tensorrt":
            return self._tensorrt_runner(case, artifact)
        raise BackendUnavailable(f"no runner for backend {case.backend!r}")

    def _tensorrt_runner(self, case: Case, artifact: BuiltArtifact) -> Runner:
        """An engine for this ONNX file, TensorRT version, GPU and profile, from the cache."""
        import torch

        from pytest_xfperf.backends import tensorrt as trt_backend

        trt = trt_backend.load_tensorrt()
        version = str(trt.__version__)
        if trt_backend.onnx_variant(version, case.precision) != case.precision:
            # TensorRT 10 builds FP16 from the FP32 file with its FP16 flag.
            variant = trt_backend.onnx_variant(version, case.precision)
            artifact = self.pipeline.build(self.registry.get(case.ref), variant,
                                           lambda: self.model(self.registry.get(case.ref)),
                                           case.shape, "portable")
        # Serving batches range from one short request to the case's shape.
        profile = trt_backend.profile_shapes(self.settings.shapes, serving=case.serving)
        level = self.settings.backend_options.get("tensorrt", {}).get(
            "builder_optimization_level")
        parts = trt_backend.engine_cache_parts(artifact.path.parent.name, version,
                                               torch.cuda.get_device_name(), case.precision,
                                               profile, level)
        progress = self.progress(case.id)

        def build(directory: Path) -> dict[str, Any]:
            progress("building the TensorRT engine...")
            info = trt_backend.build_engine(artifact.path, directory, case.precision, profile,
                                            optimization_level=level)
            progress("built the TensorRT engine")
            return info

        entry = self.cache.get_or_build(parts, build)
        return trt_backend.TensorRTRunner(entry.file(trt_backend.ENGINE_FILE), case.precision,
                                          level)

    def device_lock(self, backend: str) -> contextlib.AbstractContextManager[None]:
        """Held while a case is timed: xdist workers (and parallel jobs sharing this cache)
        never time two cases on one device at once, unless parallel timing was asked for."""
        if self.settings.parallel_timing:
            return contextlib.nullcontext()
        device = BACKENDS[backend].device
        return locked(self.cache.root / "locks" / f"device-{device}.lock")

    # -- baselines ----------------------------------------------------------------------
    def baseline_entries(self) -> tuple[dict[str, Any], list[str]]:
        """This run's entries; cases that failed accuracy are refused unless forced, and a
        server case whose bound no rate met has no figure to record."""
        entries, refused = {}, []
        for result in self.results:
            if result.stats is None and not result.serving_metrics:
                continue  # timing disabled: nothing measured to record
            if result.bound_unmet or result.accuracy_problems and not self.settings.force_record:
                refused.append(result.case.id)
                continue
            entries[result.case.id] = result.baseline_entry()
            if result.accuracy_problems:
                entries[result.case.id]["forced"] = True  # recorded despite failed accuracy
        return entries, refused

    def record_baselines(
        self, extra: Mapping[str, Any] | None = None, extra_refused: Sequence[str] = ()
    ) -> tuple[int, list[str]]:
        """Write this run's entries (and those of xdist workers) in one locked update."""
        entries, refused = self.baseline_entries()
        entries.update(extra or {})
        refused += list(extra_refused)
        if entries:
            store.merge_and_write(self.baseline_file, entries, machine_info())
        return len(entries), refused
