"""The graph fingerprint gate end to end: a pipeline that stops fusing fails by its graph."""

import json

import pytest

from .conftest import FAST, baseline_file, read_json

MATRIX = ["--xfperf-models", "bert-tiny", "--xfperf-backends", "torch-cpu,ort-cpu",
          "--xfperf-precisions", "fp32,fp16,int8-dynamic,int8-static",
          "--xfperf-shapes", "2x32"]


def test_every_precision_is_built_and_a_dynamo_export_fails_on_its_graph(
        project: pytest.Pytester):
    recorded = project.runpytest_subprocess("--xfperf", *FAST, *MATRIX,
                                            "--xfperf-update-baselines", "--xfperf-report",
                                            "report.json")
    # torch-cpu runs FP32 only: its three other precisions are skips with the reason.
    recorded.assert_outcomes(passed=5, skipped=3)
    report = {c["id"]: c for c in read_json(project.path / "report.json")["cases"]}
    static = report["bert-tiny/ort-cpu/int8-static/b2s32"]
    assert set(static["build_seconds"]) == {"export", "calibrate", "quantize"}
    assert static["graph"]["quantization"]["quantized_share"] == 1.0
    assert report["bert-tiny/ort-cpu/fp32/b2s32"]["graph"]["fused"]["Attention"] == 2
    path = baseline_file(project)
    before = path.read_bytes()

    # The same models exported by torch's dynamo exporter: ORT no longer fuses attention.
    # Timing is disabled: the graph alone decides.
    drifted = project.runpytest_subprocess(
        "--xfperf", *FAST, *MATRIX, "--xfperf-exporter", "dynamo", "--benchmark-disable",
        "-k", "ort-cpu and (fp32 or int8-dynamic)")
    assert drifted.ret == 1
    drifted.assert_outcomes(failed=2, deselected=6)
    drifted.stdout.fnmatch_lines([
        "*bert-tiny/ort-cpu/fp32/b2s32: DRIFT",
        "*graph drift: Attention 2 → 0 (same library versions: the export settings or the "
        "model changed)*",
        "*graph drift: EmbedLayerNormalization 1 → 0*",
    ])
    assert drifted.stdout.str().count("xfperf: bert-tiny: incomplete bert fusion (") == 1
    assert "Attention 0/2" in drifted.stdout.str()
    assert path.read_bytes() == before  # a failing run never writes

    # Back to the fusable export: the graph matches its baseline again.
    again = project.runpytest_subprocess("--xfperf", *FAST, *MATRIX, "--benchmark-disable",
                                         "-k", "ort-cpu")
    again.assert_outcomes(passed=4, deselected=4)
    assert json.loads(path.read_bytes()) == json.loads(before)
