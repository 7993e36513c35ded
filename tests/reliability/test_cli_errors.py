"""Bad input through the command line: exit code 4, one clear line, no traceback."""

import textwrap

import pytest

pytest.importorskip("torch")

CASES = {
    "bad flag value": (["--xfperf-min-rounds", "zero"], "*min_rounds*"),
    "bad tolerances flag": (["--xfperf-tolerances", "p50=fast"], "*tolerance*fast*"),
    "bad exporter": (["--xfperf-exporter", "tflite"], "*exporter must be one of*"),
    "bad timeout": (["--xfperf-timeout", "-1"], "*timeout*"),
    "unknown precision": (["--xfperf-precisions", "int3"], "*unknown precision 'int3'*"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_command_line_is_a_usage_error(pytester: pytest.Pytester, name: str):
    pytester.makepyfile(test_perf="def test_x(xfperf):\n    xfperf.check()\n")
    args, message = CASES[name]
    result = pytester.runpytest_subprocess("--xfperf", "-p", "no:cacheprovider", *args)
    assert result.ret == 4
    output = result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in output


def test_bad_backend_table_in_pyproject_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makefile(".toml", pyproject=textwrap.dedent('''
        [tool.xfperf.ort-cpu]
        execution_mode = "turbo"
    '''))
    pytester.makepyfile(test_perf="def test_x(xfperf):\n    xfperf.check()\n")
    result = pytester.runpytest_subprocess("--xfperf", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*[[]tool.xfperf.ort-cpu[]].execution_mode: execution_mode "
                                 "must be one of sequential, parallel*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_model_hook_returning_a_bad_name_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makeconftest(textwrap.dedent('''
        from pytest_xfperf import ModelSpec

        def pytest_xfperf_models(config):
            return [ModelSpec(name="../../escape", build=lambda: None,
                              make_inputs=lambda b, s, r: {})]
    '''))
    pytester.makepyfile(test_perf="def test_x(xfperf):\n    xfperf.check()\n")
    result = pytester.runpytest_subprocess("--xfperf", "-p", "no:cacheprovider")
    assert result.ret != 0
    output = result.stdout.str() + result.stderr.str()
    assert "model name '../../escape' is not allowed" in output
