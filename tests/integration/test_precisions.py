"""FP16 and static INT8 (QDQ) artifacts, built for real on a 2-layer BERT and run on ORT."""

import numpy as np
import onnx
import pytest

from pytest_xfperf.accuracy import compare, token_mask
from pytest_xfperf.artifacts.cache import ArtifactCache
from pytest_xfperf.artifacts.pipeline import ArtifactPipeline, BuildOptions
from pytest_xfperf.artifacts.quantize import CalibrationError, check_scales, quantize_static_qdq
from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner, session_options
from pytest_xfperf.backends.pytorch import TorchCpuRunner
from pytest_xfperf.values import Shape


def _cosine(runner, tiny_spec, tiny_model, batch=2, seq=48):
    inputs = tiny_spec.make_inputs(batch, seq, 3)
    out = runner.run(inputs)
    ref = TorchCpuRunner(tiny_model).run(inputs)
    return compare(out, ref, token_mask(inputs["attention_mask"], out))["cosine"]


def test_fp16_keeps_fp32_io_and_the_fusions(pipeline, tiny_spec, tiny_model):
    artifact = pipeline.build(tiny_spec, "fp16", lambda: tiny_model)
    model = onnx.load(str(artifact.path))
    float16 = onnx.TensorProto.FLOAT16
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert sum(1 for i in model.graph.initializer if i.data_type == float16) > 10
    assert artifact.graph["fused"]["Attention"] == 2
    assert set(artifact.build_seconds) == {"export", "optimize", "fp16"}
    assert _cosine(OrtCpuRunner(artifact.path), tiny_spec, tiny_model) > 0.999


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_int8_static_is_qdq_on_every_weight_matmul(cache_dir, tiny_spec, tiny_model, method):
    pipeline = ArtifactPipeline(ArtifactCache(cache_dir), seed=0,
                                options=BuildOptions(calibration_method=method,
                                                     calibration_batches=4))
    artifact = pipeline.build(tiny_spec, "int8-static", lambda: tiny_model, Shape(2, 32))
    coverage = artifact.graph["quantization"]
    # 2 layers x (Q, K, V, attention output, two FFN) weight products, all behind Q/DQ.
    assert coverage["quantized_matmuls"] == 12 and coverage["float_matmuls"] == 0
    assert coverage["qdq_pairs"] > 0 and artifact.graph["ops"]["DequantizeLinear"] >= 12
    # Standard operators only: a TensorRT parser reads this file as it is.
    model = onnx.load(str(artifact.path))
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    assert set(artifact.build_seconds) == {"export", "calibrate", "quantize"}
    assert _cosine(OrtCpuRunner(artifact.path), tiny_spec, tiny_model) > 0.99


def test_int8_static_key_follows_calibration_settings(cache_dir, tiny_spec, tiny_model):
    def build(**options):
        pipeline = ArtifactPipeline(ArtifactCache(cache_dir), seed=0,
                                    options=BuildOptions(calibration_batches=2, **options))
        return pipeline.build(tiny_spec, "int8-static", lambda: tiny_model, Shape(1, 16)).path

    assert build() == build()
    assert build() != build(per_channel=False)
    assert build() != build(calibration_method="percentile")


def test_empty_calibration_set_is_a_clear_error(pipeline, tiny_spec, tiny_model, tmp_path):
    exported = pipeline.build(tiny_spec, "fp32", lambda: tiny_model).path
    with pytest.raises(CalibrationError, match="calibration set is empty"):
        quantize_static_qdq(exported, tmp_path / "q.onnx", [])
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        quantize_static_qdq(exported, tmp_path / "q.onnx", [{}], method="kl")


def test_non_finite_scales_are_refused(tmp_path):
    from onnx import helper, numpy_helper

    scale = numpy_helper.from_array(np.array([np.nan], dtype=np.float32), "x_scale")
    zero = numpy_helper.from_array(np.array([0], dtype=np.uint8), "x_zero")
    node = helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, [1])], [scale, zero])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(CalibrationError, match=r"invalid scale.*x_scale = \[nan\]"):
        check_scales(path)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-dynamic", "int8-static"])
def test_one_artifact_serves_the_matrix_shapes(pipeline, tiny_spec, tiny_model, precision):
    """Sequence 64-512 and batch 1-64 through one file, without re-export."""
    artifact = pipeline.build(tiny_spec, precision, lambda: tiny_model, Shape(1, 128))
    runner = OrtCpuRunner(artifact.path)
    for batch, seq in [(1, 64), (64, 128), (4, 256), (2, 512), (32, 64)]:
        out = runner.run(tiny_spec.make_inputs(batch, seq, 0))
        assert out.shape == (batch, seq, 128) and np.isfinite(out).all()
    if precision != "int8-static":  # only calibration depends on the case's shape
        again = pipeline.build(tiny_spec, precision, lambda: tiny_model, Shape(64, 512))
        assert again.path == artifact.path


