"""A baseline pooled from several processes: its blocks, its setup check, its spreads."""

import math
from pathlib import Path

import pytest

from pytest_xfperf.baselines import gate, pooling, rule, store

MACHINE = {"key": "cpu-test-2c"}
CASE = "m/ort-cpu/fp32/b1s8"


def record(level: float, yardstick: float = 1.0, blocks: int = 12) -> dict:
    # Blocks scattered +-2 % around the process's level, the yardstick's likewise.
    scatter = [1 + 0.02 * math.sin(i) for i in range(blocks)]
    return {"clock": "wall", "pacing": "onnxruntime", "yardstick": "mlp3 onnxruntime 1 threads=0",
            "case_ms": [round(level * s, 5) for s in scatter],
            "yardstick_ms": [round(yardstick * s, 5) for s in reversed(scatter)]}


def entry(level: float, torch: str = "2.13.0") -> dict:
    return {"metrics": {"p50_ms": level, "throughput": 1000 / level},
            "samples_ms": [level, level], "versions": {"torch": torch},
            "timing": record(level), "speedup": record(3 * level)}


def test_the_spread_scales_with_the_processes_the_baseline_pools():
    assert pooling.spread_factor(1) == 1.0  # two single processes: the spread as measured
    # Against the median of three normal draws (variance 0.449 of one): not 1 + 1/3.
    assert pooling.spread_factor(3) == pytest.approx(math.sqrt(1.449 / 2))
    assert pooling.spread_factor(2) == pytest.approx(math.sqrt(1.5 / 2))
    assert pooling.processes_of(record(1.0)) == 1


def test_each_process_is_moved_to_the_pooled_level_before_its_blocks_are_pooled():
    pooled = pooling.recentred([{"case_ms": [10.0, 10.0, 10.0]}, {"case_ms": [12.1] * 3}])
    # Of two, the median is the mean: of the logs of 10 and 12.1, the log of 11.
    assert pooled["case_ms"] == pytest.approx([11.0] * 6)
    assert "yardstick_ms" not in pooled
    spread = pooling.recentred([{"case_ms": [9.0, 10.0, 11.0]}, {"case_ms": [20.0, 20.0]}])
    # Within a process the scatter stays: 9, 10, 11 keep their ratios.
    first = spread["case_ms"][:3]
    assert first[0] / first[1] == pytest.approx(0.9) and first[2] / first[1] == pytest.approx(1.1)


def test_one_process_in_an_odd_state_does_not_move_the_pooled_level():
    # An eager reference at 4x its usual time in one of three processes (seen on a 2-core
    # host): a mean of the logs would move by a third of it (1.59x), the median not at all.
    pooled = pooling.recentred([{"case_ms": [88.0] * 4}, {"case_ms": [22.0] * 4},
                                {"case_ms": [20.0] * 4}])
    assert pooled["case_ms"] == pytest.approx([22.0] * 12)


def test_both_views_sit_at_the_median_of_the_processes_levels():
    # Own levels 10, 20, 12 (median 12, the third); divided by the yardstick 10, 10, 12
    # (median 10). A median per series would take the case's level from the third and the
    # yardstick's (1, 2, 1: median 1) from another, a divided level of 12 that two of three
    # processes contradict.
    pooled = pooling.recentred([{"case_ms": [10.0] * 3, "yardstick_ms": [1.0] * 3},
                                {"case_ms": [20.0] * 3, "yardstick_ms": [2.0] * 3},
                                {"case_ms": [12.0] * 3, "yardstick_ms": [1.0] * 3}])
    assert pooled["case_ms"] == pytest.approx([12.0] * 9)
    divided = [c / y for c, y in zip(pooled["case_ms"], pooled["yardstick_ms"], strict=True)]
    assert divided == pytest.approx([10.0] * 9, rel=1e-5)


