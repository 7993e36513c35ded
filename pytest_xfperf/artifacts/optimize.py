"""ONNX Runtime's transformer optimizer: the fusions whose loss is optimization drift."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

# Fused operators worth recording; zero counts are dropped from the fingerprint.
FUSED_OPERATORS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "Gelu",
                   "FastGelu", "BiasGelu", "GemmFastGelu", "LayerNormalization",
                   "SkipLayerNormalization", "SimplifiedLayerNormalization",
                   "SkipSimplifiedLayerNormalization")


def optimize_onnx(
    in_path: Path, out_path: Path, family: str, num_heads: int, hidden_size: int
) -> dict[str, Any]:
    if not family:
        shutil.copyfile(in_path, out_path)
        return {"fused": {}, "optimizer": "none (model family not set)"}
    from onnxruntime.transformers import optimizer

    optimized = optimizer.optimize_model(
        str(in_path), model_type=family, num_heads=num_heads, hidden_size=hidden_size,
        opt_level=0, use_gpu=False,
    )
    stats = optimized.get_fused_operator_statistics()
    optimized.save_model_to_file(str(out_path))
    fused = {op: int(stats[op]) for op in FUSED_OPERATORS if stats.get(op)}
    return {"fused": fused, "optimizer": f"onnxruntime.transformers model_type={family}"}
