"""Post-training quantization with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def quantize_dynamic_int8(
    in_path: Path, out_path: Path, per_channel: bool = True
) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(in_path), str(out_path), per_channel=per_channel, weight_type=QuantType.QInt8,
        # Fused contrib ops (Attention, SkipLayerNormalization) declare no output type; without
        # a default the quantizer stops on them.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return {"quantization": "dynamic", "weight_type": "QInt8", "per_channel": per_channel}
