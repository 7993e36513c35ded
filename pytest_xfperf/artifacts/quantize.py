"""Post-training quantization with ONNX Runtime: dynamic INT8 and static INT8 (QDQ)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# At most this many groups of products may be left in FP32 to reach the accuracy target.
MAX_FLOAT_GROUPS = 2


class CalibrationError(Exception):
    pass


def quantize_dynamic_int8(
    in_path: Path, out_path: Path, per_channel: bool = True, reduce_range: bool = False,
    calibration: Sequence[Mapping[str, np.ndarray]] = (), min_cosine: float = 0.99,
) -> dict[str, Any]:
    """Dynamic INT8 of ``in_path``: every operator ONNX Runtime's dynamic quantizer handles
    (weight MatMuls, fused Attention, embedding lookups).

    ``reduce_range``: 7-bit weights, for CPUs without VNNI (see artifacts/options.py). With
    ``calibration`` batches, the output cosine vs the FP32 model is measured on them with this
    CPU's kernels; below ``min_cosine``, groups of products are left in FP32 as in
    ``quantize_static_qdq``. Why on this CPU: the INT8 kernels differ with the ISA, and a
    model with activation outliers (MiniLM's FFN output) meets the bar all-INT8 on a CPU
    with VNNI and misses it on one without (docs/measurements.md).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    groups: dict[str, list[str]] = {}
    reference: list[np.ndarray] = []
    if calibration:  # without batches nothing is measured, so nothing is left in FP32
        model = onnx.load(str(in_path), load_external_data=False)
        groups = _weight_matmul_groups(model, {i.name for i in model.graph.initializer})
        reference = _first_outputs(in_path, calibration)

    def quantize(target: Path, float_groups: Sequence[str]) -> float:
        quantize_dynamic(
            str(in_path), str(target), per_channel=per_channel, weight_type=QuantType.QInt8,
            reduce_range=reduce_range,
            nodes_to_exclude=[name for g in float_groups for name in groups[g]],
            # Fused contrib ops (Attention, SkipLayerNormalization) declare no output type;
            # without a default the quantizer stops on them.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        return _output_cosine(reference, target, calibration) if calibration else 1.0

    float_groups, score = _quantize_within(quantize, out_path, groups, min_cosine)
    info: dict[str, Any] = {"quantization": "dynamic", "weight_type": "QInt8",
                            "per_channel": per_channel, "reduce_range": reduce_range,
                            "float_groups": float_groups}
    if calibration:
        info["calibration_cosine"] = round(score, 6)
    return info


def _quantize_within(
    quantize: Callable[[Path, Sequence[str]], float], out_path: Path,
    groups: Mapping[str, Sequence[str]], min_cosine: float,
) -> tuple[list[str], float]:
    """Quantize everything; while the cosine ``quantize`` measures is below ``min_cosine``,
    leave in FP32 the one more group of products (same role in every layer) whose return
    helps most, up to MAX_FLOAT_GROUPS. Each try is a full quantization. The groups left
    in FP32 and the final cosine."""
    float_groups: list[str] = []
    score = quantize(out_path, float_groups)
    trial = out_path.with_name("trial.onnx")
    try:
        while score < min_cosine and len(float_groups) < MAX_FLOAT_GROUPS:
            best: tuple[float, str] | None = None
            for group in groups:
                if group in float_groups:
                    continue
                candidate = quantize(trial, [*float_groups, group])
                if best is None or candidate > best[0]:
                    best = (candidate, group)
            if best is None:
                break
            float_groups.append(best[1])
            score = quantize(out_path, float_groups)
    finally:
        trial.unlink(missing_ok=True)
    return float_groups, score


class _TimedReader:
    """Feeds the calibration batches and notes when the calibrator started and finished
    reading them: that span is the calibration time inside ``quantize_static``."""

    def __init__(self, batches: Sequence[Mapping[str, np.ndarray]], input_names: set[str]):
        self._batches = [{k: v for k, v in b.items() if k in input_names} for b in batches]
        self._next = 0
        self.first_read: float | None = None
        self.last_read: float | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        now = time.perf_counter()
        if self.first_read is None:
            self.first_read = now
        if self._next >= len(self._batches):
            self.last_read = now
            return None
        batch = self._batches[self._next]
        self._next += 1
        return dict(batch)

    def rewind(self) -> None:
        self._next = 0


def quantize_static_qdq(
    in_path: Path,
    out_path: Path,
    calibration: Sequence[Mapping[str, np.ndarray]],
    method: str = "minmax",
    per_channel: bool = True,
    min_cosine: float = 0.99,
    reduce_range: bool = False,
) -> dict[str, Any]:
    """Static INT8 in QDQ form on the *exported* graph (standard ONNX operators only).

    The QDQ model is backend-neutral: ONNX Runtime folds each Q/DQ pair around a MatMul into
    an integer kernel, and TensorRT's parser reads the same Q/DQ nodes (it reads none of ORT's
    fused contrib operators, which is why this is not built on the fused graph). Only products
    with a weight are quantized, as dynamic quantization does; attention scores stay float.
    If the output cosine vs FP32 on the calibration batches falls below ``min_cosine``, up to
    MAX_FLOAT_GROUPS groups of products are left in FP32 (chosen by measured error); which
    ones is recorded, and the coverage in the graph fingerprint shows it.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise CalibrationError(
            f"unknown calibration method {method!r}; "
            f"choose one of {', '.join(CALIBRATION_METHODS)}")
    if not calibration:
        raise CalibrationError(
            "the calibration set is empty: set calibration_batches to 1 or more")
    started = time.perf_counter()
    prepared = out_path.with_name("preprocessed.onnx")
    # Shape inference gives every activation a type, so the calibrator sees all of them.
    quant_pre_process(str(in_path), str(prepared), skip_optimization=True,
                      skip_symbolic_shape=True)
    model = onnx.load(str(prepared))
    constants = {i.name for i in model.graph.initializer}
    weightless = [n.name for n in model.graph.node
                  if n.op_type == "MatMul" and not constants.intersection(n.input)]
    groups = _weight_matmul_groups(model, constants)
    input_names = {i.name for i in model.graph.input}
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    calibrate_seconds = 0.0

    def quantize(target: Path, float_groups: Sequence[str]) -> float:
        """Quantize with ``float_groups`` left in FP32; the output cosine vs FP32 on the
        calibration batches."""
        nonlocal calibrate_seconds
        reader = _TimedReader(calibration, input_names)

        class Reader(CalibrationDataReader):  # type: ignore[misc]  # the ABC the quantizer checks
            def get_next(self) -> dict[str, np.ndarray] | None:
                return reader.get_next()

        kept = [name for g in float_groups for name in groups[g]]
        quantize_static(
            str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ,
            per_channel=per_channel, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=methods[method],
            reduce_range=reduce_range,
            op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=weightless + kept,
        )
        if reader.first_read is not None and reader.last_read is not None:
            calibrate_seconds += reader.last_read - reader.first_read
        check_scales(target)
        return _output_cosine(reference, target, calibration)

    try:
        reference = _first_outputs(prepared, calibration)
        # Mixed precision, driven by measured error: a model with activation outliers (the
        # FFN output of MiniLM, for one) loses too much when every product is INT8.
        float_groups, score = _quantize_within(quantize, out_path, groups, min_cosine)
    finally:
        prepared.unlink(missing_ok=True)
    total = time.perf_counter() - started
    return {"quantization": "static-qdq", "calibration_method": method,
            "calibration_batches": len(calibration), "per_channel": per_channel,
            "activation_type": "QUInt8", "weight_type": "QInt8",
            "float_groups": float_groups, "calibration_cosine": round(score, 6),
            "stage_seconds": {"calibrate": round(calibrate_seconds, 3),
                              "quantize": round(total - calibrate_seconds, 3)}}


def _weight_matmul_groups(model: Any, constants: set[str]) -> dict[str, list[str]]:
    """Weight MatMuls grouped by role: their names with layer numbers blanked out
    (``/encoder/layer.#/output/dense/MatMul``); a nameless node is its own group."""
    groups: dict[str, list[str]] = {}
    for index, node in enumerate(model.graph.node):
        if node.op_type in ("MatMul", "Gemm") and constants.intersection(node.input):
            name = node.name or f"node{index}"
            groups.setdefault(re.sub(r"\d+", "#", name) if node.name else name, []).append(name)
    return groups


def _first_outputs(path: Path, batches: Sequence[Mapping[str, np.ndarray]]
                   ) -> list[np.ndarray]:
    """The first output of the model at ``path`` on each batch, in FP32."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return [np.asarray(session.run(None, {k: v for k, v in batch.items() if k in names})[0],
                       dtype=np.float32) for batch in batches]


def _output_cosine(reference: Sequence[np.ndarray], candidate_path: Path,
                   batches: Sequence[Mapping[str, np.ndarray]]) -> float:
    """Mean token cosine of the candidate's first output vs ``reference``, the FP32 model's
    on the same batches (computed once per build, not once per try)."""
    import numpy as np

    from pytest_xfperf.accuracy import compare, token_mask

    outputs = _first_outputs(candidate_path, batches)
    scores = [compare(out, ref, token_mask(batch.get("attention_mask"), out))["cosine"]
              for out, ref, batch in zip(outputs, reference, batches, strict=True)]
    return float(np.mean(scores))


def check_scales(path: Path) -> None:
    """A calibration that saw NaN/inf activations or a constant tensor yields scales that are
    not finite or are zero: the model would compute garbage, so stop here and say why."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    values = {i.name: i for i in model.graph.initializer}
    bad: list[str] = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 2:
            continue
        scale = values.get(node.input[1])
        if scale is None:
            continue
        array = numpy_helper.to_array(scale).astype(np.float64)
        if not np.all(np.isfinite(array)) or np.any(array <= 0):
            bad.append(f"{node.input[1]} = {array.ravel()[:4].tolist()}")
    if bad:
        raise CalibrationError(
            f"static quantization produced {len(bad)} invalid scale(s) (NaN, inf or zero), e.g. "
            f"{bad[0]}: the calibration inputs drove an activation to a non-finite or constant "
            "value. Check the model's outputs on its inputs, or use another calibration method "
            "(minmax, entropy, percentile)."
        )
