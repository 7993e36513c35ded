"""Quantized GPU precisions, attention selection and FLOP counting, checked on the CPU.

torch's INT8 and FP8 GEMMs (``torch._int_mm``, ``torch._scaled_mm``) also run on the CPU, so
the quantized layers are checked here for real; only the CUDA device checks are patched.
"""

import copy
import json

import pytest
import torch

from pytest_xfperf.backends import torch_cuda
from pytest_xfperf.backends.base import BackendUnavailable
from pytest_xfperf.backends.catalog import BACKENDS, speedup_reference
from pytest_xfperf.backends.quantized_linear import fp8_unsupported_reason, quantize_model
from pytest_xfperf.matrix import expand
from pytest_xfperf.measure.peak import arithmetic, count_flops
from pytest_xfperf.models.builtin import BUILTIN
from pytest_xfperf.values import Shape


def encoder_flops(layers: int, hidden: int, intermediate: int, seq: int) -> float:
    """By hand: per token and layer, Q, K, V and the output projection (4 h^2 multiply-adds)
    and the two feed-forward products (2 h i); per layer, QK^T and AV (2 s^2 h); the pooler
    (h^2, one token). Two FLOPs per multiply-add."""
    per_layer = seq * (4 * hidden**2 + 2 * hidden * intermediate) + 2 * seq**2 * hidden
    return 2.0 * (layers * per_layer + hidden**2)


@pytest.mark.parametrize("name,geometry", [
    ("bert-tiny", (2, 128, 512)),
    ("bert-base", (12, 768, 3072)),
])
def test_counted_flops_equal_the_hand_count(name, geometry):
    spec = BUILTIN[name](0)
    counted = count_flops(spec.build(), spec.make_inputs(1, 128, 0))
    assert counted == encoder_flops(*geometry, seq=128)
    if name == "bert-base":
        assert counted == pytest.approx(22.36e9, rel=1e-3)  # the 22.4 GFLOP of the issue


def test_onnx_runtimes_cuda_backends_measure_fp32_against_the_tf32_peak():
    """ORT's CUDA provider computes FP32 products in TF32 by default, its CUDA graph too: a
    generative prefill on ort-cuda-graph read 133 % of the FP32 peak before this."""
    from pytest_xfperf.backends.catalog import fp32_in_tf32

    assert fp32_in_tf32("ort-cuda") and fp32_in_tf32("ort-cuda-graph")
    assert not fp32_in_tf32("ort-cpu") and not fp32_in_tf32("torch-cuda-graph")
    assert arithmetic("fp32", "cuda", tf32=fp32_in_tf32("ort-cuda-graph")) == "tf32"


def test_quantized_arithmetic_follows_the_precision_and_the_device():
    assert arithmetic("int8-dynamic", "cuda") == "int8"
    assert arithmetic("fp8", "cuda") == "fp8"
    assert arithmetic("fp16", "cuda") == "fp16"
    assert arithmetic("fp16", "cpu") == "fp32"  # ORT's CPU provider computes FP16 in FP32
    assert arithmetic("int8-static", "cpu") == "int8"


@pytest.mark.parametrize("precision,min_cosine", [("int8-dynamic", 0.995), ("fp8", 0.99)])
def test_quantized_layers_replace_every_linear_and_stay_close(precision, min_cosine):
    spec = BUILTIN["bert-tiny"](0)
    model = spec.build()
    inputs = {k: torch.from_numpy(v) for k, v in spec.make_inputs(2, 64, 0).items()}
    with torch.inference_mode():
        reference = model(**inputs).last_hidden_state
    quantized = copy.deepcopy(model)
    done = quantize_model(quantized, precision)
    assert (done.replaced, done.kept) == (13, 0)  # 2 layers x 6, and the pooler
    assert done.method.startswith("builtin (torch.")
    layer = quantized.encoder.layer[0].attention.self.query
    assert layer.weight.dtype == (torch.int8 if precision == "int8-dynamic"
                                  else torch.float8_e4m3fn)
    with torch.inference_mode():
        out = quantized(**inputs).last_hidden_state
    keep = inputs["attention_mask"].bool()
    cosine = torch.nn.functional.cosine_similarity(out[keep], reference[keep], dim=-1)
    assert cosine.min().item() > min_cosine
    assert not torch.equal(out, reference)  # it did quantize


