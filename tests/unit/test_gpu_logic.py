"""GPU code that CI can check without a GPU: shapes, keys, fingerprints, report modes, skips.

CUDA is absent here; where a test needs a path behind the CUDA check, it patches that check
(``require_cuda``) and says so. TensorRT code is never executed here (see backends/tensorrt.py).
"""

import pytest

from pytest_xfperf.backends import tensorrt as trt_backend
from pytest_xfperf.backends.base import BackendUnavailable
from pytest_xfperf.backends.catalog import BACKENDS
from pytest_xfperf.measure import gpu
from pytest_xfperf.values import Shape


def test_profile_spans_the_matrix():
    shapes = [Shape(1, 128), Shape(32, 128), Shape(8, 512), Shape(4, 64)]
    assert trt_backend.profile_shapes(shapes) == {
        "min": (1, 64), "opt": (32, 128), "max": (32, 512)}
    assert trt_backend.profile_shapes([Shape(1, 128)]) == {
        "min": (1, 128), "opt": (1, 128), "max": (1, 128)}
    with pytest.raises(ValueError, match="no shapes"):
        trt_backend.profile_shapes([])


@pytest.mark.parametrize("version,precision,variant,typed", [
    ("10.13.0", "fp16", "fp32", False),      # TRT 10: FP32 ONNX + the FP16 builder flag
    ("10.13.0", "int8-static", "int8-static", False),
    ("11.0.1", "fp16", "fp16", True),        # TRT 11: strongly typed, the FP16 ONNX itself
    ("11.0.1", "int8-static", "int8-static", True),
    ("11.0.1", "fp32", "fp32", True),
])
def test_version_switch(version, precision, variant, typed):
    assert trt_backend.onnx_variant(version, precision) == variant
    assert trt_backend.strongly_typed(version) is typed


def test_unreadable_version_is_an_error():
    with pytest.raises(ValueError, match="unreadable TensorRT version"):
        trt_backend.major_version("trt")


def test_engine_key_covers_what_the_engine_depends_on():
    profile = {"min": (1, 64), "opt": (8, 128), "max": (32, 512)}
    base = trt_backend.engine_cache_parts("onnxkey", "10.13.0", "NVIDIA H100 80GB HBM3",
                                          "fp16", profile)
    for changed in (dict(onnx_key="other"), dict(version="11.0.0"),
                    dict(gpu_name="NVIDIA A100"), dict(precision="int8-static"),
                    dict(profile={**profile, "max": (64, 512)})):
        args = {"onnx_key": "onnxkey", "version": "10.13.0",
                "gpu_name": "NVIDIA H100 80GB HBM3", "precision": "fp16", "profile": profile,
                **changed}
        assert trt_backend.engine_cache_parts(**args) != base, changed


def test_proc_information_and_throttle_parsing():
    text = "Model: \t NVIDIA H100 80GB HBM3\nIRQ:   123\nBus Location: 0000:18:00.0\n"
    info = gpu.parse_proc_information(text)
    assert info["model"] == "NVIDIA H100 80GB HBM3" and info["bus_location"] == "0000:18:00.0"
    assert gpu.throttle_names(0x1) == []  # idle only
    assert gpu.throttle_names(0x4 | 0x40) == ["software power cap", "hardware thermal slowdown"]
    warnings = gpu.gpu_warnings({"name": "H100", "throttle_reasons": ["software power cap"],
                                 "sm_clock_mhz": 345, "sm_clock_max_mhz": 1980})
    assert len(warnings) == 2 and "throttled" in warnings[0] and "345 MHz" in warnings[1]
    assert gpu.gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_gpu_machine_key_names_the_card(monkeypatch):
    from pytest_xfperf.baselines import machine

    monkeypatch.setattr(gpu, "gpu_names_without_cuda", lambda: ["NVIDIA H100 80GB HBM3"])
    machine.machine_info.cache_clear()
    try:
        key = machine.machine_key()
    finally:
        machine.machine_info.cache_clear()
    assert key.startswith("gpu-nvidia-h100-80gb-hbm3-x1-cpu-")


def test_backend_table_has_gpu_variants_and_extras():
    assert BACKENDS["torch-cuda-graph"].precisions == ("fp32", "fp16", "bf16", "int8-dynamic",
                                                       "fp8", "fp8-static")
    assert BACKENDS["ort-cuda"].onnx_target == "gpu"
    assert BACKENDS["tensorrt"].onnx_target == "portable"
    assert BACKENDS["tensorrt"].extra == "tensorrt" and BACKENDS["ort-cuda"].extra == "gpu"


