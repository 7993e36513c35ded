"""The noise-aware gate end to end: confirmation, stale baselines, per-metric tolerances."""

import json

import pytest

from .conftest import baseline_file, read_json

# Exactly 3 warm-up and 20 timed calls per measurement (no minimum time), so the number of
# calls in the first measurement is known.
EXACT = ["--xfperf-min-time", "0", "--xfperf-min-rounds", "20", "--xfperf-warmup-rounds", "3",
         "-p", "no:cacheprovider", "--xfperf-models", "transient", "--xfperf-report", "r.json"]
CASE = "transient/torch-cpu/fp32/b8s64"


def run(project, *args, slow_calls=0):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLOW_CALLS", str(slow_calls))
        return project.runpytest_subprocess("--xfperf", *EXACT, *args)


def decisions(project):
    (case,) = read_json(project.path / "r.json")["cases"]
    return case["baseline"]["timing_decisions"]


def test_a_transient_slowdown_is_re_measured_and_passes(project: pytest.Pytester):
    run(project, "--xfperf-update-baselines").assert_outcomes(passed=1)
    # Warm-up, the 20 timed calls and the accuracy call are slow (12x the work); the
    # confirmation is not. 50 % (p99: 990 %): a shared CI host drifts by tens of percent
    # between runs, and the first confirmation call after the switch can land in the tail of
    # 20 samples; this test is about the p50 decision.
    result = run(project, "--xfperf-tolerances", "p99=9.9", "--xfperf-tolerance", "50%",
                 slow_calls=24)
    result.assert_outcomes(passed=1)
    p50 = decisions(project)["p50_ms"]
    assert p50["first"]["ratio"] > 2 and p50["confirmation"]["ratio"] < 1.5
    assert p50["outcome"] == "pass"
    result.stdout.fnmatch_lines(["*a first measurement looked slower (+*%*the confirmation "
                                 "did not reproduce it*"])


def test_a_lasting_slowdown_fails_showing_both_measurements(project: pytest.Pytester):
    run(project, "--xfperf-update-baselines").assert_outcomes(passed=1)
    result = run(project, slow_calls=10_000)
    assert result.ret == 1
    result.stdout.fnmatch_lines([f"{CASE}: REGRESSED",
                                 # the first measurement may be anything on a loaded
                                 # host (it is re-measured whenever it cannot exclude a
                                 # slowdown); the confirmation is what fails the test
                                 "*regression: p50_ms baseline*q25 latency *"
                                 "; confirmation* +*(tolerance 10%)*"])
    assert decisions(project)["p50_ms"]["confirmation"]["ratio"] > 2


def test_stale_baseline_is_flagged_and_can_fail(project: pytest.Pytester):
    run(project, "--xfperf-update-baselines", slow_calls=10_000).assert_outcomes(passed=1)
    before = baseline_file(project).read_bytes()
    flagged = run(project)
    flagged.assert_outcomes(passed=1)
    flagged.stdout.fnmatch_lines(["transient b8s64:", "*torch-cpu/fp32*-*%*improved"])
    strict = run(project, "--xfperf-fail-on-improvement")
    assert strict.ret == 1
    strict.stdout.fnmatch_lines([f"{CASE}: STALE", "*the baseline is stale: record it again*"])
    assert baseline_file(project).read_bytes() == before


def test_per_metric_tolerances_from_the_marker(project: pytest.Pytester):
    project.makepyfile(test_perf='''
        import pytest

        @pytest.mark.xfperf(tolerances={"p50": 0.5, "throughput": "70%"})
        def test_inference(xfperf):
            xfperf.check()
    ''')
    run(project, "--xfperf-update-baselines").assert_outcomes(passed=1)
    slow = run(project, slow_calls=10_000)
    slow.assert_outcomes(failed=1)
    slow.stdout.fnmatch_lines(["*regression: p50_ms *(tolerance 50%)*",
                               "*regression: throughput *(tolerance 70%)*"])
    bad = project.runpytest_subprocess("--xfperf", *EXACT, "--xfperf-tolerances", "p50=abc")
    assert bad.ret == 4
    bad.stderr.fnmatch_lines(["*tolerance*abc*"])


