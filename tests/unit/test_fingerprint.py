"""The graph fingerprint diff: losses fail with a readable line, gains and equal graphs pass."""

from pytest_xfperf.baselines.fingerprint import drift, graph_notes

FULL = {"fused": {"Attention": 12, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 24},
        "quantization": {"quantized_matmuls": 48, "float_matmuls": 0, "quantized_share": 1.0},
        "opset": 17, "ops": {"Attention": 12, "MatMul": 36},
        "built_with": {"onnxruntime": "1.31.0", "torch": "2.13.0"}}


def _with(**changes):
    graph = {**FULL, **changes}
    graph["built_with"] = {**FULL["built_with"], **changes.get("built_with", {})}
    return graph


def test_identical_graph_is_no_drift():
    assert drift(FULL, FULL) == []
    assert graph_notes(FULL, FULL) == []


def test_lost_attention_names_the_counts_and_the_version_change():
    now = _with(fused={"EmbedLayerNormalization": 1, "SkipLayerNormalization": 24},
                built_with={"onnxruntime": "1.32.0"})
    assert drift(FULL, now) == ["Attention 12 → 0 (onnxruntime 1.31.0 → 1.32.0)"]


def test_same_versions_point_at_the_export_or_model():
    now = _with(fused={**FULL["fused"], "SkipLayerNormalization": 20})
    (line,) = drift(FULL, now)
    assert line.startswith("SkipLayerNormalization 24 → 20") and "export settings" in line


def test_more_fusion_or_quantization_is_not_drift():
    now = _with(fused={**FULL["fused"], "BiasGelu": 12})
    assert drift(FULL, now) == []
    less = _with(quantization={"quantized_matmuls": 40, "float_matmuls": 8,
                               "quantized_share": 0.8333})
    assert drift(less, FULL) == []


def test_lower_coverage_and_new_fallbacks_fail():
    now = _with(quantization={"quantized_matmuls": 36, "float_matmuls": 12,
                              "quantized_share": 0.75})
    problems = drift(FULL, now)
    assert any(p.startswith("quantized MatMuls 48 → 36 (share 100% → 75%)") for p in problems)
    assert any(p.startswith("FP32 weight MatMuls 0 → 12") for p in problems)
    unquantized = {k: v for k, v in FULL.items() if k != "quantization"}
    assert drift(FULL, unquantized)[0].startswith("the graph is no longer quantized")


def test_baseline_without_builder_versions_uses_the_entry_versions():
    old = {k: v for k, v in FULL.items() if k != "built_with"}
    now = _with(fused={}, built_with={"onnxruntime": "1.32.0"})
    lines = drift(old, now, {"onnxruntime": "1.30.0"})
    assert "Attention 12 → 0 (onnxruntime 1.30.0 → 1.32.0)" in lines


def test_opset_and_new_operator_types_are_notes():
    now = _with(opset=18, ops={"Attention": 12, "MatMul": 36, "Softmax": 12})
    assert graph_notes(FULL, now) == ["opset 17 → 18", "new operator types: Softmax"]


def test_a_fallback_left_in_fp32_for_accuracy_says_so():
    """On a CPU whose INT8 kernels miss the cosine bar all-INT8, the recipe keeps a group of
    products in FP32: the drift names the group and what to do, not a model change."""
    now = _with(quantization={"quantized_matmuls": 36, "float_matmuls": 12,
                              "quantized_share": 0.75, "calibration_cosine": 0.993898,
                              "fp32_groups": "/model/encoder/layer.#/output/dense/MatMul"})
    problems = drift(FULL, now)
    assert len(problems) == 2
    for line in problems:
        assert "this build left /model/encoder/layer.#/output/dense/MatMul in FP32" in line
        assert "(cosine 0.99390)" in line and "--xfperf-update-baselines" in line
        assert "export settings" not in line
    recorded_none = _with(quantization={**FULL["quantization"], "fp32_groups": ""})
    assert "the baseline's left none" in drift(recorded_none, now)[0]
    same_fallback = _with(quantization={**now["quantization"], "quantized_matmuls": 30})
    assert "export settings" in drift(now, same_fallback)[0]  # not the recipe's doing
