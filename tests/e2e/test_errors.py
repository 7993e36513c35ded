"""Bad input and broken cases: clear messages, right exit codes, nothing lost."""

import pytest

from .conftest import FAST


def test_plain_run_skips_and_imports_no_heavy_library(pytester: pytest.Pytester):
    pytester.makepyfile(test_perf="def test_inference(xfperf):\n    xfperf.check()\n",
                        test_other="def test_ok():\n    assert 1 + 1 == 2\n")
    pytester.makeconftest('''
def pytest_unconfigure(config):
    import sys
    heavy = [m for m in ("torch", "onnx", "onnxruntime", "tensorrt", "transformers")
             if m in sys.modules]
    open("imported.txt", "w").write(",".join(heavy) or "none")
''')
    result = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*perf test: run pytest with --xfperf*"])
    assert pytester.path.joinpath("imported.txt").read_text() == "none"


@pytest.mark.parametrize("args,message", [
    (["--xfperf-models", "stack,bert-huge"],
     "*unknown model 'bert-huge'; valid models: bert-base, bert-large, *, roberta-base, stack*"),
    (["--xfperf-backends", "ort-gpu"], "*unknown backend 'ort-gpu'; valid backends: *ort-cpu*"),
    (["--xfperf-precisions", "int4"], "*unknown precision 'int4'; valid precisions: *fp32*"),
    (["--xfperf-shapes", "1by128"], "*malformed shape '1by128': write BATCHxSEQ*"),
    (["--xfperf-tolerance", "-3"], "*tolerance '-3' is outside (0, 10)*"),
    (["--xfperf-pool-recordings", "9"], "*pool_recordings must be at most 5 *, got '9'*"),
])
def test_usage_errors_exit_4_and_list_valid_values(project: pytest.Pytester, args, message):
    result = project.runpytest_subprocess("--xfperf", "-p", "no:cacheprovider", *args)
    assert result.ret == 4
    result.stderr.fnmatch_lines([message])


def test_corrupt_baseline_is_reported_and_left_byte_identical(project: pytest.Pytester):
    run = project.runpytest_subprocess("--xfperf", *FAST, "--xfperf-update-baselines")
    run.assert_outcomes(passed=1)
    (path,) = (project.path / "baselines").glob("*.json")
    corrupt = path.read_bytes()[:-40]
    path.write_bytes(corrupt)
    for extra in ([], ["--xfperf-update-baselines"]):
        result = project.runpytest_subprocess("--xfperf", *FAST, *extra)
        assert result.ret == 4
        result.stderr.fnmatch_lines([f"*baseline file {path} is unusable: not valid JSON*"])
        assert path.read_bytes() == corrupt


def test_unmet_accuracy_fails_with_both_numbers(project: pytest.Pytester):
    result = project.runpytest_subprocess(
        "--xfperf", *FAST, "--xfperf-models", "outlier", "--xfperf-backends", "ort-cpu",
        "--xfperf-precisions", "fp32,int8-dynamic", "--xfperf-update-baselines")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*outlier/ort-cpu/int8-dynamic/b8s64: ACCURACY*",
        "*accuracy: cosine vs FP32 0.* < required 0.99*",
        "*NOT recorded (failed their accuracy check, or no rate met the latency bound): "
        "outlier/ort-cpu/int8-dynamic/b8s64*"])


def test_export_failure_errors_only_that_case(project: pytest.Pytester):
    result = project.runpytest_subprocess(
        "--xfperf", *FAST, "--xfperf-models", "unexportable,stack", "--xfperf-backends",
        "ort-cpu")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ONNX export of model 'unexportable' failed*"])


def test_missing_extra_is_a_skip_naming_it(project: pytest.Pytester, monkeypatch):
    # A None entry in sys.modules is how Python spells "not installed" for find_spec/import.
    project.makepyfile(sitecustomize="import sys\nsys.modules['onnxruntime'] = None\n")
    monkeypatch.setenv("PYTHONPATH", str(project.path))
    result = project.runpytest_subprocess("--xfperf", *FAST, "-rs", "--xfperf-backends",
                                          "torch-cpu,ort-cpu")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*ort-cpu needs onnxruntime: pip install 'pytest-xfperf[[]cpu[]]'*"])


def test_damaged_cache_entry_is_rebuilt_and_reported(project: pytest.Pytester):
    args = ["--xfperf", *FAST, "--xfperf-backends", "ort-cpu"]
    project.runpytest_subprocess(*args).assert_outcomes(passed=1)
    models = list((project.path / ".xfperf-cache").glob("*/*/model.onnx"))
    assert len(models) == 2  # the export and the (fusion-less) optimized copy
    for model in models:
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one byte flipped in the middle
        model.write_bytes(bytes(data))
    result = project.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*damaged cache entry moved aside and rebuilt: *sha256*"])
