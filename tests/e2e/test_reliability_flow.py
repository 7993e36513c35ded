"""Reliability through pytest itself: xdist, per-case limits, refused and forced records."""

import json

import pytest

from .conftest import FAST, baseline_file, read_json

pytest.importorskip("xdist")


# Two workers on a 2-core host: the worker that is not timing still loads the cores (the
# device lock serializes timing, not the rest), so tails are wide; this test is about merging.
XDIST = ("--xfperf-tolerances", "p99=9.9")


def test_xdist_run_merges_into_one_report_and_one_baseline(project: pytest.Pytester):
    args = ("--xfperf", *FAST, *XDIST, "--xfperf-models", "stack,transient", "--xfperf-report",
            "r.json", "--xfperf-update-baselines")
    result = project.runpytest_subprocess("-n", "2", *args)
    result.assert_outcomes(passed=2)
    cases = read_json(baseline_file(project))["cases"]
    assert set(cases) == {"stack/torch-cpu/fp32/b8s64", "transient/torch-cpu/fp32/b8s64"}
    assert all(len(c["samples_ms"]) >= 20 for c in cases.values())  # timing ran on workers
    report = read_json(project.path / "r.json")
    assert {c["id"] for c in report["cases"]} == set(cases)
    result.stdout.fnmatch_lines(["*xfperf results*", "stack b8s64:*", "transient b8s64:*",
                                 "*2 xdist workers: cases were built in parallel but timed "
                                 "one at a time per device*"])
    # Gated against the merged baseline (accuracy and graph; timing is off here, since the
    # other worker's load makes 2-core tails meaningless).
    again = project.runpytest_subprocess("-n", "2", "--xfperf", *FAST,
                                         "--xfperf-models", "stack,transient",
                                         "--benchmark-disable")
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["stack b8s64:", "*torch-cpu/fp32*pass*"])


def test_timeout_fails_that_case_and_the_run_goes_on(project: pytest.Pytester):
    result = project.runpytest_subprocess(
        "--xfperf", *FAST, "--xfperf-models", "stack,transient", "--xfperf-timeout", "0.5",
        "--xfperf-min-time", "5", "--xfperf-max-time", "30")
    # Each case times for at least 5 s: both hit the 0.5 s limit, one after the other.
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*xfperf: stack/torch-cpu/fp32/b8s64 exceeded its timeout "
                                 "of 0.5 s (--xfperf-timeout)*"])
    assert "Traceback" not in result.stdout.str()


def test_memory_guard_fails_that_case_only(project: pytest.Pytester):
    project.makeconftest(project.path.joinpath("conftest.py").read_text() + '''
class Hog(torch.nn.Module):
    """Keeps every output: memory grows with each call."""
    def __init__(self):
        super().__init__()
        self.kept = []
    def forward(self, input_ids, attention_mask):
        out = torch.ones(input_ids.shape[0], input_ids.shape[1], 4096) * input_ids.unsqueeze(-1)
        self.kept.append(out)
        return out

_base_models = pytest_xfperf_models
def pytest_xfperf_models(config):
    return _base_models(config) + [ModelSpec(name="hog", build=lambda: Hog().eval(),
                                             make_inputs=inputs, identity="hog", family="")]
''')
    result = project.runpytest_subprocess(
        "--xfperf", *FAST, "--xfperf-models", "hog,stack", "--xfperf-max-memory-mb", "300",
        "--xfperf-min-time", "3")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*xfperf: hog/torch-cpu/fp32/b8s64 grew its memory by * MB, "
                                 "over the limit of 300 MB (--xfperf-max-memory-mb)*"])


def test_failed_accuracy_is_refused_unless_forced(project: pytest.Pytester):
    args = ("--xfperf", *FAST, "--xfperf-models", "outlier", "--xfperf-backends", "ort-cpu",
            "--xfperf-precisions", "int8-dynamic", "--xfperf-update-baselines")
    refused = project.runpytest_subprocess(*args)
    refused.assert_outcomes(failed=1)
    refused.stdout.fnmatch_lines(["*NOT recorded (failed their accuracy check, or no rate met "
                                  "the latency bound)*"])
    assert not (project.path / "baselines").exists() or not json.loads(
        baseline_file(project).read_text())["cases"]
    forced = project.runpytest_subprocess(*args, "--xfperf-force-record")
    forced.assert_outcomes(failed=1)
    entry = read_json(baseline_file(project))["cases"]["outlier/ort-cpu/int8-dynamic/b8s64"]
    assert entry["forced"] is True