def test_without_cuda_gpu_cases_skip_with_the_reason():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from pytest_xfperf.backends.torch_cuda import require_cuda

    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        require_cuda()


def test_onnxruntime_without_cuda_provider_names_the_extra(monkeypatch, tmp_path):
    """CUDA is patched in (it is absent here): the provider check itself is real."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    from pytest_xfperf.backends import onnxruntime_cuda

    monkeypatch.setattr(onnxruntime_cuda, "require_cuda", lambda: None)
    monkeypatch.setattr("torch.cuda.current_stream", lambda: None)
    with pytest.raises(BackendUnavailable, match=r"no CUDA execution provider: pip install "
                                                 r"'pytest-xfperf\[gpu\]'"):
        onnxruntime_cuda.OrtCudaRunner(tmp_path / "m.onnx", "fp16")


def test_tensorrt_missing_names_the_extra():
    from pytest_xfperf.session import XfperfSession

    with pytest.raises(BackendUnavailable, match=r"pip install 'pytest-xfperf\[tensorrt\]'"):
        XfperfSession.check_backend("tensorrt")


def test_provider_options_are_strings_and_pin_the_stream():
    name, options = __import__(
        "pytest_xfperf.backends.onnxruntime_cuda", fromlist=["x"]).provider_options(
        "CUDAExecutionProvider", True, 1234, "fp16")
    assert name == "CUDAExecutionProvider" and options["enable_cuda_graph"] == "1"
    assert options["user_compute_stream"] == "1234"
    assert all(isinstance(v, str) for v in options.values())


def test_user_provider_options_pass_through_but_not_over_the_plugins_own():
    from pytest_xfperf.backends.onnxruntime_cuda import provider_options

    parsed = BACKENDS["ort-cuda"].parse_options(
        {"provider_options": {"sdpa_kernel": 1, "enable_skip_layer_norm_strict_mode": False}},
        "pyproject.toml [tool.xfperf.ort-cuda]")
    extra = parsed["provider_options"]
    assert extra == {"sdpa_kernel": "1", "enable_skip_layer_norm_strict_mode": "0"}
    _, options = provider_options("CUDAExecutionProvider", False, 7, "fp16", extra=extra)
    assert options["sdpa_kernel"] == "1" and options["user_compute_stream"] == "7"
    for bad, words in (({"enable_cuda_graph": "1"}, "may not set enable_cuda_graph"),
                       ({"sdpa_kernel": [1]}, "provider_options.sdpa_kernel must be"),
                       ("sdpa_kernel=1", "must be a table")):
        with pytest.raises(ValueError, match=words):
            BACKENDS["ort-cuda"].parse_options({"provider_options": bad}, "pyproject.toml")


def test_encoder_and_generator_sessions_take_the_same_cuda_tuning_options():
    # The ORT CUDA generator (generation/generators.py) builds its provider options from
    # cuda_tuning as the encoder runner does; CUDA cannot run here, so the options are
    # checked as data.
    from pytest_xfperf.backends.onnxruntime_cuda import cuda_tuning, provider_options

    assert cuda_tuning(False) == {}
    tuned = cuda_tuning(True, {"sdpa_kernel": "8"})
    assert tuned == {"tunable_op_enable": "1", "tunable_op_tuning_enable": "1",
                     "sdpa_kernel": "8"}
    _, options = provider_options("CUDAExecutionProvider", False, 7, "fp16", True,
                                  {"sdpa_kernel": "8"})
    assert tuned.items() <= options.items()
    assert cuda_tuning(True, {"tunable_op_tuning_enable": "0"})["tunable_op_tuning_enable"] == "0"


def test_a_paused_gpu_memory_window_leaves_out_what_ran_meanwhile(monkeypatch):
    """CUDA cannot run here: torch.cuda's allocator statistics are stood in for (a mock) by
    a counter with the same semantics (the peak restarts at what is allocated on reset)."""
    torch = pytest.importorskip("torch")
    allocator = {"now": 0.0, "peak": 0.0}

    def allocate(mb: float) -> None:
        allocator["now"] += mb
        allocator["peak"] = max(allocator["peak"], allocator["now"])

    def reset() -> None:
        allocator["peak"] = allocator["now"]

    mib = 2**20
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: allocator["now"] * mib)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: allocator["peak"] * mib)
    window = gpu.GpuMemory("torch")
    window.start()
    allocate(300)  # the case's model and activations
    allocate(-20)
    window.pause()
    allocate(100)  # the reference's extension: another model's yardstick, then freed
    allocate(-100)
    window.resume()
    allocate(10)
    window.stop()
    assert window.peak_mb == 300
