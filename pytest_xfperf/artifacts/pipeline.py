"""export -> optimize -> quantize, each stage cached by a key that covers what it depends on.

A stage's key is built from its parent's *key*, not from the parent's file, so a warm run
loads (and verifies) only the final artifact; parents are opened only to build a child.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_xfperf.artifacts.cache import ArtifactCache, Entry, cache_key
from pytest_xfperf.artifacts.export import export_onnx
from pytest_xfperf.artifacts.fp16 import convert_fp16
from pytest_xfperf.artifacts.graph import op_histogram, quantization_coverage
from pytest_xfperf.artifacts.optimize import optimize_onnx, optimizer_key
from pytest_xfperf.artifacts.options import BuildOptions
from pytest_xfperf.artifacts.quantize import quantize_dynamic_int8, quantize_static_qdq
from pytest_xfperf.artifacts.quiet import quiet_build
from pytest_xfperf.models.spec import ModelSpec
from pytest_xfperf.values import Shape
from pytest_xfperf.versions import library_versions

if TYPE_CHECKING:
    import numpy as np
    import torch

MODEL_FILE = "model.onnx"
ONNX_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
# The calibration batches are seeded apart from the timed inputs (seed + this + index).
CALIBRATION_SEED_OFFSET = 1000
MAX_CALIBRATION_BATCH = 8
# INT8 builds leave groups of products in FP32 until their calibration output reaches this
# cosine vs FP32: the accuracy bar of the INT8 precisions (accuracy.py).
INT8_MIN_COSINE = 0.99
BUILDER_LIBRARIES = ("torch", "transformers", "onnx", "onnxruntime")
TARGETS = ("cpu", "gpu", "portable")


def calibration_inputs(spec: ModelSpec, shape: Shape | None, seed: int, batches: int
                       ) -> list[Mapping[str, np.ndarray]]:
    """The seeded calibration batches of a case: ``batches`` inputs at the case's sequence
    length, its batch size up to MAX_CALIBRATION_BATCH."""
    seq = shape.seq if shape else 128
    batch = min(shape.batch if shape else 1, MAX_CALIBRATION_BATCH)
    return [spec.make_inputs(batch, seq, seed + CALIBRATION_SEED_OFFSET + i)
            for i in range(batches)]


def _cpu_has_vnni() -> bool:
    from pytest_xfperf.baselines.machine import has_vnni, machine_info

    return has_vnni(machine_info())


@dataclass
class BuiltArtifact:
    path: Path
    build_seconds: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    built_now: list[str] = field(default_factory=list)  # stages built in this run
    graph: dict[str, Any] = field(default_factory=dict)  # fused counts, ops, coverage
    prepare_seconds: float = 0.0  # this run's time to get the artifact (lookup, verify, build)


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _versions(*names: str) -> dict[str, str]:
    versions = library_versions()
    return {n: versions.get(n, "") for n in names}


class ArtifactPipeline:
    def __init__(
        self, cache: ArtifactCache, seed: int, options: BuildOptions | None = None
    ) -> None:
        self.cache = cache
        self.seed = seed
        self.options = options or BuildOptions()

    def build(
        self,
        spec: ModelSpec,
        precision: str,
        load_model: Callable[[], torch.nn.Module],
        shape: Shape | None = None,
        target: str = "cpu",
        progress: Callable[[str], None] | None = None,
    ) -> BuiltArtifact:
        """The ONNX file for ``precision``; ``load_model`` is called only if export must run.

        One exported file serves every shape (dynamic axes); only ``int8-static`` depends on
        ``shape``, through its calibration batches (the case's sequence length, batch capped).

        ``target``: "cpu" or "gpu" fuse with ORT's optimizer for that device; "portable"
        keeps standard ONNX operators only (FP32 is the export itself, FP16 its conversion),
        for TensorRT's parser, which reads none of ORT's fused contrib operators.

        ``progress`` is told when a stage starts and ends building (not on cache hits): a slow
        first run says what it is doing.
        """
        if target not in TARGETS:
            raise ValueError(f"unknown artifact target {target!r}")
        if precision not in ONNX_PRECISIONS:
            raise ValueError(f"no ONNX pipeline for precision {precision!r}")
        started = time.perf_counter()
        built_now: list[str] = []

        def stage(
            name: str, parts: dict[str, Any], make: Callable[[Path], dict[str, Any]],
            parent: Callable[[], Entry] | None,
        ) -> Callable[[], Entry]:
            """A lazily built stage; its info carries the build times of the chain so far."""

            def get() -> Entry:
                def build_it(directory: Path) -> dict[str, Any]:
                    inherited: dict[str, float] = {}
                    if parent is not None:
                        inherited = dict(parent().info["build_seconds"])
                    started = time.perf_counter()  # after parent(): its build is not ours
                    if progress is not None:
                        progress(f"building {name} ({precision}, {target})...")
                    with quiet_build():
                        info = make(directory)
                    if progress is not None:
                        progress(f"built {name} in {time.perf_counter() - started:.1f} s")
                    info["ops"] = op_histogram(directory / MODEL_FILE)
                    info["coverage"] = quantization_coverage(directory / MODEL_FILE)
                    # A stage may split its time (calibrate vs quantize) itself.
                    own = info.pop("stage_seconds", None) or {
                        name: round(time.perf_counter() - started, 3)}
                    info["build_seconds"] = {**inherited, **own}
                    return info

                entry = self.cache.get_or_build(parts, build_it)
                if entry.built_now and name not in built_now:
                    built_now.append(name)
                return entry

            return get

        options = self.options
        identity = spec.identity or weights_digest(load_model())
        sample = spec.make_inputs(2, 16, self.seed)
        export_parts: dict[str, Any] = {"stage": "export", "model": spec.name, "identity": identity,
                        "inputs": sorted(sample), "exporter": options.exporter,
                        **_versions("torch", "transformers", "onnx")}
        exported = stage(
            "export", export_parts,
            lambda d: {**export_onnx(load_model(), sample, d / MODEL_FILE, spec.name,
                                     options.exporter), "fused": {}},
            None,
        )
        use_gpu = target == "gpu"
        optimize_parts: dict[str, Any] = {"stage": "optimize", "parent": cache_key(export_parts),
                          "family": spec.family, "num_heads": spec.num_heads,
                          "hidden_size": spec.hidden_size, **_versions("onnxruntime", "onnx"),
                          **optimizer_key(spec.family, use_gpu)}
        optimized = stage(
            "optimize", optimize_parts,
            lambda d: {**optimize_onnx(exported().file(MODEL_FILE), d / MODEL_FILE, spec.family,
                                       spec.num_heads, spec.hidden_size, use_gpu),
                       "opset": exported().info["opset"]},
            exported,
        )
        if target == "portable":  # no ORT fusions: the export is the FP32 parent
            optimized, optimize_parts = exported, export_parts

        def child_of(parent: Callable[[], Entry], build: Callable[[Path], dict[str, Any]]
                     ) -> Callable[[Path], dict[str, Any]]:
            # Fused counts and opset are the parent's: quantizers and converters keep them.
            return lambda d: {**build(d), "fused": parent().info["fused"],
                              "opset": parent().info["opset"]}

        final_stage = optimized
        if precision == "int8-dynamic" and target != "cpu":
            raise ValueError("int8-dynamic is an ONNX Runtime CPU artifact")
        ort_versions = _versions("onnxruntime", "onnx")
        reduce_range = options.resolved_reduce_range()
        # Which groups stay FP32 is measured with this CPU's INT8 kernels: an artifact built
        # where they have an 8-bit dot product is not reused where they do not.
        int8_kernels = {"int8_dot_product": _cpu_has_vnni()} if precision.startswith("int8") else {}
        if precision == "int8-dynamic":
            # One file serves every shape, so its accuracy check does not take the case's:
            # seeded 1x128 batches.
            parts = {"stage": "quantize-dynamic", "parent": cache_key(optimize_parts),
                     "per_channel": options.per_channel, "reduce_range": reduce_range,
                     "batches": options.calibration_batches, "seed": self.seed,
                     "min_cosine": INT8_MIN_COSINE, **int8_kernels, **ort_versions}
            final_stage = stage("quantize", parts, child_of(optimized, lambda d: (
                quantize_dynamic_int8(
                    optimized().file(MODEL_FILE), d / MODEL_FILE, options.per_channel,
                    reduce_range, calibration_inputs(spec, None, self.seed,
                                                     options.calibration_batches),
                    INT8_MIN_COSINE))), optimized)
        elif precision == "fp16":
            parts = {"stage": "fp16", "parent": cache_key(optimize_parts), **ort_versions}
            final_stage = stage("fp16", parts, child_of(optimized, lambda d: (
                convert_fp16(optimized().file(MODEL_FILE), d / MODEL_FILE))), optimized)
        elif precision == "int8-static":
            seq = shape.seq if shape else 128
            batch = min(shape.batch if shape else 1, MAX_CALIBRATION_BATCH)
            parts = {"stage": "quantize-static", "parent": cache_key(export_parts),
                     "method": options.calibration_method,
                     "batches": options.calibration_batches, "batch": batch, "seq": seq,
                     "seed": self.seed, "per_channel": options.per_channel,
                     "reduce_range": reduce_range, "min_cosine": INT8_MIN_COSINE,
                     **int8_kernels, **ort_versions}

            def calibrate_and_quantize(d: Path) -> dict[str, Any]:
                calibration = calibration_inputs(spec, shape, self.seed,
                                                 options.calibration_batches)
                return quantize_static_qdq(exported().file(MODEL_FILE), d / MODEL_FILE,
                                           calibration, options.calibration_method,
                                           options.per_channel, INT8_MIN_COSINE,
                                           reduce_range)

            final_stage = stage("quantize", parts, child_of(exported, calibrate_and_quantize),
                                exported)
        final = final_stage()
        graph: dict[str, Any] = {"fused": final.info["fused"], "ops": final.info["ops"],
                                 "opset": final.info["opset"],
                                 "built_with": _versions(*BUILDER_LIBRARIES)}
        if precision.startswith("int8"):
            graph["quantization"] = {**final.info["coverage"], "reduce_range": reduce_range,
                                     **_accuracy_fallback(final.info)}
        return BuiltArtifact(path=final.file(MODEL_FILE),
                             build_seconds=dict(final.info["build_seconds"]),
                             built_now=built_now, graph=graph,
                             prepare_seconds=time.perf_counter() - started)


def _accuracy_fallback(info: Mapping[str, Any]) -> dict[str, Any]:
    """What an INT8 build left in FP32 to reach its cosine on the calibration batches, in the
    graph fingerprint's flat form, so that a drift in coverage can say it was this."""
    if "float_groups" not in info:
        return {}
    fallback: dict[str, Any] = {"fp32_groups": ", ".join(info["float_groups"])}
    if "calibration_cosine" in info:
        fallback["calibration_cosine"] = info["calibration_cosine"]
    return fallback
