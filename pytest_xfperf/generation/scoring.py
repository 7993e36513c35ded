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
    min_tokens: float  # mean share of greedy tokens FP32 would choose, up to the first error


# Near-ties are excused (``greedy_agreement``), so the token bar counts errors: every precision
# keeps to FP32's choices for 90 % of the tokens. Measured: FP16 on llama-small 1.000 at b1 and
# b32 on an H200; BF16 on llama-small and gpt2-small 1.000 at b1 and b32 there; INT8 on
# gpt2-small and llama-small 1.000 on an AVX2 CPU, where weights are 7-bit. The INT8 top-1 bar
# is 0.75: random-weight models have many near-flat prompt positions, and llama-small's INT8
# top-1 read 0.797 on that CPU with its tokens all FP32's (docs/generation.md). FP8 (e4m3, 3
# mantissa bits, per-row scales) moves prompt logits further: on llama-small on an H200 its
# cosine read 0.9888-0.9898 and top-1 0.680-0.758 (b1, b32; captured and compiled), while
# every greedy token stayed FP32's.
GENERATION_THRESHOLDS: Mapping[str, GenerationThresholds] = {
    "fp32": GenerationThresholds(min_cosine=0.9999, min_top1=0.99, min_tokens=0.9),
    "fp16": GenerationThresholds(min_cosine=0.999, min_top1=0.95, min_tokens=0.9),
    "bf16": GenerationThresholds(min_cosine=0.995, min_top1=0.9, min_tokens=0.9),
    "int8-dynamic": GenerationThresholds(min_cosine=0.99, min_top1=0.75, min_tokens=0.9),
    "fp8": GenerationThresholds(min_cosine=0.98, min_top1=0.6, min_tokens=0.9),
}


def token_agreement(tokens: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """(mean share of each row's tokens equal to the reference's up to the row's first
    divergence, the earliest position where any row diverges; its length if none does)."""
    if tokens.shape != reference.shape:
        raise ValueError(f"generated {tokens.shape} tokens, the reference {reference.shape}")
    return _share_and_first(tokens != reference)


def _share_and_first(wrong: np.ndarray) -> tuple[float, int]:
    """(mean share of each row's steps before its first wrong one, the earliest wrong step of
    any row; the length if none is wrong)."""
    import numpy as np

    rows, length = wrong.shape
    first = np.where(wrong.any(axis=1), wrong.argmax(axis=1), length)
    return float(first.mean() / length) if length else 1.0, int(first.min()) if rows else 0


def margin_resolution(logits: np.ndarray, reference: np.ndarray) -> float:
    """How far this precision moves a contest between two tokens, judged on the prompt: the
    largest change, over the prompt's positions, of the reference's margin between its two
    likeliest tokens. A greedy step whose choice FP32 ranks lower by no more than this is a
    near-tie the precision cannot resolve, not an error."""
    import numpy as np

    if logits.shape != reference.shape:
        raise ValueError(f"prompt logits {logits.shape} differ from the reference's "
                         f"{reference.shape}")
    ref = reference.reshape(-1, reference.shape[-1]).astype(np.float64)
    now = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    if not len(ref) or ref.shape[1] < 2:
        return 0.0
    top_two = np.argpartition(-ref, 1, axis=1)[:, :2]
    ref_margin = np.take_along_axis(ref, top_two, 1) @ np.array([1.0, -1.0])
    now_margin = np.take_along_axis(now, top_two, 1) @ np.array([1.0, -1.0])
    change = np.abs(now_margin - ref_margin)
    return float(change.max()) if np.isfinite(change).all() else float("inf")


@dataclass(frozen=True)
class TokenScore:
    """Greedy tokens judged step by step against what FP32 would choose after the same
    prefix."""

    agreement: float  # mean share of each row's steps up to its first error
    first_error: int  # earliest step of any row that is not FP32's choice nor a near-tie
    first_divergence: int  # earliest step of any row that differs from FP32's own tokens
    ties: int  # steps, before their row's first error, decided the other way on a near-tie


def greedy_agreement(tokens: np.ndarray, reference_tokens: np.ndarray, gaps: np.ndarray,
                     resolution: float) -> TokenScore:
    """Score greedy ``tokens`` with ``gaps``: at each step, FP32's top logit minus its logit
    for the token the case chose, FP32 being fed the case's own tokens so far (0 where the case
    chose FP32's top). A step with a gap above ``resolution`` is an error; up to the first
    error the generation agrees, near-ties included."""
    import numpy as np

    if gaps.shape != tokens.shape:
        raise ValueError(f"{gaps.shape} logit gaps for {tokens.shape} generated tokens")
    errors = ~(gaps <= resolution)  # a NaN gap is an error
    share, first_error = _share_and_first(errors)
    _, first_divergence = token_agreement(tokens, reference_tokens)
    before_error = np.cumsum(errors, axis=1) == 0
    ties = int(((gaps > 0) & before_error).sum())
    return TokenScore(share, first_error, first_divergence, ties)


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
                             "greedy tokens FP32 would choose")):
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
