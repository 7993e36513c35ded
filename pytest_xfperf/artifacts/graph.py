"""Facts read off an ONNX graph: operator histogram and quantization coverage."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

# Operators that carry a quantized matrix product, whichever quantizer produced them.
INTEGER_MATMULS = {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                   "QLinearMatMul", "QAttention", "QGemm"}
FLOAT_MATMULS = {"MatMul", "Gemm", "Attention"}


def op_histogram(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def quantization_coverage(histogram: dict[str, int]) -> dict[str, Any]:
    quantized = sum(n for op, n in histogram.items() if op in INTEGER_MATMULS)
    floating = sum(n for op, n in histogram.items() if op in FLOAT_MATMULS)
    total = quantized + floating
    return {"quantized_matmuls": quantized, "float_matmuls": floating,
            "quantized_share": round(quantized / total, 4) if total else 0.0}
