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

# transformers model_type -> ORT optimizer model_type. The encoder-only families share the
# BERT fusions (ORT has no separate roberta/distilbert type). A Llama-style decoder takes the
# GPT-2 fusions, as ORT's own "qwen3" type does for that architecture: its RMS norms become
# SimplifiedLayerNormalization, and with the residual add before them
# SkipSimplifiedLayerNormalization (one plain norm, then one fused per norm after it).
OPTIMIZER_TYPES = {"bert": "bert", "roberta": "bert", "distilbert": "bert", "xlm-roberta": "bert",
                   "electra": "bert", "camembert": "bert", "vit": "vit", "gpt2": "gpt2",
                   "llama": "gpt2"}


def optimizer_key(family: str, use_gpu: bool) -> dict[str, Any]:
    """What an optimize stage's cache key adds for the fusions it applies: the optimizer's type
    and ``use_gpu``, only where the family has an optimizer. Without one the file is the
    export on either device, so the CPU and the GPU share one copy."""
    optimizer_type = OPTIMIZER_TYPES.get(family)
    if optimizer_type is None:
        return {}
    return {"optimizer": optimizer_type, **({"use_gpu": True} if use_gpu else {})}


def optimize_onnx(
    in_path: Path, out_path: Path, family: str, num_heads: int, hidden_size: int,
    use_gpu: bool = False,
) -> dict[str, Any]:
    optimizer_type = OPTIMIZER_TYPES.get(family)
    if optimizer_type is None:
        shutil.copyfile(in_path, out_path)
        note = ("fusions skipped: model family not set" if not family else
                f"fusions skipped: ONNX Runtime has no transformer optimizer for {family!r}")
        return {"fused": {}, "optimizer": note}
    from onnxruntime.transformers import optimizer

    optimized = optimizer.optimize_model(
        str(in_path), model_type=optimizer_type, num_heads=num_heads, hidden_size=hidden_size,
        opt_level=0, use_gpu=use_gpu,
    )
    stats = optimized.get_fused_operator_statistics()
    optimized.save_model_to_file(str(out_path))
    fused = {op: int(stats[op]) for op in FUSED_OPERATORS if stats.get(op)}
    return {"fused": fused, "optimizer": f"onnxruntime.transformers model_type={optimizer_type}"
            + (" use_gpu" if use_gpu else "")}
