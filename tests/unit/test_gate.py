import pytest

from pytest_xfperf.baselines.gate import compare
from pytest_xfperf.settings import Tolerances

BASE = {"metrics": {"p50_ms": 100.0, "p99_ms": 120.0, "throughput": 10.0, "memory_mb": 200.0,
                    "cosine": 0.999}}


def test_within_tolerance_passes():
    out = compare({"p50_ms": 109.0, "throughput": 9.2, "cosine": 0.998}, BASE, Tolerances())
    assert out.passed and out.deltas["p50_ms"] == pytest.approx(0.09)


def test_latency_regression_names_numbers():
    out = compare({"p50_ms": 125.0}, BASE, Tolerances())
    assert not out.passed
    assert out.regressions == [
        "p50_ms baseline 100.0 ms, now 125.0 ms (+25.0%, tolerance 10%)"]


def test_throughput_drop_and_accuracy_drop_fail():
    out = compare({"throughput": 8.0, "cosine": 0.99}, BASE, Tolerances())
    assert len(out.regressions) == 2
    assert any("cosine 0.9990 -> 0.9900" in r for r in out.regressions)


def test_memory_needs_both_ratio_and_absolute_growth():
    assert compare({"memory_mb": 215.0}, BASE, Tolerances(memory=0.05)).passed  # +15 MB
    assert not compare({"memory_mb": 300.0}, BASE, Tolerances()).passed


def test_improvement_is_reported_not_failed():
    out = compare({"p50_ms": 50.0}, BASE, Tolerances())
    assert out.passed and out.improvements
    assert not compare({"memory_mb": 20.0}, BASE, Tolerances()).improvements


def test_timing_off_compares_accuracy_only():
    out = compare({"p50_ms": 500.0, "cosine": 0.5}, BASE, Tolerances(), timing=False)
    assert len(out.regressions) == 1 and "cosine" in out.regressions[0]


def test_custom_tolerance():
    assert compare({"p50_ms": 125.0}, BASE, Tolerances(p50=0.3)).passed
