"""The timing rule on synthetic data with known answers (baselines/rule.py)."""

import math

import numpy as np
import pytest

from pytest_xfperf.baselines.rule import Outcome, Shift, block_values, combined, decide, shift


def blocks(level: float, count: int, noise: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return (level * np.exp(rng.normal(0, noise, count))).tolist()


@pytest.mark.parametrize("true", [0.8, 1.0, 1.05, 1.2, 1.5])
def test_the_shift_estimates_the_true_ratio_and_covers_it(true: float):
    covered = 0
    for seed in range(200):
        s = shift(blocks(true, 8, 0.03, seed), blocks(1.0, 12, 0.03, 1000 + seed), 0.95, True)
        assert s.low <= s.ratio <= s.high
        covered += s.low <= true <= s.high
    # A 95 % interval covers the truth about 95 % of the time (the rank interval is
    # conservative: at least that).
    assert covered >= 0.93 * 200


def test_an_outlier_block_does_not_move_the_estimate():
    now = blocks(1.0, 8, 0.01, 1)
    then = blocks(1.0, 12, 0.01, 2)
    clean = shift(now, then, 0.95, True).ratio
    now[3] *= 3.0  # one block hit by a neighbour
    assert shift(now, then, 0.95, True).ratio == pytest.approx(clean, abs=0.01)


def test_normalizing_divides_by_the_paired_yardstick_block():
    assert block_values([10.0, 20.0], [2.0, 4.0], True) == [5.0, 5.0]
    assert block_values([10.0, 20.0], [2.0, 4.0], False) == [10.0, 20.0]


def estimate(ratio: float, half: float) -> Shift:
    return Shift(ratio, ratio * math.exp(-half), ratio * math.exp(half), 8, 12, True)


@pytest.mark.parametrize(("ratio", "half", "final", "expected"), [
    (1.00, 0.02, False, Outcome.PASS),  # clear of both lines
    (1.25, 0.02, False, Outcome.REGRESSED),  # wholly above 1.10
    (0.80, 0.02, False, Outcome.IMPROVED),  # wholly below 1/1.10
    (1.10, 0.03, False, None),  # straddles: measure more
    (1.12, 0.03, True, Outcome.PASS),  # at the end, a change not shown is a pass
    (1.08, 0.03, True, Outcome.PASS),
    (1.00, 0.20, True, Outcome.UNSTABLE),  # wider than the tolerance at the end
])
def test_the_stopping_rule(ratio, half, final, expected):
    assert decide(estimate(ratio, half), 0.10, final) == expected


def test_the_speedup_loss_is_the_case_shift_over_the_reference_shift():
    case, reference = estimate(1.2, 0.03), estimate(1.2, 0.04)
    loss = combined(case, reference)
    assert loss.ratio == pytest.approx(1.0)
    assert math.log(loss.high / loss.ratio) == pytest.approx(0.05)  # 0.03 and 0.04 in quadrature


def test_views_must_agree_on_a_change():
    from pytest_xfperf.baselines.rule import agree, binding

    slow, inside, straddling = estimate(1.3, 0.02), estimate(1.0, 0.02), estimate(1.1, 0.04)
    assert agree([slow, slow], 0.1, False) == Outcome.REGRESSED
    assert agree([slow, inside], 0.1, False) == Outcome.PASS  # one view settles a pass
    assert agree([slow, straddling], 0.1, False) is None  # measure more
    assert agree([slow, straddling], 0.1, True) == Outcome.PASS
    assert agree([slow, estimate(1.0, 0.3)], 0.1, True) == Outcome.UNSTABLE
    assert agree([slow], 0.1, False) == Outcome.REGRESSED  # one view where there is one
    assert binding([slow, straddling]) is straddling  # the verdict rests on the nearer view
