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
    assert compare({"memory_mb": 315.0}, BASE, Tolerances(memory=0.05)).passed  # +115 MB
    assert not compare({"memory_mb": 400.0}, BASE, Tolerances()).passed


def test_improvement_is_reported_not_failed():
    out = compare({"p50_ms": 50.0}, BASE, Tolerances())
    assert out.passed and out.improvements
    assert not compare({"memory_mb": 20.0}, BASE, Tolerances()).improvements


def test_timing_off_compares_accuracy_only():
    out = compare({"p50_ms": 500.0, "cosine": 0.5}, BASE, Tolerances(), timing=False)
    assert len(out.regressions) == 1 and "cosine" in out.regressions[0]


def test_custom_tolerance():
    assert compare({"p50_ms": 125.0}, BASE, Tolerances(p50=0.3)).passed


def _samples(median, n=40, spread=0.02, seed=0):
    import numpy as np

    return list(median * np.exp(np.random.default_rng(seed).normal(0, spread, n)))


SAMPLED_BASE = {"metrics": {"p50_ms": 10.0, "throughput": 100.0}, "samples_ms": _samples(10.0)}


def test_sampled_regression_is_confirmed_once_for_both_timing_metrics():
    from pytest_xfperf.baselines.decision import Blocks

    calls = []

    def confirm(k):
        calls.append(k)
        return Blocks([_samples(13.0, seed=2 + i, n=12) for i in range(5)], [])

    now = _samples(13.0, seed=1)
    out = compare({"p50_ms": 13.0, "throughput": 77.0}, SAMPLED_BASE, Tolerances(),
                  samples_ms=now, confirm=confirm)
    assert calls == [0] and len(out.regressions) == 2
    assert out.regressions[0].startswith("p50_ms baseline 10.000 ms, now 13.")
    assert "confirmation +" in out.regressions[0]
    assert out.decisions["p50_ms"].confirmation is not None


def test_unconfirmed_regression_passes_with_a_note():
    from pytest_xfperf.baselines.decision import Blocks

    out = compare({"p50_ms": 13.0}, SAMPLED_BASE, Tolerances(), samples_ms=_samples(13.0, seed=3),
                  confirm=lambda k: Blocks([_samples(10.1, seed=4)], []))
    assert out.passed and "did not reproduce" in out.notes[0]


def test_the_interleaved_record_of_a_baseline_is_what_a_confirmation_meets():
    from pytest_xfperf.baselines.decision import Blocks

    record = {"case_ms": [_samples(10.0, seed=10 + i, n=12) for i in range(10)],
              "reference_ms": [_samples(40.0, seed=30 + i, n=12) for i in range(10)]}
    base = {**SAMPLED_BASE, "paired": record}
    rounds = []

    def confirm(k):
        rounds.append(k)
        return Blocks([_samples(13.0, seed=50 + i, n=12) for i in range(5)],
                      [_samples(40.0, seed=60 + i, n=12) for i in range(5)])

    out = compare({"p50_ms": 13.0}, base, Tolerances(), samples_ms=_samples(13.0, seed=5),
                  confirm=confirm, reference_baseline=_samples(40.0, seed=6),
                  reference_current=_samples(40.0, seed=7))
    decision = out.decisions["p50_ms"]
    assert rounds == [0] and decision.outcome == "regressed"
    assert decision.confirmation is not None and decision.confirmation.method == "blocks"
    assert "interleaved blocks" in out.regressions[0]


def test_baseline_without_samples_uses_the_threshold_and_says_so():
    old = {"metrics": {"p50_ms": 10.0, "throughput": 100.0}}
    out = compare({"p50_ms": 12.5, "throughput": 80.0}, old, Tolerances(),
                  samples_ms=_samples(12.5, seed=5))
    assert len(out.regressions) == 2 and "threshold rule" in out.regressions[0]
    assert any("no timing samples" in n for n in out.notes)


def test_faster_past_the_tolerance_is_an_improvement():
    out = compare({"p50_ms": 7.0}, SAMPLED_BASE, Tolerances(), samples_ms=_samples(7.0, seed=6))
    assert out.passed and out.improvements and out.deltas["p50_ms"] < -0.25


def test_noisy_case_is_unstable():
    noisy_base = {**SAMPLED_BASE, "samples_ms": _samples(10.0, spread=0.5, seed=1)}
    out = compare({"p50_ms": 10.5}, noisy_base, Tolerances(),
                  samples_ms=_samples(10.5, spread=0.5, seed=7))
    assert out.passed and out.unstable and not out.improvements


def test_a_server_that_finds_no_rate_regresses_against_one_that_did():
    # max_rate 0 (no rate met the bound) against a recorded rate: -100 %, by the ratio rule.
    outcome = compare({"max_rate": 0.0}, {"metrics": {"max_rate": 180.0}}, Tolerances())
    assert outcome.deltas["max_rate"] == -1.0
    assert outcome.regressions == ["max_rate baseline 180.0 req/s, now 0.000 req/s "
                                   "(-100.0%, tolerance 10%)"]


def test_past_the_tolerance_but_not_significantly_passes_and_is_named():
    """+11 % whose interval reaches inside the 10 % tolerance: passed, listed as near it (the
    harness turns that into a note under the summary), and not an improvement either."""
    out = compare({"p50_ms": 11.4}, SAMPLED_BASE, Tolerances(),
                  samples_ms=_samples(11.4, spread=0.04, seed=8))
    first = out.decisions["p50_ms"].first
    assert first.low <= 1.10 < first.ratio
    assert out.passed and not out.unstable and not out.improvements
    assert len(out.near_tolerance) == 1 and out.near_tolerance[0].startswith("p50_ms baseline")
    clear = compare({"p50_ms": 10.2}, SAMPLED_BASE, Tolerances(),
                    samples_ms=_samples(10.2, seed=9))
    assert clear.passed and not clear.near_tolerance
