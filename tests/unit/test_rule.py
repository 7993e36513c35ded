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


def test_the_view_with_the_narrower_interval_decides():
    from pytest_xfperf.baselines.rule import deciding, verdict

    def view(ratio: float, half: float, normalized: bool) -> Shift:
        return Shift(ratio, ratio * math.exp(-half), ratio * math.exp(half), 8, 12, normalized)

    own, normalized = view(1.02, 0.08, False), view(1.30, 0.03, True)
    assert deciding([own, normalized]) is normalized
    assert verdict([own, normalized], 0.1, False) == Outcome.REGRESSED
    own, normalized = view(1.02, 0.02, False), view(1.30, 0.12, True)
    assert deciding([own, normalized]) is own
    assert verdict([own, normalized], 0.1, False) == Outcome.PASS
    tie = view(1.0, 0.05, True)
    assert deciding([view(1.0, 0.05, False), tie]).normalized is False  # own times on a tie
    assert verdict([view(1.10, 0.04, False)], 0.1, False) is None  # one view: measure more
    assert verdict([view(1.0, 0.3, False)], 0.1, True) == Outcome.UNSTABLE


def test_the_between_process_spread_widens_each_side_in_quadrature():
    from pytest_xfperf.baselines.rule import widened

    z = 1.959964
    base = Shift(1.2, 1.2 * math.exp(-0.03), 1.2 * math.exp(0.04), 8, 12, True)
    wide = widened(base, 0.02, 0.95)
    assert wide.ratio == 1.2 and wide.normalized
    assert math.log(wide.ratio / wide.low) == pytest.approx(math.hypot(0.03, z * 0.02), rel=1e-5)
    assert math.log(wide.high / wide.ratio) == pytest.approx(math.hypot(0.04, z * 0.02),
                                                             rel=1e-5)
    assert widened(base, 0.0, 0.95) == base


def test_a_round_that_more_blocks_cannot_change_is_the_last():
    """The floor is the half-width no number of blocks removes (the between-process spread).
    A round is taken only where a shift the blocks leave open, give or take the floor, would
    get another verdict than the interval gets now."""
    from pytest_xfperf.baselines.rule import could_change, open_shifts, widened

    narrow = Shift(1.0, 0.98, 1.02, 8, 12, True)
    hopeless = widened(narrow, 0.06, 0.95)  # floor 0.118, wider than a 10 % line
    assert hopeless.floor == pytest.approx(1.959964 * 0.06, rel=1e-5)
    low, high = open_shifts(hopeless)  # the blocks' own interval, the floor taken out
    assert (math.exp(low), math.exp(high)) == pytest.approx((0.98, 1.02), rel=1e-6)
    assert not could_change(hopeless, 0.10)
    assert decide(hopeless, 0.10, final=False) == Outcome.UNSTABLE  # decided now
    assert decide(hopeless, 0.25, final=False) == Outcome.PASS  # a 25 % line: a clear pass
    far = widened(Shift(1.30, 1.10, 1.55, 8, 12, True), 0.06, 0.95)
    assert far.low < 1.10  # across the line now, but 1.30 / e^0.118 = 1.16: it can regress
    assert could_change(far, 0.10)
    assert decide(far, 0.10, final=False) is None
    assert decide(widened(narrow, 0.005, 0.95), 0.10, final=False) == Outcome.PASS
    # A first round of a case made 20 % slower (a 2-core EPYC power run): its estimate,
    # +13.6 %, give or take the floor (pooled spread 0.0255) crosses the 10 % line, but
    # shifts its blocks leave open lie clear past it: another round (at 24 blocks, +17 %).
    near = widened(Shift(1.136, 1.085, 1.19, 8, 36, True), 0.0255, 0.95)
    assert near.low < 1.10 < math.exp(math.log(near.ratio) + near.floor)
    assert could_change(near, 0.10)
    assert decide(near, 0.10, final=False) is None
    # The same interval nearer zero already passes if decided now (narrower than the
    # tolerance); a clear pass would be the same verdict, so no round is taken for it.
    across = widened(Shift(1.06, 1.02, 1.10, 8, 36, True), 0.0255, 0.95)
    assert across.high > 1.10 and across.half_width < math.log(1.10)
    assert not could_change(across, 0.10)
    assert decide(across, 0.10, final=False) == Outcome.PASS
    # Wider than the tolerance: more blocks could resolve it to a pass, so they are taken.
    wide = widened(Shift(1.0, 0.85, 1.18, 8, 36, True), 0.0255, 0.95)
    assert wide.half_width > math.log(1.10) and could_change(wide, 0.10)


def test_the_speedup_floor_combines_both_sides():
    from pytest_xfperf.baselines.rule import widened

    case = widened(Shift(1.0, 0.99, 1.01, 8, 12, True), 0.03, 0.95)
    reference = widened(Shift(1.0, 0.99, 1.01, 8, 12, True), 0.04, 0.95)
    assert combined(case, reference).floor == pytest.approx(1.959964 * 0.05, rel=1e-5)
