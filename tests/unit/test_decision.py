"""The timing decision rule on synthetic samples whose answer is known."""

import numpy as np
import pytest

from pytest_xfperf.baselines.decision import (
    IMPROVED,
    PASS,
    REGRESSED,
    UNSTABLE,
    Measurement,
    decide,
    estimate,
    robust_cv,
)


def lognormal(median, cv, n, seed):
    rng = np.random.default_rng(seed)
    return list(median * np.exp(rng.normal(0, cv, n)))


def heavy_tailed(median, n, seed):
    """Mostly tight, with rare 3-10x stalls (a preempted core)."""
    rng = np.random.default_rng(seed)
    values = median * np.exp(rng.normal(0, 0.02, n))
    stalls = rng.random(n) < 0.05
    values[stalls] *= rng.uniform(3, 10, stalls.sum())
    return list(values)


BASE = Measurement(lognormal(10.0, 0.03, 60, 1))


@pytest.mark.parametrize("factor,expected", [
    (1.00, PASS), (1.05, PASS), (1.25, REGRESSED), (1.5, REGRESSED), (0.7, IMPROVED)])
def test_known_shifts(factor, expected):
    current = Measurement(lognormal(10.0 * factor, 0.03, 60, 2))
    assert decide(current, BASE, 0.10).outcome == expected


def test_material_but_not_significant_does_not_fail():
    """+12 % on five scattered samples each side: past the tolerance, nothing resolved."""
    base = Measurement([10.0, 14.0, 8.0, 12.0, 9.0])
    now = Measurement([11.2, 15.7, 9.0, 13.4, 10.1])
    result = decide(now, base, 0.10)
    assert result.first.ratio > 1.10 and result.first.low <= 1
    assert result.first.noise > 0.10 and result.outcome == UNSTABLE
    quiet = decide(Measurement([10.9, 11.4, 11.2, 11.3, 11.0]),
                   Measurement([10.0, 10.3, 9.7, 10.1, 9.9, 10.2]), 0.10)
    assert quiet.outcome == REGRESSED  # the same +11 % with quiet samples is resolved


def test_ties_at_timer_resolution():
    base = Measurement([1.0] * 30 + [2.0] * 10)
    assert decide(Measurement([1.0] * 30 + [2.0] * 10), base, 0.10).outcome == PASS
    assert decide(Measurement([2.0] * 30 + [1.0] * 10), base, 0.10).outcome == REGRESSED


def test_heavy_tails_do_not_move_the_median():
    base = Measurement(heavy_tailed(10.0, 80, 3))
    assert decide(Measurement(heavy_tailed(10.0, 80, 4)), base, 0.10).outcome == PASS
    assert decide(Measurement(heavy_tailed(12.5, 80, 5)), base, 0.10).outcome == REGRESSED


def test_tiny_samples_fall_back_to_the_threshold_with_a_note():
    old = Measurement([10.0])  # an older baseline with only its p50
    result = decide(Measurement(lognormal(12.5, 0.03, 40, 6)), old, 0.10)
    assert result.first.method == "threshold" and result.outcome == REGRESSED
    assert "no timing samples" in result.notes[0]
    assert decide(Measurement([10.5] * 20), old, 0.10).outcome == PASS


def test_noisy_case_is_unstable_not_flipping():
    """Unresolvable at the tolerance: whatever its point estimate, it is neither pass nor fail
    (a +/-15 % interval cannot vouch for a 10 % tolerance)."""
    noisy_base = Measurement(lognormal(10.0, 0.4, 30, 7))
    for seed in range(8, 14):
        result = decide(Measurement(lognormal(10.3, 0.4, 30, seed)), noisy_base, 0.10)
        assert result.first.noise > 0.10 and result.first.resolution > 0.10
        assert result.outcome in (UNSTABLE, REGRESSED) if result.first.ratio > 1.1 else (
            result.outcome == UNSTABLE)
    gross = decide(Measurement(lognormal(40.0, 0.4, 30, 9)), noisy_base, 0.10)
    assert gross.outcome == REGRESSED  # clear even through the noise


def test_confirmation_that_does_not_reproduce_passes_and_says_so():
    calls = []

    def confirm():
        calls.append(1)
        return Measurement(lognormal(10.1, 0.03, 60, 10))

    result = decide(Measurement(lognormal(12.5, 0.03, 60, 11)), BASE, 0.10, confirm)
    assert calls == [1] and result.outcome == PASS and result.confirmation is not None
    assert "did not reproduce" in result.notes[0]


def test_confirmation_is_skipped_when_nothing_is_suspected():
    def confirm():
        raise AssertionError("must not be called")

    assert decide(Measurement(lognormal(10.0, 0.03, 60, 12)), BASE, 0.10, confirm).outcome == PASS


def test_reference_normalization_cancels_machine_drift():
    """The whole machine got 30 % slower: the case and its reference alike. No regression."""
    then = Measurement(lognormal(10.0, 0.03, 60, 13), reference=lognormal(40.0, 0.03, 60, 14))
    now = Measurement(lognormal(13.0, 0.03, 60, 15), reference=lognormal(52.0, 0.03, 60, 16))
    plain = estimate(Measurement(now.samples), then)
    normalized = estimate(now, then)
    assert plain.ratio > 1.25 and not plain.normalized
    assert abs(normalized.ratio - 1) < 0.03 and normalized.normalized
    assert decide(Measurement(now.samples), then, 0.10, lambda: now).outcome == PASS


def test_mean_statistic_for_throughput():
    est = estimate(Measurement([1.0] * 50 + [100.0]), Measurement([1.0] * 51), "mean")
    assert est.ratio > 2  # one stall moves a mean, which is what throughput sees


def test_robust_cv():
    assert robust_cv([10.0] * 9) == 0.0
    assert 0.08 < robust_cv(lognormal(10.0, 0.1, 2000, 17)) < 0.12


def test_a_reference_that_moved_alone_does_not_make_a_regression():
    # The shipped suite's case: PyTorch (the reference) got 37 % faster since its baseline,
    # the INT8 case itself 5 % faster. Normalized, the case looks +50 % slower: not counted.
    base = Measurement(lognormal(7.9, 0.02, 40, 1), lognormal(37.6, 0.02, 40, 2))
    now = Measurement(lognormal(7.5, 0.02, 40, 3), lognormal(23.7, 0.02, 40, 4))
    decision = decide(now, base, 0.10, statistic="q25")
    assert decision.first.ratio > 1.4 and decision.outcome == PASS
    assert "reference itself moved -37" in decision.notes[0]
    assert decision.own is not None and decision.own.ratio < 1  # what reports show
    # A real regression shows in both views and still fails.
    slower = Measurement(lognormal(11.0, 0.02, 40, 5), lognormal(37.6, 0.02, 40, 6))
    assert decide(slower, base, 0.10, statistic="q25").outcome == REGRESSED
    # ... also when the confirmation is the one where the views disagree.
    decision = decide(slower, base, 0.10, confirm=lambda: now, statistic="q25")
    assert decision.outcome == PASS and decision.confirmation is not None
