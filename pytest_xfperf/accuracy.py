"""Accuracy of a case against the FP32 PyTorch reference on the same inputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Thresholds:
    min_cosine: float
    max_rel_l2: float
    min_retrieval: float = 0.95


# What a precision must keep of the reference. FP32 backends differ only by kernel order.
DEFAULT_THRESHOLDS: Mapping[str, Thresholds] = {
    "fp32": Thresholds(min_cosine=0.9999, max_rel_l2=0.01),
    "fp16": Thresholds(min_cosine=0.999, max_rel_l2=0.05),
    # BF16 keeps FP32's range with 8 bits of mantissa: about 8x FP16's rounding error.
    "bf16": Thresholds(min_cosine=0.999, max_rel_l2=0.08),
    "int8-dynamic": Thresholds(min_cosine=0.99, max_rel_l2=0.15),
    "int8-static": Thresholds(min_cosine=0.99, max_rel_l2=0.15),
    # FP8 e4m3 keeps 3 bits of mantissa with a per-row scale: coarser than INT8's steps near
    # a row's maximum, finer near zero; held to the INT8 bar.
    "fp8": Thresholds(min_cosine=0.99, max_rel_l2=0.15),
    # Static scales saturate inputs beyond the calibrated range: the same bar shows it.
    "fp8-static": Thresholds(min_cosine=0.99, max_rel_l2=0.15),
}


def token_mask(attention_mask: np.ndarray | None, output: np.ndarray) -> np.ndarray:
    """Positions to compare: real tokens only. Padded positions are undefined by design
    (fused attention kernels may leave them as anything) and would add noise, not signal."""
    import numpy as np

    if attention_mask is None or output.ndim != 3 or attention_mask.shape != output.shape[:2]:
        return np.ones(output.shape[: min(2, output.ndim)], dtype=bool)
    return np.asarray(attention_mask, dtype=bool)


def compare(output: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    import numpy as np

    if output.shape != reference.shape:
        raise ValueError(f"output shape {output.shape} differs from reference {reference.shape}")
    a = output[mask].astype(np.float64).ravel()
    b = reference[mask].astype(np.float64).ravel()
    if not (np.isfinite(a).all()):
        return {"cosine": float("nan"), "max_abs_err": float("inf"), "rel_l2": float("inf")}
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / norm) if norm > 0 else (1.0 if np.array_equal(a, b) else 0.0)
    ref_norm = np.linalg.norm(b)
    rel_l2 = float(np.linalg.norm(a - b) / ref_norm) if ref_norm > 0 else float(np.abs(a).max())
    return {"cosine": cosine, "max_abs_err": float(np.abs(a - b).max()), "rel_l2": rel_l2}


def mean_pooled(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Sentence embeddings as all-MiniLM computes them: masked mean, then L2 normalization."""
    import numpy as np

    weights = attention_mask[..., None].astype(np.float64)
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms: np.ndarray = np.linalg.norm(pooled, axis=1, keepdims=True)
    result: np.ndarray = pooled / np.maximum(norms, 1e-12)
    return result


# Paraphrases in the corpus make near-ties common: under FP32 itself 12 % of all-MiniLM's
# queries have a runner-up within 0.01 cosine of the best. A pick the reference scores that
# close to its own best is as good a retrieval, so it counts as agreement. The margin still
# separates quantizations: per-channel INT8 scores 0.996, per-tensor INT8 0.916.
TIE_MARGIN = 0.01


def retrieval_agreement(
    candidate: np.ndarray, reference: np.ndarray, tie_margin: float = TIE_MARGIN
) -> float:
    """Share of queries (every corpus sentence against all others) for which the candidate's
    nearest neighbour is, by the reference's similarities, within ``tie_margin`` of the
    reference's own nearest neighbour: what a semantic-search user would notice."""
    import numpy as np

    ref_sim = reference @ reference.T
    np.fill_diagonal(ref_sim, -np.inf)
    cand_sim = candidate @ candidate.T
    np.fill_diagonal(cand_sim, -np.inf)
    picks = cand_sim.argmax(axis=1)
    picked = ref_sim[np.arange(len(reference)), picks]
    return float((picked >= ref_sim.max(axis=1) - tie_margin).mean())


def violations(metrics: Mapping[str, float], thresholds: Thresholds) -> list[str]:
    import math

    problems = []
    cosine = metrics.get("cosine", float("nan"))
    if math.isnan(cosine) or cosine < thresholds.min_cosine:
        problems.append(f"cosine vs FP32 {cosine:.6f} < required {thresholds.min_cosine}")
    if metrics.get("rel_l2", 0.0) > thresholds.max_rel_l2:
        problems.append(
            f"relative L2 error {metrics['rel_l2']:.4g} > allowed {thresholds.max_rel_l2}"
        )
    if "retrieval" in metrics and metrics["retrieval"] < thresholds.min_retrieval:
        problems.append(
            f"retrieval agreement {metrics['retrieval']:.3f} < required {thresholds.min_retrieval}"
        )
    return problems