def test_recordings_of_one_setup_pool_up_to_the_limit_the_newest_kept(tmp_path: Path):
    path = tmp_path / "cpu-test-2c.json"
    notes = [store.merge_and_write(path, {CASE: entry(level)}, MACHINE, pool=3)
             for level in (10.0, 12.1, 11.0, 11.0)]
    assert notes[0] == {CASE: "1 process (no earlier recording)"}
    assert [n[CASE] for n in notes[1:]] == ["2 processes", "3 processes", "3 processes"]
    timing = store.load(path)["cases"][CASE]["timing"]
    assert [p["case_ms"][0] for p in timing["processes"]] == pytest.approx(
        [record(level)["case_ms"][0] for level in (12.1, 11.0, 11.0)])  # the first dropped
    assert len(timing["case_ms"]) == len(timing["yardstick_ms"]) == 36
    assert sorted(timing["case_ms"])[18] == pytest.approx(11.0, rel=0.03)  # the median process
    speedup = store.load(path)["cases"][CASE]["speedup"]
    assert pooling.processes_of(speedup) == 3


def test_a_recording_of_another_setup_starts_the_pool_again(tmp_path: Path):
    path = tmp_path / "cpu-test-2c.json"
    store.merge_and_write(path, {CASE: entry(10.0)}, MACHINE, pool=3)
    store.merge_and_write(path, {CASE: entry(10.0)}, MACHINE, pool=3)
    notes = store.merge_and_write(path, {CASE: entry(10.0, torch="2.14.0")}, MACHINE, pool=3)
    assert notes == {CASE: "1 process (its versions differ from the earlier recording's)"}
    assert "processes" not in store.load(path)["cases"][CASE]["timing"]
    other = entry(10.0, torch="2.14.0")
    other["timing"] = {**other["timing"], "yardstick": "mlp3 onnxruntime 2 threads=0"}
    notes = store.merge_and_write(path, {CASE: other}, MACHINE, pool=3)
    assert notes[CASE].startswith("1 process (its timing yardstick differs")


def test_without_pooling_a_recording_replaces_the_entry(tmp_path: Path):
    path = tmp_path / "cpu-test-2c.json"
    store.merge_and_write(path, {CASE: entry(10.0)}, MACHINE, pool=3)
    store.merge_and_write(path, {CASE: entry(10.0)}, MACHINE, pool=3)
    assert store.merge_and_write(path, {CASE: entry(11.0)}, MACHINE) == {}
    assert store.load(path)["cases"][CASE]["timing"] == record(11.0)


def test_a_pooled_baseline_narrows_the_interval_by_the_spread_it_takes_out():
    now = record(10.0)
    single = record(10.0)
    pooled = {**single, "processes": [{"case_ms": single["case_ms"],
                                       "yardstick_ms": single["yardstick_ms"]}] * 3,
              "case_ms": single["case_ms"] * 3, "yardstick_ms": single["yardstick_ms"] * 3}
    policy = rule.DEFAULT_POLICY
    one = gate.block_views(now, single, policy)[0][1]
    three = gate.block_views(now, pooled, policy)[0][1]
    floor = rule.widened(rule.shift([1.0], [1.0], 0.95, True), policy.spread_wall_normalized,
                         0.95).floor
    assert one.floor == pytest.approx(floor)
    assert three.floor == pytest.approx(floor * pooling.spread_factor(3))
    assert three.half_width < one.half_width


@pytest.mark.parametrize("processes, problem", [
    ([{"case_ms": [1.0] * 12, "yardstick_ms": [1.0] * 12}], "at least two"),
    ([{"case_ms": [1.0] * 6, "yardstick_ms": [1.0] * 6}] * 3, "must be the record's"),
    ([{"case_ms": [1.0] * 6}] * 2, "exactly where the record has it"),
    ([{"case_ms": [1.0] * 6, "yardstick_ms": [1.0] * 6, "extra": 1}] * 2, "must be an object"),
    ([{"case_ms": [0.0] * 6, "yardstick_ms": [1.0] * 6}] * 2, "processes[0].case_ms"),
])
def test_malformed_processes_are_refused_with_where_and_what(processes, problem):
    bad = entry(1.0)
    bad["timing"] = {**bad["timing"], "processes": processes}
    with pytest.raises(ValueError, match=r"timing.*" + problem.replace("[", r"\[")):
        store.validate_entry(CASE, bad)
