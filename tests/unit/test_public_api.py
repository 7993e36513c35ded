import subprocess
import sys

import pytest_xfperf
from pytest_xfperf.baselines.machine import machine_info, machine_key, slug


def test_public_surface_is_pinned():
    assert pytest_xfperf.__all__ == sorted(pytest_xfperf.__all__)
    assert pytest_xfperf.__all__ == ["Case", "ModelSpec", "Result", "Runner", "Settings",
                                     "Shape", "Tolerances", "__version__"]


def test_loading_the_plugin_imports_no_heavy_library():
    code = ("import sys, pytest_xfperf.plugin, pytest_xfperf; "
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt', 'transformers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_machine_key_is_a_safe_slug_with_a_digest():
    assert slug("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz") == "intel-xeon-platinum-8380"
    assert slug("AMD EPYC") == "amd-epyc"
    info = machine_info()
    key = machine_key()
    assert key == info["key"]
    assert key.startswith("gpu-" if info.get("gpu_name") else "cpu-")  # GPU hosts name the GPU
    name, digest = key.rsplit("-", 1)
    assert len(digest) == 8 and int(digest, 16) >= 0 and name.endswith(f"-{info['cores']}c")
    assert all(ch.isalnum() or ch == "-" for ch in key)