def test_a_baseline_keeps_an_interleaved_record_that_confirmations_meet(
        project: pytest.Pytester):
    """Recording times each non-reference case in blocks alternating with PyTorch FP32; a
    later suspected regression is re-measured the same way and compared block ratio to block
    ratio. Six times the layers make the ONNX case's own time far slower, so its first
    measurement is always suspect and the path always runs (the reference, the same deeper
    model, slowed alike, so the normalized verdict itself is not the point here)."""
    matrix = ["--xfperf-models", "stack", "--xfperf-backends", "torch-cpu,ort-cpu",
              "--xfperf-min-time", "0", "--xfperf-min-rounds", "20", "-p", "no:cacheprovider",
              "--xfperf-report", "r.json"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STACK_DEPTH", "2")
        # A p50 tolerance finer than any real record's spread: the record warning shows.
        recorded = project.runpytest_subprocess("--xfperf", *matrix, "--xfperf-update-baselines",
                                                "--xfperf-tolerances", "p50=0.0001")
        recorded.assert_outcomes(passed=2)
        recorded.stdout.fnmatch_lines(["*stack/ort-cpu/fp32/b8s64: the interleaved record's "
                                       "balanced blocks disagree by *, more than the p50 "
                                       "tolerance*"])
        cases = read_json(baseline_file(project))["cases"]
        record = cases["stack/ort-cpu/fp32/b8s64"]["paired"]
        assert len(record["case_ms"]) == len(record["reference_ms"]) == 10  # PAIRED_BLOCKS
        assert all(len(block) >= 4 for block in record["case_ms"] + record["reference_ms"])
        assert "paired" not in cases["stack/torch-cpu/fp32/b8s64"]  # the reference has none
        patch.setenv("STACK_DEPTH", "12")
        result = project.runpytest_subprocess("--xfperf", *matrix)
    report = {c["backend"]: c for c in read_json(project.path / "r.json")["cases"]}
    assert result.ret == 1 and report["torch-cpu"]["verdict"] == "REGRESSED"  # 6x the work
    ort = report["ort-cpu"]
    p50 = ort["baseline"]["timing_decisions"]["p50_ms"]
    assert p50["confirmation"]["method"] == "blocks" and p50["confirmation"]["normalized"]
    assert 1 <= p50["confirm_rounds"] <= 3
    assert read_json(baseline_file(project))["cases"] == cases  # gating never writes


def test_a_torch_upgrade_since_the_baseline_drops_normalization(project: pytest.Pytester):
    """The reference backend is PyTorch: once its version differs from the baseline's, it no
    longer measures only the machine, so the ONNX case is compared on its own times."""
    matrix = ["--xfperf-models", "stack", "--xfperf-backends", "torch-cpu,ort-cpu",
              "--xfperf-min-time", "0", "--xfperf-min-rounds", "20", "-p", "no:cacheprovider",
              "--xfperf-tolerance", "150%", "--xfperf-report", "r.json"]
    project.runpytest_subprocess("--xfperf", *matrix, "--xfperf-update-baselines"
                                 ).assert_outcomes(passed=2)
    path = baseline_file(project)
    document = read_json(path)
    for entry in document["cases"].values():
        entry["versions"]["torch"] = "2.0.0"  # as if recorded before an upgrade
    path.write_text(json.dumps(document))
    result = project.runpytest_subprocess("--xfperf", *matrix)
    # Verdicts are not the point: unnormalized, a 0.25 ms toy timed for 20 calls may swing
    # past any tolerance on a loaded host.
    assert result.ret in (0, 1)
    result.stdout.fnmatch_lines(["*torch 2.0.0 -> * changed the reference backend since the "
                                 "baseline: timings are compared without normalization by it*"])
    ort = next(c for c in read_json(project.path / "r.json")["cases"]
               if c["backend"] == "ort-cpu")
    assert ort["baseline"]["timing_decisions"]["p50_ms"]["first"]["normalized"] is False