def _tiny_with_calibration():
    from pytest_xfperf.artifacts.pipeline import calibration_inputs

    spec = BUILTIN["bert-tiny"](0)
    calibration = [{k: torch.from_numpy(v) for k, v in batch.items()}
                   for batch in calibration_inputs(spec, Shape(4, 64), 0, 2)]
    return spec, spec.build(), calibration


def test_fp8_static_scales_are_the_calibrated_input_maxima():
    from pytest_xfperf.backends.quantized_linear import FP8_MAX, input_amax

    spec, model, calibration = _tiny_with_calibration()
    names = ["encoder.layer.0.attention.self.query", "encoder.layer.1.output.dense"]
    seen = input_amax(model, names, calibration)
    # By hand: the largest absolute input of each layer over both batches.
    expected = dict.fromkeys(names, 0.0)
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda m, args, out, n=n: expected.__setitem__(
            n, max(expected[n], args[0].abs().max().item()))) for n in names]
    with torch.inference_mode():
        for batch in calibration:
            model(**batch)
    for hook in hooks:
        hook.remove()
    assert seen == pytest.approx(expected) and min(seen.values()) > 0
    quantize_model(model, "fp8-static", calibration=calibration)
    query = model.encoder.layer[0].attention.self.query
    assert query.input_scale.item() == pytest.approx(expected[names[0]] / FP8_MAX, rel=1e-6)
    assert query.weight.dtype == torch.float8_e4m3fn and query.weight_scale.dim() == 0
    assert not query._forward_pre_hooks  # calibration hooks are gone


def test_fp8_static_stays_close_and_saturates_beyond_its_range():
    spec, model, calibration = _tiny_with_calibration()
    inputs = {k: torch.from_numpy(v) for k, v in spec.make_inputs(2, 64, 0).items()}
    with torch.inference_mode():
        reference = model(**inputs).last_hidden_state
    quantized = copy.deepcopy(model)
    done = quantize_model(quantized, "fp8-static", calibration=calibration)
    assert (done.replaced, done.kept) == (13, 0)
    assert "static per-tensor activation scales from 2 calibration batch(es)" in done.method
    with torch.inference_mode():
        out = quantized(**inputs).last_hidden_state
    keep = inputs["attention_mask"].bool()
    cosine = torch.nn.functional.cosine_similarity(out[keep], reference[keep], dim=-1)
    assert cosine.min().item() > 0.99 and not torch.equal(out, reference)
    layer = quantized.encoder.layer[0].attention.self.query
    far = torch.full((1, 128), 1e6 * layer.input_scale.item())  # far past the calibrated range
    with torch.inference_mode():
        saturated = layer(far)
        at_the_limit = layer(torch.full((1, 128), 448 * layer.input_scale.item()))
    assert torch.isfinite(saturated).all() and torch.allclose(saturated, at_the_limit)


def test_fp8_static_without_calibration_says_how_to_give_it():
    with pytest.raises(ValueError, match="calibration_batches"):
        quantize_model(torch.nn.Sequential(torch.nn.Linear(64, 64)), "fp8-static")


def test_fp8_static_runner_calibrates_on_the_cases_seeded_batches(monkeypatch):
    """The runner gets its batches from the session's factory: the case's sequence length,
    its batch capped at 8, seeded apart from the timed inputs. No GPU here: the CUDA checks
    are patched and the tensors stay on the CPU."""
    from pytest_xfperf.artifacts.pipeline import CALIBRATION_SEED_OFFSET, calibration_inputs

    spec = BUILTIN["bert-tiny"](0)
    batches = calibration_inputs(spec, Shape(32, 64), 7, 3)
    assert [b["input_ids"].shape for b in batches] == [(8, 64)] * 3
    assert (batches[0]["input_ids"] == spec.make_inputs(8, 64, 7 + CALIBRATION_SEED_OFFSET)[
        "input_ids"]).all()
    monkeypatch.setattr(torch_cuda, "require_cuda", lambda: None)
    monkeypatch.setattr(torch_cuda, "require_fp8_tensor_cores", lambda: None)
    monkeypatch.setattr(torch_cuda, "device_tensors",
                        lambda inputs: {k: torch.from_numpy(v) for k, v in inputs.items()})
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self.float())
    runner = torch_cuda.TorchCudaRunner(spec.build(), "fp8-static", "eager",
                                        calibration=lambda: batches)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "patched")
    assert "from 3 calibration batch(es)" in runner.settings()["quantizer"]
    assert speedup_reference("torch-compile", "fp8-static") == ("torch-cuda-graph", "fp16")
    assert arithmetic("fp8-static", "cuda") == "fp8"


