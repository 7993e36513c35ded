import math
import mmap

import numpy as np
import pytest

from pytest_xfperf.measure.memory import PeakMemory
from pytest_xfperf.measure.stats import percentile, summarize
from pytest_xfperf.measure.timing import TimingPolicy, time_calls


@pytest.mark.parametrize("q", [0, 1, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy(q):
    values = sorted(np.random.default_rng(1).lognormal(size=37).tolist())
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_summary_figures():
    stats = summarize([0.010, 0.012, 0.011, 0.030], batch=4)
    assert stats.rounds == 4
    assert stats.p50_ms == pytest.approx(11.5)
    assert stats.min_ms == pytest.approx(10) and stats.max_ms == pytest.approx(30)
    assert stats.throughput == pytest.approx(4 * 1000 / stats.mean_ms)
    assert stats.mad_ms == pytest.approx(1.0)
    assert math.isclose(stats.cv, stats.stdev_ms / stats.mean_ms)
    with pytest.raises(ValueError):
        summarize([], 1)


def test_time_calls_meets_min_rounds_and_counts_warmup():
    calls, syncs = [], []
    samples = time_calls(lambda: calls.append(1), lambda: syncs.append(1),
                         TimingPolicy(warmup_rounds=2, min_rounds=7, min_time=0, max_time=10))
    assert len(samples) == 7
    assert len(calls) == 9 and len(syncs) == 9  # every call, warm-up included, is synced


def test_time_calls_measures_what_the_call_takes():
    import time

    samples = time_calls(lambda: time.sleep(0.004), lambda: None,
                         TimingPolicy(warmup_rounds=0, min_rounds=5, min_time=0, max_time=10))
    assert len(samples) == 5
    assert all(0.004 <= s < 0.004 + 0.05 for s in samples)


def test_time_calls_runs_until_min_time_and_stops_at_max_time():
    policy = TimingPolicy(warmup_rounds=0, min_rounds=1, min_time=0.05, max_time=10)
    samples = time_calls(lambda: sum(range(1000)), lambda: None, policy)
    assert sum(samples) >= 0.04 and len(samples) > 1
    import time

    capped = TimingPolicy(warmup_rounds=0, min_rounds=10**9, min_time=0, max_time=0.05)
    # max_time wins over min_rounds. Timed from the samples: the garbage collection that
    # precedes the timed loop took 0.5 s in a full run of the suite, with its objects alive.
    capped_samples = time_calls(lambda: time.sleep(0.001), lambda: None, capped)
    assert len(capped_samples) < 1000 and sum(capped_samples) < 0.5


def _touch_fresh_pages(size: int) -> None:
    """Fresh anonymous pages, each touched, then unmapped: a malloc'ed block could reuse
    memory that an earlier test left resident, which would not raise the peak."""
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    block.close()


def test_peak_memory_sees_an_allocation():
    size = 64 * 1024 * 1024
    with PeakMemory() as memory:
        _touch_fresh_pages(size)
    if memory.mode == "per-case peak RSS":
        assert memory.peak_delta_mb >= 48
    assert memory.peak_kb > 0


def test_a_paused_memory_window_leaves_out_what_ran_meanwhile():
    # A case's further rounds extend the speed-up's reference inside the case's window: its
    # memory must not count, since a recording (one round) never extends it.
    size = 96 * 1024 * 1024
    window = PeakMemory()
    window.start()
    if window.mode.startswith("per-case peak RSS"):
        window.pause()
        _touch_fresh_pages(size)
        window.resume()
        window.stop()
        assert window.peak_delta_mb < 48
        # Unpaused, the same allocation counts.
        window = PeakMemory()
        window.start()
        _touch_fresh_pages(size)
        window.pause()
        window.resume()
        window.stop()
        assert window.peak_delta_mb >= 80
    else:
        pytest.skip("no per-case peak RSS here (Linux's /proc/self/clear_refs)")


def test_machine_state_snapshot_and_warnings():
    from pytest_xfperf.measure.machine_state import snapshot, warnings

    state = snapshot()
    assert state["cpus"] >= 1 and "load1" in state
    assert warnings({"cpus": 2, "load1": 0.3}) == []
    busy = warnings({"cpus": 2, "load1": 5.0, "governor": "powersave", "cpu_mhz": 800,
                     "cpu_max_mhz": 3000})
    assert len(busy) == 3 and "load average 5.0 on 2 CPUs" in busy[0]
    assert "powersave" in busy[1] and "800 MHz of 3000 MHz" in busy[2]


def test_blocks_alternate_case_and_yardstick_on_the_chosen_clock(monkeypatch):
    import time

    from pytest_xfperf.baselines.rule import GatePolicy
    from pytest_xfperf.measure import blocks
    from pytest_xfperf.measure.blocks import BlockPlan, Series, Timed, measure

    order: list[str] = []
    plan = BlockPlan.of(TimingPolicy(warmup_rounds=1, min_rounds=8, min_time=0.08,
                                     max_time=5), GatePolicy())
    assert plan.case_seconds == pytest.approx(0.01) and plan.case_calls == 3
    assert plan.yardstick_seconds == pytest.approx(0.002)
    series = Series(clock="wall")
    case = Timed(lambda: (order.append("c"), time.sleep(0.002)), lambda: None)
    stick = Timed(lambda: (order.append("y"), time.sleep(0.001)), lambda: None)
    measure(series, case, stick, plan, 4)
    assert series.blocks == 4 == len(series.yardstick_ms)
    assert order[:2] == ["c", "y"]  # warm-up of each, then blocks
    runs = "".join(order[2:]).replace("cc", "c").replace("yy", "y")
    assert runs.strip("cy") == "" and runs.count("cy") >= 4  # alternating blocks
    assert all(b >= 2.0 for b in series.case_ms) and all(y >= 1.0 for y in series.yardstick_ms)
    assert len(series.samples_ms) >= 12 and series.device_ms == []

    class Event:  # a CUDA event stand-in (no GPU here): device time is 7 ms a call
        ticks = 0.0

        def record(self):
            Event.ticks += 3.5
            self.at = Event.ticks

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return end.at - self.at

    monkeypatch.setattr(blocks, "_events", lambda: (Event(), Event()))
    device = Series(clock="device")
    measure(device, Timed(lambda: None, lambda: None, device=True), None, plan, 2)
    assert device.case_ms == [3.5, 3.5] and device.yardstick_ms == []


def test_the_first_call_after_the_other_sides_block_is_not_timed():
    """A switch costs the first call after it (2.23x on a 2-core EPYC with a spinning
    yardstick, docs/measurements.md): each block starts with ``settle_calls`` untimed calls.
    Here the first case call after a yardstick block takes 20 ms and the others 1 ms."""
    import time

    from pytest_xfperf.baselines.rule import GatePolicy
    from pytest_xfperf.measure.blocks import BlockPlan, Series, Timed, measure

    switched = [False]

    def case_call() -> None:
        time.sleep(0.02 if switched[0] else 0.001)
        switched[0] = False

    def stick_call() -> None:
        switched[0] = True

    timing = TimingPolicy(warmup_rounds=1, min_rounds=8, min_time=0.08, max_time=5)
    settled = Series(clock="wall")
    measure(settled, Timed(case_call, lambda: None), Timed(stick_call, lambda: None),
            BlockPlan.of(timing, GatePolicy()), 4)
    assert max(settled.samples_ms) < 15  # no 20 ms call was timed
    unsettled = Series(clock="wall")
    measure(unsettled, Timed(case_call, lambda: None), Timed(stick_call, lambda: None),
            BlockPlan.of(timing, GatePolicy(settle_calls=0)), 4)
    assert sum(s >= 19 for s in unsettled.samples_ms) >= 3  # blocks 2-4 timed the switch


def test_the_yardstick_block_is_a_share_of_the_case_block_as_it_lasted():
    import time

    from pytest_xfperf.baselines.rule import GatePolicy
    from pytest_xfperf.measure.blocks import BlockPlan, Series, Timed, measure

    plan = BlockPlan.of(TimingPolicy(warmup_rounds=0, min_rounds=8, min_time=0.08,
                                     max_time=5), GatePolicy())
    assert plan.yardstick_block_seconds(0.005) == pytest.approx(0.002)  # never below plan
    assert plan.yardstick_block_seconds(0.1) == pytest.approx(0.02)  # a fifth of 0.1 s
    # Slow calls: three of them (the minimum) outlast the planned 10 ms block sixfold; the
    # yardstick's share of the time stays a fifth instead of shrinking to a thirtieth.
    series = Series(clock="wall")
    measure(series, Timed(lambda: time.sleep(0.02), lambda: None),
            Timed(lambda: time.sleep(0.001), lambda: None), plan, 3)
    assert series.yardstick_seconds >= 0.8 * GatePolicy().yardstick_share * series.case_seconds


def test_the_memory_window_opens_on_a_trimmed_heap_and_says_so():
    import sys

    from pytest_xfperf.measure.memory import PeakMemory

    window = PeakMemory()
    with window:
        block = bytearray(64 * 1024 * 1024)
    assert window.peak_delta_mb >= 60
    del block
    if sys.platform.startswith("linux"):
        assert window.mode == "per-case peak RSS, heap trimmed at start"


def test_an_eager_call_is_paced_by_whichever_side_finishes_last():
    """CUDA cannot run here: the GPU's work is stood in for by a sleep in the synchronize,
    the host's launching by a sleep in the call."""
    import time

    from pytest_xfperf.measure.pace import Pace, probe

    def sleeper(seconds: float):
        return lambda: time.sleep(seconds)

    # Launches that end just before the GPU's work does: the host's pace.
    launch_paced = probe(sleeper(0.020), sleeper(0.001), calls=3)
    assert launch_paced.launched_ms >= 20 and launch_paced.finished_ms >= 21
    assert not launch_paced.paced_by_device(1.35)
    # Launches that run far ahead of the GPU's work: the device's pace.
    device_paced = probe(sleeper(0.001), sleeper(0.030), calls=3)
    assert device_paced.finished_ms >= 31 and device_paced.launched_ms >= 1
    assert device_paced.paced_by_device(1.35)
    # The line is the host's routine move. Probes of BERT-base at batch 32 on an H100: FP32
    # (its GPU work paces it) and FP16 (its launches do).
    assert Pace(10.39, 21.05).paced_by_device(1.35) and not Pace(8.0, 8.09).paced_by_device(1.35)
    assert not Pace(10.0, 13.5).paced_by_device(1.35) and Pace(10.0, 13.6).paced_by_device(1.35)
