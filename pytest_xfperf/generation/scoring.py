"""Accuracy of a generation against FP32 PyTorch's, and the size of its KV cache."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class GenerationThresholds:
    """What a precision must keep of FP32 PyTorch's generation."""

    min_cosine: float  # prompt logits, every position
    min_top1: float  # share of prompt positions whose most likely next token is the same
    min_tokens: float  # mean share of greedy tokens equal to FP32's up to the first divergence


# Random-weight models have small margins between their top logits, so a rounding change can
# flip a near-tie at any position; the bars leave room for that at the lower precisions and
# none at FP32 (a different kernel order only).
GENERATION_THRESHOLDS: Mapping[str, GenerationThresholds] = {
    "fp32": GenerationThresholds(min_cosine=0.9999, min_top1=0.99, min_tokens=0.9),
    "fp16": GenerationThresholds(min_cosine=0.999, min_top1=0.95, min_tokens=0.5),
    "bf16": GenerationThresholds(min_cosine=0.995, min_top1=0.9, min_tokens=0.25),
    "int8-dynamic": GenerationThresholds(min_cosine=0.99, min_top1=0.8, min_tokens=0.25),
}


def token_agreement(tokens: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """(mean share of each row's tokens equal to the reference's up to the row's first
    divergence, the earliest position where any row diverges; its length if none does)."""
    import numpy as np

    if tokens.shape != reference.shape:
        raise ValueError(f"generated {tokens.shape} tokens, the reference {reference.shape}")
    rows, length = reference.shape
    differs = tokens != reference
    first = np.where(differs.any(axis=1), differs.argmax(axis=1), length)
    return float(first.mean() / length) if length else 1.0, int(first.min()) if rows else 0


def logits_agreement(logits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Cosine of the prompt logits (all positions) and the share of positions whose argmax
    matches."""
    import numpy as np

    if logits.shape != reference.shape:
        raise ValueError(f"prompt logits {logits.shape} differ from the reference's "
                         f"{reference.shape}")
    a = logits.astype(np.float64).ravel()
    b = reference.astype(np.float64).ravel()
    if not np.isfinite(a).all():
        return {"cosine": float("nan"), "top1": 0.0}
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / norm) if norm > 0 else 0.0
    top1 = float((logits.argmax(-1) == reference.argmax(-1)).mean())
    return {"cosine": cosine, "top1": top1}


def violations(accuracy: Mapping[str, float], precision: str) -> list[str]:
    bars = GENERATION_THRESHOLDS.get(precision, GENERATION_THRESHOLDS["fp32"])
    problems = []
    for key, bar, label in (("cosine", bars.min_cosine, "prompt-logit cosine vs FP32"),
                            ("top1", bars.min_top1, "prompt top-1 agreement vs FP32"),
                            ("token_agreement", bars.min_tokens,
                             "greedy tokens equal to FP32's")):
        value = accuracy.get(key)
        if value is not None and not value >= bar:  # NaN fails too
            problems.append(f"{label} {value:.4f} < {bar}")
    return problems


def kv_geometry(config: Any) -> tuple[int, int, int]:
    """(layers, key/value heads, head size) of a transformers config."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layers = int(getattr(text, "num_hidden_layers", 0) or getattr(text, "n_layer", 0))
    heads = int(getattr(text, "num_attention_heads", 0) or getattr(text, "n_head", 0))
    kv_heads = int(getattr(text, "num_key_value_heads", 0) or heads)
    hidden = int(getattr(text, "hidden_size", 0) or getattr(text, "n_embd", 0))
    head_dim = int(getattr(text, "head_dim", 0) or (hidden // heads if heads else 0))
    return layers, kv_heads, head_dim


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, batch: int, positions: int,
                   element_bytes: int) -> int:
    """Keys and values of every layer for ``positions`` tokens of ``batch`` rows."""
    return 2 * layers * batch * kv_heads * positions * head_dim * element_bytes