def test_layers_the_gemm_cannot_take_stay_in_floating_point():
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 10))
    done = quantize_model(model, "fp8")
    assert (done.replaced, done.kept) == (1, 1)
    assert isinstance(model[1], torch.nn.Linear)
    with pytest.raises(ValueError, match="not a quantized GPU precision"):
        quantize_model(model, "fp16")


def test_fp8_needs_ada_or_hopper():
    assert fp8_unsupported_reason((9, 0), "NVIDIA H200") is None
    assert fp8_unsupported_reason((8, 9), "NVIDIA L4") is None
    reason = fp8_unsupported_reason((8, 0), "NVIDIA A100-SXM4-80GB")
    assert reason is not None and "8.9" in reason and "A100" in reason and "8.0" in reason


def test_fp8_on_an_older_gpu_is_a_skip_with_the_reason(monkeypatch):
    # No GPU here: the CUDA check and the device queries are patched.
    monkeypatch.setattr(torch_cuda, "require_cuda", lambda: None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100")
    with pytest.raises(BackendUnavailable, match="compute capability 8.9"):
        torch_cuda.TorchCudaRunner(torch.nn.Linear(16, 16), "fp8", "graph")


def test_attention_is_sdpa_unless_eager_is_asked():
    spec = BUILTIN["bert-tiny"](0)
    model = spec.build()
    assert model.config._attn_implementation == "eager"  # the export's form, on the CPU
    assert torch_cuda.set_attention(copy.deepcopy(model), "sdpa") == "sdpa"
    assert torch_cuda.set_attention(copy.deepcopy(model), "eager") == "eager"
    assert torch_cuda.set_attention(torch.nn.Linear(4, 4), "sdpa") == "model's own"
    info = BACKENDS["torch-cuda-graph"]
    assert info.parse_options({"attention": "eager"}, "t") == {"attention": "eager"}
    with pytest.raises(ValueError, match="attention"):
        info.parse_options({"attention": "flash"}, "t")


def test_quantizer_auto_takes_torchao_only_when_it_imports(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert torch_cuda.choose_quantizer("auto") == "builtin"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert torch_cuda.choose_quantizer("auto") == "torchao"
    assert torch_cuda.choose_quantizer("builtin") == "builtin"


def test_gpu_quantized_cases_are_measured_against_fp16_pytorch():
    assert speedup_reference("torch-cuda-graph", "int8-dynamic") == ("torch-cuda-graph", "fp16")
    assert speedup_reference("torch-compile", "fp8") == ("torch-cuda-graph", "fp16")
    assert speedup_reference("ort-cuda", "int8-static") == ("torch-cuda-graph", "fp16")
    assert speedup_reference("torch-cuda", "bf16") == ("torch-cuda-graph", "bf16")
    assert speedup_reference("ort-cpu", "int8-dynamic") == ("torch-cpu", "fp32")
    cases = expand([("m", "m")], ["torch-cuda-graph", "ort-cuda-graph"],
                   ["int8-dynamic", "fp8"], [Shape(1, 128)])
    reasons = {c.id: c.skip_reason for c in cases}
    assert reasons["m/torch-cuda-graph/fp8/b1s128"] is None
    assert "does not run fp8" in (reasons["m/ort-cuda-graph/fp8/b1s128"] or "")


def test_the_peak_is_measured_once_per_machine_and_a_damaged_file_is_measured_again(tmp_path):
    from pytest_xfperf.measure.peak import PeakCache

    path = tmp_path / "peaks.json"
    first, identity = PeakCache(path, "machine-a").get("cpu", "fp32", 1)
    assert first > 1e8 and identity.startswith("gemm2 fp32 best of 768,1152^3 onnxruntime ")
    stored = json.loads(path.read_text())
    assert stored == {"machine-a": {identity: first}}
    # A new session on the same machine reads it instead of measuring.
    assert PeakCache(path, "machine-a").get("cpu", "fp32", 1) == (first, identity)
    # Another machine's peaks live beside it; a damaged file is measured again and rewritten.
    PeakCache(path, "machine-b").get("cpu", "fp32", 1)
    assert set(json.loads(path.read_text())) == {"machine-a", "machine-b"}
    path.write_text("{not json")
    again, _ = PeakCache(path, "machine-a").get("cpu", "fp32", 1)
    assert again > 1e8 and set(json.loads(path.read_text())) == {"machine-a"}


def test_a_case_faster_than_its_peak_has_the_peak_measured_again_and_the_higher_kept(
        tmp_path, monkeypatch):
    """A peak measured while a shared host ran slow reads low (111 GFLOP/s against 216-229
    on a 2-core EPYC), and a case timed later then read 154 % of it. The peak is measured
    again once per session when a case beats it, and a lower reading never replaces it. The
    GEMM is replaced by a sequence of rates here: the host's states cannot be made on
    demand."""
    from pytest_xfperf.measure import peak

    rates = iter([100.0, 300.0, 50.0, 400.0])
    measured: list[float] = []

    def measure(device: str, kind: str, threads: int) -> float:
        measured.append(next(rates))
        return measured[-1]

    monkeypatch.setattr(peak, "measure_peak", measure)
    path = tmp_path / "peaks.json"
    cache = peak.PeakCache(path, "machine-a")
    assert cache.get("cpu", "fp32", 1)[0] == 100.0
    assert cache.get("cpu", "fp32", 1, achieved=90.0)[0] == 100.0  # below it: not measured
    assert cache.get("cpu", "fp32", 1, achieved=150.0)[0] == 300.0  # measured again, kept
    assert next(iter(json.loads(path.read_text())["machine-a"].values())) == 300.0
    # Once per session: a faster case later in it does not measure again.
    assert cache.get("cpu", "fp32", 1, achieved=350.0)[0] == 300.0
    assert measured == [100.0, 300.0]
    # A new session measures again when beaten, and keeps the stored peak if it reads lower.
    assert peak.PeakCache(path, "machine-a").get("cpu", "fp32", 1, achieved=350.0)[0] == 300.0
    assert measured == [100.0, 300.0, 50.0]
    assert next(iter(json.loads(path.read_text())["machine-a"].values())) == 300.0


def test_the_cpu_peak_is_the_fastest_of_its_sizes_each_timed_long_enough(monkeypatch):
    """One size can run slow on a CPU (a 1024^3 product read 141-204 GFLOP/s between processes
    on a 2-core EPYC, 768^3 and 1152^3 216-229), so the peak is the best over CPU_SIZES. Here
    each size is a sleep of known length, so the answer is known."""
    import time

    from pytest_xfperf.measure import peak

    seconds = {768: 0.004, 1152: 0.001}
    calls: dict[int, int] = {768: 0, 1152: 0}

    def product(kind: str, threads: int, n: int):
        def call() -> None:
            calls[n] += 1
            time.sleep(seconds[n])
        return call, (lambda: None), 1e9

    monkeypatch.setattr(peak, "_cpu_gemm", product)
    monkeypatch.setattr(peak, "CPU_MIN_SECONDS", 0.05)
    rate = peak.measure_peak("cpu", "fp32", 1)
    assert 0.5e12 < rate <= 1e12  # the 1 ms size, not the 4 ms one (0.25e12)
    # Each size ran until CPU_MIN_SECONDS had passed, not only REPEATS times.
    assert calls[1152] > peak.WARMUP + peak.REPEATS + 10
    assert calls[768] >= peak.WARMUP + peak.REPEATS


def test_the_session_hands_runners_the_cases_calibration_batches(tmp_path, monkeypatch):
    """What ``make_runner`` gives a backend's factory: the case's seeded batches at its
    sequence length (batch capped at 8), as many as ``calibration_batches``. The factory is
    replaced by one that keeps its context: no GPU here."""
    from dataclasses import replace

    from pytest_xfperf import session as session_module
    from pytest_xfperf.artifacts.pipeline import CALIBRATION_SEED_OFFSET
    from pytest_xfperf.matrix import Case
    from pytest_xfperf.models.registry import ModelRegistry
    from pytest_xfperf.settings import Settings

    contexts = []
    monkeypatch.setattr(session_module, "load_factory",
                        lambda info: lambda context: contexts.append(context) or object())
    base = Settings(history=tmp_path / "history.db")
    settings = replace(base, build=replace(base.build, calibration_batches=3), seed=5)
    session = session_module.XfperfSession(settings, ModelRegistry([], tmp_path, 5), tmp_path)
    spec = BUILTIN["bert-tiny"](5)
    session.make_runner(Case("bert-tiny", "torch-compile", "fp8-static", Shape(32, 64)), spec,
                        None)
    (context,) = contexts
    assert context.calibration is not None
    batches = context.calibration()
    assert [b["input_ids"].shape for b in batches] == [(8, 64)] * 3
    third = spec.make_inputs(8, 64, 5 + CALIBRATION_SEED_OFFSET + 2)
    assert (batches[2]["input_ids"] == third["input_ids"]).all()
