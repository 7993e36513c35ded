"""FP16 conversion of the fused graph, keeping FP32 inputs and outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def convert_fp16(in_path: Path, out_path: Path) -> dict[str, Any]:
    """Weights and activations in FP16; the graph's inputs and outputs stay as they were, so
    every backend is fed and compared exactly like the FP32 model. ORT's converter knows its
    fused contrib operators (Attention, SkipLayerNormalization) and keeps the operators that
    must stay FP32 (e.g. range-sensitive ones) in FP32 behind casts."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(in_path)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(out_path))
    return {"conversion": "fp16", "keep_io_types": True}
