"""Serving scenarios end to end: a short server search and an offline run on bert-tiny, their
baselines and gate, and an impossible bound that must end fast with a clear message."""

import time

import pytest

from .conftest import baseline_file, read_json

SERVING = ["--xfperf-models", "bert-tiny", "--xfperf-backends", "ort-cpu",
           "--xfperf-precisions", "int8-dynamic", "--xfperf-shapes", "8x64",
           "--xfperf-scenarios", "offline,server", "--xfperf-serving-requests", "200",
           "--xfperf-server-trial", "0.5", "--xfperf-server-budget", "15",
           "-p", "no:cacheprovider"]
OFFLINE = "bert-tiny/ort-cpu/int8-dynamic/b8s64/offline"
SERVER = "bert-tiny/ort-cpu/int8-dynamic/b8s64/server"


@pytest.fixture
def serving_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_perf="def test_inference(xfperf):\n    xfperf.check()\n")
    return pytester


def test_offline_and_server_record_then_gate(serving_project: pytest.Pytester):
    report = serving_project.path / "report.json"
    recorded = serving_project.runpytest_subprocess(
        "--xfperf", *SERVING, "--xfperf-update-baselines", "--xfperf-report", str(report), "-v")
    recorded.assert_outcomes(passed=2)
    recorded.stdout.fnmatch_lines([
        "*xfperf: bert-tiny/ort-cpu/int8-dynamic/b8s64/offline: offline pass 1/3*",
        "*server trial 1: * req/s, * requests*",
        "bert-tiny b8s64 offline:", "*req/s*tokens/s*padding*",
        "bert-tiny b8s64 server:",
    ])
    cases = {c["id"]: c for c in read_json(report)["cases"]}
    offline, server = cases[OFFLINE], cases[SERVER]
    assert offline["serving_metrics"]["throughput"] > 0
    assert offline["serving_metrics"]["tokens_per_s"] > offline["serving_metrics"]["throughput"]
    details = offline["serving"]["offline"]
    assert details["completed"] == 200 and 0 < details["padding_share"] < 0.5
    assert sum(int(k) * v for k, v in details["batch_sizes"].items()) == 200
    # unbatched outputs match the same requests run alone, unpadded
    assert offline["accuracy"]["cosine"] > 0.99
    search = server["serving"]["server"]
    assert server["serving_metrics"]["max_rate"] == pytest.approx(search["max_rate"], abs=1e-3)
    assert search["max_rate"] > 0
    assert search["at_max_rate"]["p99_ms"] <= 100
    assert any(t["met"] for t in search["trials"])
    entries = read_json(baseline_file(serving_project))["cases"]
    assert entries[SERVER]["metrics"]["max_rate"] == pytest.approx(search["max_rate"], rel=1e-5)
    assert entries[OFFLINE]["serving"]["padding"] == "buckets"

    # The gate: the same setup passes with a wide tolerance (2 shared cores drift a lot) ...
    again = serving_project.runpytest_subprocess("--xfperf", *SERVING, "--xfperf-tolerance",
                                                 "300%")
    again.assert_outcomes(passed=2)
    # ... and a baseline four times faster than anything this machine does fails the offline
    # throughput and the server rate (a real slowdown's effect, without waiting for one).
    path = baseline_file(serving_project)
    data = read_json(path)
    for case_id in (OFFLINE, SERVER):
        metrics = data["cases"][case_id]["metrics"]
        for key in ("throughput", "tokens_per_s", "max_rate"):
            if key in metrics:
                metrics[key] *= 4
    import json

    path.write_text(json.dumps(data))
    slower = serving_project.runpytest_subprocess("--xfperf", *SERVING)
    assert slower.ret == 1
    slower.assert_outcomes(failed=2)
    slower.stdout.fnmatch_lines([f"{OFFLINE}: REGRESSED", "*regression: throughput baseline*",
                                 f"{SERVER}: REGRESSED", "*regression: max_rate baseline*"])


def test_impossible_bound_ends_fast_with_no_rate(serving_project: pytest.Pytester):
    started = time.monotonic()
    result = serving_project.runpytest_subprocess(
        "--xfperf", *SERVING, "--xfperf-scenarios", "server", "--xfperf-p99-bound-ms", "0.01")
    assert time.monotonic() - started < 90
    assert result.ret == 1
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"{SERVER}: BOUND UNMET",
                                 "*no rate meets the bound: p99 <= 0.01 ms failed even at*"
                                 "the best rate tried was * req/s with p99 * ms*"])


def test_graph_backends_skip_serving_with_a_reason(serving_project: pytest.Pytester):
    result = serving_project.runpytest_subprocess(
        "--xfperf", "--xfperf-models", "bert-tiny", "--xfperf-backends", "ort-cuda-graph",
        "--xfperf-precisions", "fp16", "--xfperf-scenarios", "server", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*replays CUDA graphs captured for one input shape*"])


@pytest.mark.parametrize("flag,value,message", [
    ("--xfperf-scenarios", "batch", "unknown scenario(s) batch; valid: single-stream, offline, "
                                    "server"),
    ("--xfperf-lengths", "normal:3", "malformed length distribution"),
    ("--xfperf-padding", "shortest", "padding"),
    ("--xfperf-buckets", "64,32", "strictly increasing"),
    ("--xfperf-p99-bound-ms", "0", "p99_bound_ms must be a finite number > 0"),
])
def test_bad_serving_options_are_usage_errors(serving_project: pytest.Pytester, flag, value,
                                              message):
    result = serving_project.runpytest_subprocess("--xfperf", f"{flag}={value}")
    assert result.ret == 4
    assert message in result.stderr.str()