def test_session_settings_are_applied_and_recorded(pipeline, tiny_spec, tiny_model):
    path = pipeline.build(tiny_spec, "fp32", lambda: tiny_model).path
    runner = OrtCpuRunner(path, {"intra_op_threads": 1, "execution_mode": "parallel",
                                 "graph_optimization_level": "basic", "inter_op_threads": 1})
    settings = runner.settings()
    assert settings["intra_op_threads"] == 1 and settings["execution_mode"] == "parallel"
    assert settings["graph_optimization_level"] == "basic"
    assert runner.run(tiny_spec.make_inputs(1, 16, 0)).shape == (1, 16, 128)


def test_ort_cpu_workers_stop_spinning_when_a_call_returns_unless_asked():
    """Spinning on after a call held a core through the yardstick's next block: off by
    default, recorded either way."""
    options, chosen = session_options({})
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert chosen["spin_between_calls"] is False
    options, chosen = session_options({"spin_between_calls": True})
    with pytest.raises(RuntimeError, match="force_spinning_stop"):
        options.get_session_config_entry("session.force_spinning_stop")
    assert chosen["spin_between_calls"] is True


def _outlier_spec(identity):
    """A model whose first product's input has one channel at 1e4: under a per-tensor U8
    activation scale every other channel is crushed, so INT8 loses that product's output."""
    import torch

    from pytest_xfperf import ModelSpec

    class Outlier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.embed = torch.nn.Embedding(100, 32)
            self.clean = torch.nn.Linear(32, 32)
            self.proj = torch.nn.Linear(32, 32)
            # Added after the lookup, so the embedding table (which dynamic INT8 also
            # quantizes) stays ordinary.
            self.register_buffer("outlier", torch.zeros(32))
            with torch.no_grad():
                self.outlier[0] = 1e4
                self.proj.weight[:, 0] = 0

        def forward(self, input_ids, attention_mask):
            return self.clean(self.proj(self.embed(input_ids) + self.outlier))

    def inputs(batch, seq, seed):
        rng = np.random.default_rng(seed)
        return {"input_ids": rng.integers(0, 100, (batch, seq), dtype=np.int64),
                "attention_mask": np.ones((batch, seq), dtype=np.int64)}

    return ModelSpec(name="outlier", build=lambda: Outlier().eval(), make_inputs=inputs,
                     identity=identity, family="")


@pytest.mark.parametrize("precision", ["int8-static", "int8-dynamic"])
def test_int8_leaves_an_outlier_product_in_fp32(cache_dir, precision):
    """The measured error sends the outlier's product back to FP32, and the fingerprint shows
    it. For int8-dynamic this is also what keeps MiniLM within its bar on a CPU without VNNI
    (docs/measurements.md, "INT8 on a CPU without VNNI")."""
    import torch

    spec = _outlier_spec(f"outlier-{precision}")
    pipeline = ArtifactPipeline(ArtifactCache(cache_dir), 0, BuildOptions(calibration_batches=2))
    artifact = pipeline.build(spec, precision, spec.build, Shape(2, 16))
    coverage = artifact.graph["quantization"]
    assert coverage == {**coverage, "quantized_matmuls": 1, "float_matmuls": 1}
    # Named, so that a drift in coverage against a baseline can say it was the accuracy bar.
    assert coverage["fp32_groups"] and coverage["calibration_cosine"] > 0.99
    inputs = spec.make_inputs(2, 16, 9)
    out = OrtCpuRunner(artifact.path).run(inputs)
    with torch.no_grad():
        ref = spec.build()(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    assert compare(out, ref.numpy(), np.ones((2, 16), bool))["cosine"] > 0.99


def test_int8_dynamic_key_follows_the_cpus_int8_kernels(cache_dir, tiny_spec, tiny_model,
                                                          monkeypatch):
    """Which products stay FP32 is measured with this CPU's kernels, so an artifact built on a
    CPU with VNNI is not reused on one without (a cache shared by a mixed runner pool)."""
    import pytest_xfperf.artifacts.pipeline as pipeline_module

    pipeline = ArtifactPipeline(ArtifactCache(cache_dir), 0)
    # Patched: one machine cannot be both CPUs; the real check reads /proc/cpuinfo's flags.
    monkeypatch.setattr(pipeline_module, "_cpu_has_vnni", lambda: True)
    with_vnni = pipeline.build(tiny_spec, "int8-dynamic", lambda: tiny_model, Shape(1, 16))
    monkeypatch.setattr(pipeline_module, "_cpu_has_vnni", lambda: False)
    without = pipeline.build(tiny_spec, "int8-dynamic", lambda: tiny_model, Shape(1, 16))
    assert with_vnni.path != without.path
    monkeypatch.setattr(pipeline_module, "_cpu_has_vnni", lambda: True)
    again = pipeline.build(tiny_spec, "int8-dynamic", lambda: tiny_model, Shape(1, 16))
    assert again.path == with_vnni.path
