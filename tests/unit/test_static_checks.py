"""The package stays lint-clean and mypy-strict-clean, TensorRT code included (via stubs)."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUBS_INSTALL = "pip install --no-deps tensorrt-stubs==10.13.0.35.1"


@pytest.mark.parametrize("tool,args", [
    ("ruff", ["check", "pytest_xfperf", "tests", "benchmarks"]),
    ("mypy", []),
])
def test_static_check(tool, args):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (pip install -e '.[test]')")
    out = subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _stub_dir() -> Path | None:
    """Where tensorrt-stubs put its .pyi files (a bare 'tensorrt' folder), if installed."""
    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder.parent if (folder / "tensorrt.pyi").is_file() else None


def _split_params(text: str) -> list[str]:
    params, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            params.append(current)
            current = ""
        else:
            current += char
    return [*params, current] if current.strip() else params


def _fix_defaults(line: str) -> str:
    """`def f(a: int = None, b: int)` is a syntax error: give later parameters `= ...`."""
    match = re.match(r"^(\s*def \w+\()(.*)(\) -> .*)$", line)
    if not match:
        return line
    params, seen_default = [], False
    for param in _split_params(match.group(2)):
        bare = param.strip()
        if "=" in bare:
            seen_default = True
        elif seen_default and bare and not bare.startswith("*"):
            param += " = ..."
        params.append(param)
    return match.group(1) + ",".join(params) + match.group(3)


def _patched_stubs(target: Path) -> Path:
    """A copy of the stubs mypy can parse. The published 10.13 stubs have three kinds of
    syntax or import errors, each repaired in the copy only: parameters named `in` (a Python
    keyword) become `in_`; a parameter without a default after defaulted ones gets `= ...`;
    the import of the runtime-only `tensorrt_libs` package is dropped."""
    site = _stub_dir()
    assert site is not None
    for package in ("tensorrt", "tensorrt_bindings"):
        for pyi in (site / package).glob("*.pyi"):
            text = re.sub(r"\bin: ", "in_: ", pyi.read_text(encoding="utf-8"))
            lines = [_fix_defaults(line) for line in text.splitlines()
                     if line.strip() != "import tensorrt_libs as tensorrt_libs"]
            out = target / package / pyi.name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def _mypy(path: Path, stubs: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict on ``path`` with the stub copy; the stubs' own flaws (they shadow `bool`,
    leave some functions unannotated) are not ours to report, so errors inside them are off."""
    config = stubs / "mypy.ini"
    config.write_text(
        "[mypy]\nstrict = True\nfollow_imports = silent\npython_version = 3.10\n"
        f"mypy_path = {stubs}\n"
        "[mypy-tensorrt.*]\nignore_errors = True\n[mypy-tensorrt]\nignore_errors = True\n"
        "[mypy-tensorrt_bindings.*]\nignore_errors = True\n"
        "[mypy-onnxruntime.*,transformers.*,pytest_benchmark.*,pynvml.*]\n"
        "ignore_missing_imports = True\n")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), str(path)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "MYPYPATH": ""})


def test_tensorrt_backend_type_checks_against_tensorrt_stubs(tmp_path: Path):
    if shutil.which("mypy") is None or _stub_dir() is None:
        pytest.skip(f"tensorrt-stubs is not installed ({STUBS_INSTALL}; .ci/run does it)")
    stubs = _patched_stubs(tmp_path / "stubs")
    out = _mypy(ROOT / "pytest_xfperf" / "backends" / "tensorrt.py", stubs)
    assert out.returncode == 0, out.stdout + out.stderr
    # The stubs are really in use: a wrong call into TensorRT is caught.
    wrong = tmp_path / "wrong.py"
    wrong.write_text("import tensorrt as trt\n\n"
                     "def f() -> None:\n    trt.Builder(1, 2, 3)\n")
    caught = _mypy(wrong, stubs)
    assert caught.returncode == 1 and "Builder" in caught.stdout, caught.stdout
