"""The package stays lint-clean and mypy-strict-clean, TensorRT code included (via stubs)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("tool,args", [
    ("ruff", ["check", "pytest_xfperf", "tests"]),
    ("mypy", []),
])
def test_static_check(tool, args):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (pip install -e '.[test]')")
    out = subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
