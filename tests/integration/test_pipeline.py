"""Real export -> optimize -> quantize on a 2-layer BERT, and the runners on its artifacts."""

import numpy as np
import onnx

from pytest_xfperf.accuracy import compare, token_mask
from pytest_xfperf.artifacts.cache import ArtifactCache
from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner
from pytest_xfperf.backends.pytorch import TorchCpuRunner

# ORT's full BERT fusion for a 2-layer model: per layer one Attention, one BiasGelu and two
# SkipLayerNormalization, plus one EmbedLayerNormalization.
TINY_BERT_FUSED = {"Attention": 2, "BiasGelu": 2, "EmbedLayerNormalization": 1,
                   "SkipLayerNormalization": 4}


def test_fp32_reaches_full_fusion_and_is_exact(pipeline, tiny_spec, tiny_model):
    artifact = pipeline.build(tiny_spec, "fp32", lambda: tiny_model)
    onnx.checker.check_model(str(artifact.path))
    assert artifact.graph["fused"] == TINY_BERT_FUSED
    assert artifact.graph["opset"] == 17
    inputs = tiny_spec.make_inputs(2, 32, 0)
    ref = TorchCpuRunner(tiny_model).run(inputs)
    out = OrtCpuRunner(artifact.path).run(inputs)
    metrics = compare(out, ref, token_mask(inputs["attention_mask"], out))
    assert metrics["cosine"] > 0.99999 and metrics["max_abs_err"] < 1e-3


def test_int8_dynamic_quantizes_every_matmul(pipeline, tiny_spec, tiny_model):
    artifact = pipeline.build(tiny_spec, "int8-dynamic", lambda: tiny_model)
    coverage = artifact.graph["quantization"]
    assert coverage["float_matmuls"] == 0 and coverage["quantized_matmuls"] >= 8
    assert artifact.graph["ops"].get("QAttention") == 2
    inputs = tiny_spec.make_inputs(1, 64, 0)
    ref = TorchCpuRunner(tiny_model).run(inputs)
    out = OrtCpuRunner(artifact.path).run(inputs)
    assert compare(out, ref, token_mask(inputs["attention_mask"], out))["cosine"] > 0.99


def test_one_export_serves_every_shape(pipeline, tiny_spec, tiny_model):
    runner = OrtCpuRunner(pipeline.build(tiny_spec, "fp32", lambda: tiny_model).path)
    for batch, seq in [(1, 8), (3, 40), (16, 128), (2, 256)]:
        inputs = tiny_spec.make_inputs(batch, seq, 0)
        assert runner.run(inputs).shape == (batch, seq, 128)
        assert inputs["attention_mask"][:, -1].sum() == 0  # every row carries padding


def test_second_build_is_a_cache_hit_without_the_model(cache_dir, tiny_spec, tiny_model):
    pipeline = ArtifactPipeline(ArtifactCache(cache_dir), seed=0)
    pipeline.build(tiny_spec, "int8-dynamic", lambda: tiny_model)
    fresh = ArtifactPipeline(ArtifactCache(cache_dir), seed=0)

    def no_model():
        raise AssertionError("a cached artifact must not need the torch model")

    artifact = fresh.build(tiny_spec, "int8-dynamic", no_model)
    assert artifact.built_now == []
    assert pipeline.build(tiny_spec, "fp32", lambda: tiny_model).built_now == []
    assert set(artifact.build_seconds) == {"export", "optimize", "quantize"}


def test_inputs_are_deterministic(tiny_spec):
    a, b = tiny_spec.make_inputs(4, 32, 7), tiny_spec.make_inputs(4, 32, 7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["input_ids"], tiny_spec.make_inputs(4, 32, 8)["input_ids"])


def test_builtin_specs_give_the_optimizer_their_geometry():
    """Heads and hidden size of 0 make ORT's optimizer miss Attention: never ship that."""
    from pytest_xfperf.models.builtin import BUILTIN

    for name in BUILTIN:
        if name == "minilm-l6":
            continue  # read from its config.json (covered in test_models)
        spec = BUILTIN[name](0)
        assert spec.num_heads > 0 and spec.hidden_size > 0 and spec.num_layers > 0, name
