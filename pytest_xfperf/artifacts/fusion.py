"""What ONNX Runtime's transformer optimizer should fuse, per model family.

Counts scale with depth, so the table holds the fused operators a family must show and how
many of each one encoder layer contributes. RoBERTa has no EmbedLayerNormalization: ORT's
matcher for RoBERTa's position-id pattern is disabled in its source (fusion_embedlayer.py), so
the embedding LayerNormalization stays unfused for every RoBERTa model, by ORT's design.
"""

from __future__ import annotations

from collections.abc import Mapping

# family -> fused operator -> (per encoder layer, fixed per model)
EXPECTED_FUSIONS: dict[str, dict[str, tuple[int, int]]] = {
    "bert": {"EmbedLayerNormalization": (0, 1), "Attention": (1, 0), "BiasGelu": (1, 0),
             "SkipLayerNormalization": (2, 0)},
    "distilbert": {"EmbedLayerNormalization": (0, 1), "Attention": (1, 0), "BiasGelu": (1, 0),
                   "SkipLayerNormalization": (2, 0)},
    "roberta": {"Attention": (1, 0), "BiasGelu": (1, 0), "SkipLayerNormalization": (2, 0),
                "LayerNormalization": (0, 1)},
}


def expected_fusions(family: str, layers: int) -> dict[str, int] | None:
    """The full fusion of a ``layers``-deep encoder of ``family``; None for an unknown family."""
    table = EXPECTED_FUSIONS.get(family)
    if table is None:
        return None
    return {op: per_layer * layers + fixed for op, (per_layer, fixed) in table.items()}


def fusion_warning(model: str, family: str, layers: int, fused: Mapping[str, int]) -> str | None:
    """A report line when an optimized graph falls short of its family's full fusion."""
    got = ", ".join(f"{op} {n}" for op, n in sorted(fused.items())) or "nothing fused"
    expected = expected_fusions(family, layers) if layers > 0 else None
    if expected is None:
        return (f"{model}: no fusion expectations for family {family or '(none)'!r} "
                f"(fused: {got}); the drift gate still compares these counts with the baseline")
    missing = [f"{op} {fused.get(op, 0)}/{n}" for op, n in expected.items()
               if fused.get(op, 0) < n and op != "LayerNormalization"]
    if missing:
        return (f"{model}: incomplete {family} fusion ({', '.join(missing)}; fused: {got}); "
                "the TorchScript export of the eager attention is the form ORT fuses")
    return None
