"""Every builtin family reaches ORT's full fusion, on small configs of the same architecture.

The full-size counts (BERT-base/large, RoBERTa-base, DistilBERT-base, MiniLM-L6) are measured
by `python benchmarks/pipeline_figures.py fusions` and listed in docs/measurements.md.
"""

import pytest

from pytest_xfperf.artifacts.fusion import expected_fusions, fusion_warning
from pytest_xfperf.artifacts.pipeline import BuildOptions
from pytest_xfperf.models.hf import random_weights_spec

SMALL = {
    "bert": dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=2,
                 intermediate_size=128, vocab_size=1000),
    "roberta": dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=2,
                    intermediate_size=128, vocab_size=1000, max_position_embeddings=600,
                    type_vocab_size=1, pad_token_id=1),
    "distilbert": dict(dim=64, n_layers=3, n_heads=2, hidden_dim=128, vocab_size=1000,
                       max_position_embeddings=600),
}
FULL = {  # the counts ORT reaches for a 3-layer model of each family
    "bert": {"EmbedLayerNormalization": 1, "Attention": 3, "BiasGelu": 3,
             "SkipLayerNormalization": 6},
    "distilbert": {"EmbedLayerNormalization": 1, "Attention": 3, "BiasGelu": 3,
                   "SkipLayerNormalization": 6},
    "roberta": {"Attention": 3, "BiasGelu": 3, "SkipLayerNormalization": 6,
                "LayerNormalization": 1},
}


@pytest.mark.parametrize("family", sorted(SMALL))
def test_family_reaches_full_fusion(family, pipeline):
    spec = random_weights_spec(f"small-{family}", family, SMALL[family], 0, "test")
    artifact = pipeline.build(spec, "fp32", spec.build)
    assert artifact.graph["fused"] == FULL[family]
    assert expected_fusions(family, spec.num_layers) == FULL[family]
    assert fusion_warning(spec.name, family, spec.num_layers, artifact.graph["fused"]) is None
    int8 = pipeline.build(spec, "int8-dynamic", spec.build)
    assert int8.graph["quantization"]["float_matmuls"] == 0


def test_dynamo_export_loses_attention_and_the_warning_says_so(cache_dir, tiny_spec, tiny_model):
    from pytest_xfperf.artifacts.cache import ArtifactCache
    from pytest_xfperf.artifacts.pipeline import ArtifactPipeline

    pipeline = ArtifactPipeline(ArtifactCache(cache_dir), 0, BuildOptions(exporter="dynamo"))
    artifact = pipeline.build(tiny_spec, "fp32", lambda: tiny_model)
    fused = artifact.graph["fused"]
    assert "Attention" not in fused and "EmbedLayerNormalization" not in fused
    warning = fusion_warning("bert-tiny", "bert", 2, fused)
    assert warning is not None and "Attention 0/2" in warning


def test_unknown_family_is_a_warning_with_the_counts():
    warning = fusion_warning("mine", "t5", 4, {"LayerNormalization": 9})
    assert warning is not None and "no fusion expectations" in warning
    assert "LayerNormalization 9" in warning
