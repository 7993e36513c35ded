"""The product's promise, end to end: record, pass, catch a slowdown, accept it, pass."""

import json

import pytest

from .conftest import FAST, baseline_file, read_json

CASE = "stack/torch-cpu/fp32/b8s64"


def run(project: pytest.Pytester, *args: str, depth: int = 2) -> pytest.RunResult:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STACK_DEPTH", str(depth))  # read by the conftest's model registration
        return project.runpytest_subprocess("--xfperf", *FAST, *args)


def test_record_pass_regress_update_pass(project: pytest.Pytester):
    recorded = run(project, "--xfperf-update-baselines")
    recorded.assert_outcomes(passed=1)
    path = baseline_file(project)
    entry = read_json(path)["cases"][CASE]
    assert entry["metrics"]["p50_ms"] > 0 and len(entry["samples_ms"]) >= 20
    assert entry["versions"]["torch"]

    same = run(project)
    same.assert_outcomes(passed=1)

    slower = run(project, depth=24)  # 12x the layers: far past the 150 % tolerance
    assert slower.ret == 1
    slower.assert_outcomes(failed=1)
    slower.stdout.fnmatch_lines([f"{CASE}: REGRESSED",
                                 "*p50 latency baseline * ms, now * ms: +*% [[]95% +*% .. +*%], "
                                 "* vs 12 blocks, own time*; +*normalized by the yardstick*"
                                 "(tolerance 150%)*",
                                 f"FAILED*test_inference[[]{CASE}[]]*"])
    assert "(the narrower: decides)" in slower.stdout.str()  # which view the verdict rests on
    assert read_json(path)["cases"][CASE] == entry  # a failing run never writes

    accepted = run(project, "--xfperf-update-baselines", depth=24)
    accepted.assert_outcomes(passed=1)
    assert read_json(path)["cases"][CASE]["metrics"]["p50_ms"] > entry["metrics"]["p50_ms"] * 3

    run(project, depth=24).assert_outcomes(passed=1)


def test_marker_tolerance_and_matrix_override(project: pytest.Pytester):
    project.makepyfile(test_perf='''
        import pytest

        @pytest.mark.xfperf(shapes=["2x16", "4x16"], tolerance="900%")
        def test_inference(xfperf):
            xfperf.check()
    ''')
    run(project, "--xfperf-update-baselines").assert_outcomes(passed=2)
    # With a 900 % tolerance the deeper model (about 3x slower) still passes.
    result = run(project, "-v", depth=6)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_inference[[]stack/torch-cpu/fp32/b2s16[]] PASSED*"])


def test_json_report_and_benchmark_json(project: pytest.Pytester):
    result = run(project, "--xfperf-report", "report.json", "--benchmark-json", "bench.json")
    result.assert_outcomes(passed=1)
    report = read_json(project.path / "report.json")
    (case,) = report["cases"]
    assert case["id"] == CASE and case["verdict"] == "no baseline"
    assert case["stats"]["rounds"] == len(case["samples_ms"]) >= 20
    assert report["machine"]["key"].startswith(("cpu-", "gpu-"))
    assert report["machine"]["isa"] == sorted(report["machine"]["isa"])
    bench = json.loads((project.path / "bench.json").read_text())
    (benchmark,) = bench["benchmarks"]
    assert benchmark["stats"]["rounds"] == case["stats"]["rounds"]
    assert benchmark["stats"]["median"] * 1000 == pytest.approx(case["stats"]["p50_ms"], rel=1e-6)
    assert benchmark["extra_info"]["xfperf_case"] == CASE


def test_benchmark_disable_runs_once_and_checks_accuracy(project: pytest.Pytester):
    result = run(project, "--benchmark-disable", "--xfperf-report", "r.json",
                 "--xfperf-backends", "torch-cpu,ort-cpu")
    result.assert_outcomes(passed=2)
    cases = {c["backend"]: c for c in read_json(project.path / "r.json")["cases"]}
    assert cases["ort-cpu"]["stats"] is None
    assert cases["ort-cpu"]["accuracy"]["cosine"] > 0.9999


def test_version_change_since_baseline_is_shown(project: pytest.Pytester):
    run(project, "--xfperf-update-baselines").assert_outcomes(passed=1)
    path = baseline_file(project)
    document = read_json(path)
    document["cases"][CASE]["versions"]["torch"] = "0.0.1"
    path.write_text(json.dumps(document))
    # About the note, not timing: a tiny model's p99 on a shared 2-core host can triple.
    result = run(project, "--xfperf-tolerances", "p99=9.9")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*library versions differ from the baseline's: *torch 0.0.1 -> *"])


def test_an_unstable_case_says_why_in_the_summary(project: pytest.Pytester):
    run(project, "--xfperf-update-baselines").assert_outcomes(passed=1)
    # Between-process spreads of 0.9 (the log's standard deviation) alone span more than the
    # 150 % tolerance, so no run can resolve it: the unchanged case must read `unstable`.
    wide = ["--xfperf-spreads", "wall_own=0.9,wall_normalized=0.9,wall_torch_own=0.9,"
                                "wall_torch_normalized=0.9"]
    quiet = run(project, *wide)
    quiet.assert_outcomes(passed=1)
    quiet.stdout.fnmatch_lines(["*fp32 * unstable",
                                "unstable: 1 case(s) whose interval reaches past a tolerance "
                                "line * -v prints each one's figures and what would resolve it."])
    assert "no number of blocks resolves" not in quiet.stdout.str()
    verbose = run(project, "-v", *wide)
    verbose.assert_outcomes(passed=1)
    verbose.stdout.fnmatch_lines([
        "unstable: 1 case(s) * Each one's figures, and what would resolve it:",
        f"  {CASE}: p50 latency baseline * (tolerance 150%); unresolved: how far this view's "
        "level moves between processes (the policy's spread* alone spans *% either side, so no "
        "number of blocks resolves 150%*"])


def test_recordings_pool_into_one_baseline_the_gate_reads(project: pytest.Pytester):
    pool = ("--xfperf-update-baselines", "--xfperf-pool-recordings", "2")
    first = run(project, *pool)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(
        [f"*pooled recordings (up to 2 processes): 1 process (no earlier recording): {CASE}*"])
    path = baseline_file(project)
    alone = read_json(path)["cases"][CASE]["timing"]
    assert "processes" not in alone and len(alone["case_ms"]) == 12

    second = run(project, *pool)
    second.stdout.fnmatch_lines([f"*pooled recordings (up to 2 processes): 2 processes: {CASE}*"])
    timing = read_json(path)["cases"][CASE]["timing"]
    assert len(timing["processes"]) == 2 and len(timing["case_ms"]) == 24
    assert timing["processes"][0] == {k: alone[k] for k in ("case_ms", "yardstick_ms")}

    gated = run(project, "--xfperf-report", "r.json")
    gated.assert_outcomes(passed=1)
    (case,) = read_json(project.path / "r.json")["cases"]
    assert case["baseline"]["decisions"]["p50_ms"]["views"][0]["baseline_blocks"] == 24

    # Another setup (here a changed library version in the file) starts the pool again.
    document = read_json(path)
    document["cases"][CASE]["versions"]["torch"] = "0.0.1"
    path.write_text(json.dumps(document))
    again = run(project, *pool)
    again.stdout.fnmatch_lines(["*: 1 process (its versions differ from the earlier "
                                f"recording's): {CASE}*"])
    assert "processes" not in read_json(path)["cases"][CASE]["timing"]
