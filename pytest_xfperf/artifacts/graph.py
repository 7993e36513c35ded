"""Facts read off an ONNX graph: operator histogram and quantization coverage."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

# Operators that carry a quantized matrix product with a weight, whichever quantizer made them.
INTEGER_MATMULS = {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                   "QLinearMatMul", "QAttention", "QGemm"}
# Float operators that multiply by a weight: a fused Attention holds the Q/K/V projection.
FLOAT_WEIGHT_MATMULS = {"MatMul", "Gemm", "Attention"}


def op_histogram(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def quantization_coverage(path: Path) -> dict[str, Any]:
    """Weight matrix products that run quantized, counted on the graph itself.

    A QDQ graph keeps its ``MatMul`` nodes and feeds them through ``DequantizeLinear``: such a
    MatMul counts as quantized. Activation-by-activation products (attention scores in an
    unfused graph) have no weight and are left out of the share, for every quantizer alike.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {i.name for i in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    producer = {out: node for node in graph.node for out in node.output}

    def is_weight(name: str) -> bool:
        node = producer.get(name)
        while node is not None and node.op_type in ("DequantizeLinear", "Transpose", "Cast"):
            if node.input[0] in constants:
                return True
            node = producer.get(node.input[0])
        return name in constants

    def is_dequantized(name: str) -> bool:
        node = producer.get(name)
        return node is not None and node.op_type == "DequantizeLinear"

    quantized = floating = 0
    for node in graph.node:
        if node.op_type in INTEGER_MATMULS:
            quantized += 1
        elif node.op_type in FLOAT_WEIGHT_MATMULS:
            weights = [n for n in node.input[1:3] if n and is_weight(n)]
            if not weights:
                continue  # activation x activation: not a weight product
            if node.op_type != "Attention" and all(is_dequantized(w) for w in weights[:1]):
                quantized += 1
            else:
                floating += 1
    ops = Counter(node.op_type for node in graph.node)
    total = quantized + floating
    return {"quantized_matmuls": quantized, "float_matmuls": floating,
            "quantized_share": round(quantized / total, 4) if total else 0.0,
            # Activations quantized at run time by a QuantizeLinear/DequantizeLinear pair.
            "qdq_pairs": ops.get("QuantizeLinear", 0)}
