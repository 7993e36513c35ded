"""The serving machinery without a model: batcher grouping, padding, unbatching order and
timeouts, the workload generators, the real-time loop on a simulated clock, and the search."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from pytest_xfperf.serving.batcher import (
    Batch,
    DynamicBatcher,
    Request,
    default_buckets,
    parse_buckets,
    unbatch,
)
from pytest_xfperf.serving.scenarios import BatchPolicy, RunStats, run, search_rate
from pytest_xfperf.serving.workload import LengthDistribution, TokenPool, poisson_arrivals


def req(i: int, length: int, arrival: float = 0.0) -> Request:
    return Request(i, length, arrival)


# -- batcher --------------------------------------------------------------------------------
def test_full_batch_leaves_at_once_and_in_arrival_order():
    b = DynamicBatcher(max_batch=3, max_delay=1.0, padding="longest", max_length=128)
    for i, length in enumerate((10, 30, 20, 5)):
        b.add(req(i, length, arrival=0.001 * i))
    batch = b.pop(now=0.004)
    assert batch is not None
    assert [r.id for r in batch.requests] == [0, 1, 2]
    assert batch.padded_length == 30  # the longest of the batch
    assert b.pending == 1
    assert b.pop(now=0.004) is None  # one request, its delay not yet up


def test_partial_batch_waits_for_its_delay_then_leaves():
    b = DynamicBatcher(max_batch=8, max_delay=0.010, padding="longest", max_length=64)
    b.add(req(0, 12, arrival=1.000))
    b.add(req(1, 7, arrival=1.004))
    assert b.deadline() == pytest.approx(1.010)
    assert b.pop(now=1.009) is None
    batch = b.pop(now=1.010)
    assert batch is not None and batch.size == 2 and batch.padded_length == 12
    assert b.deadline() is None and b.pending == 0


def test_no_more_requests_means_no_waiting():
    b = DynamicBatcher(max_batch=8, max_delay=10.0, padding="longest", max_length=64)
    b.add(req(0, 5))
    assert b.pop(now=0.0) is None
    assert b.pop(now=0.0, more_coming=False) is not None


def test_buckets_group_by_length_and_pad_to_the_edge():
    b = DynamicBatcher(max_batch=2, max_delay=1.0, padding="buckets", max_length=128,
                       buckets=(16, 64))
    assert b.edges == (16, 64, 128)
    for i, length in enumerate((100, 10, 50, 12, 16, 17)):
        b.add(req(i, length, arrival=0.0001 * i))
    batches = []
    while (batch := b.pop(now=0.0, more_coming=False)) is not None:
        batches.append(batch)
    got = sorted((tuple(r.id for r in x.requests), x.padded_length) for x in batches)
    assert got == [((0,), 128), ((1, 3), 16), ((2, 5), 64), ((4,), 16)]


def test_ready_buckets_go_oldest_first_so_none_starves():
    b = DynamicBatcher(max_batch=4, max_delay=0.005, padding="buckets", max_length=128,
                       buckets=(32,))
    b.add(req(0, 100, arrival=0.0))  # long bucket, oldest
    b.add(req(1, 10, arrival=0.001))
    first = b.pop(now=0.010)
    assert first is not None and [r.id for r in first.requests] == [0]
    second = b.pop(now=0.010)
    assert second is not None and [r.id for r in second.requests] == [1]


def test_fixed_padding_uses_the_maximum_length():
    b = DynamicBatcher(max_batch=2, max_delay=0.0, padding="fixed", max_length=96)
    b.add(req(0, 3))
    batch = b.pop(now=0.0)
    assert batch is not None and batch.padded_length == 96
    assert batch.real_tokens == 3 and batch.padded_tokens == 96


def test_bad_batcher_arguments_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        DynamicBatcher(0, 0.0, "longest", 8)
    with pytest.raises(ValueError, match="padding must be one of"):
        DynamicBatcher(1, 0.0, "shortest", 8)
    b = DynamicBatcher(1, 0.0, "longest", 8)
    with pytest.raises(ValueError, match="longer than the batcher's maximum 8"):
        b.add(req(0, 9))


def test_bucket_parsing():
    assert parse_buckets("auto") == ()
    assert parse_buckets("32,64, 128") == (32, 64, 128)
    assert parse_buckets([16, 48]) == (16, 48)
    for bad in ("64,32", "a,b", "0,8", "8,8"):
        with pytest.raises(ValueError, match="buckets"):
            parse_buckets(bad)
    assert default_buckets(128) == (16, 32, 64, 128)
    assert default_buckets(100) == (16, 32, 64, 100)
    assert default_buckets(8) == (8,)


def test_unbatch_cuts_each_request_to_its_own_rows_in_order():
    batch = Batch((req(7, 2), req(3, 4)), padded_length=4)
    outputs = np.arange(2 * 4 * 3).reshape(2, 4, 3)
    parts = unbatch(batch, outputs)
    assert [i for i, _ in parts] == [7, 3]
    assert parts[0][1].shape == (2, 3) and parts[1][1].shape == (4, 3)
    np.testing.assert_array_equal(parts[1][1], outputs[1])
    pooled = unbatch(batch, np.ones((2, 5)))  # (batch, hidden): one row per request
    assert pooled[0][1].shape == (5,)
    with pytest.raises(ValueError, match="batch of 2 requests"):
        unbatch(batch, np.ones((3, 4, 3)))


# -- workload -------------------------------------------------------------------------------
def test_length_distributions_are_seeded_and_clipped():
    dist = LengthDistribution.parse("lognormal:48:0.6")
    a = dist.sample(2000, 128, seed=1)
    assert a == dist.sample(2000, 128, seed=1) and a != dist.sample(2000, 128, seed=2)
    assert min(a) >= 2 and max(a) == 128  # the tail is clipped to the case's length
    assert 40 <= sorted(a)[1000] <= 56  # the median is where it was asked to be
    uniform = LengthDistribution.parse("uniform:16:32").sample(500, 128, 0)
    assert min(uniform) >= 16 and max(uniform) <= 32
    assert set(LengthDistribution.parse("fixed:20").sample(10, 128, 0)) == {20}
    assert set(LengthDistribution.parse("fixed:200").sample(10, 64, 0)) == {64}


@pytest.mark.parametrize("text", ["normal:4:1", "lognormal:48", "uniform:40:20", "fixed:0",
                                  "fixed:2.5", "lognormal:48:0", "uniform:1:2:3", ""])
def test_malformed_length_distributions_name_the_forms(text):
    with pytest.raises(ValueError, match="lognormal|uniform|fixed"):
        LengthDistribution.parse(text)


def test_poisson_arrivals_have_the_asked_rate_and_exponential_gaps():
    times = poisson_arrivals(20_000, rate=500.0, seed=3)
    gaps = np.diff([0.0, *times])
    assert all(g > 0 for g in gaps)
    assert abs(len(times) / times[-1] - 500) < 15
    assert abs(np.std(gaps) / np.mean(gaps) - 1.0) < 0.05  # exponential: CV 1
    with pytest.raises(ValueError):
        poisson_arrivals(3, 0.0, 0)


def test_token_pool_pads_and_masks():
    ids = np.arange(1, 3 * 8 + 1).reshape(3, 8)
    pool = TokenPool({"input_ids": ids, "attention_mask": np.ones((3, 8), dtype=np.int64)})
    batch = pool.pad([4, 0], [3, 5], padded_length=6)
    np.testing.assert_array_equal(batch["input_ids"][0], [9, 10, 11, 0, 0, 0])  # row 4 % 3
    np.testing.assert_array_equal(batch["attention_mask"][1], [1, 1, 1, 1, 1, 0])


# -- the loop on a simulated clock ----------------------------------------------------------
class SimClock:
    """Time passes only by sleeping and by the simulated model."""

    def __init__(self, per_batch: float, per_token: float = 0.0) -> None:
        self.now, self.per_batch, self.per_token = 0.0, per_batch, per_token
        self.shapes: list[tuple[int, int]] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def execute(self, inputs):
        ids = inputs["input_ids"]
        self.shapes.append(ids.shape)
        self.now += self.per_batch + self.per_token * ids.size
        return np.repeat(ids[..., None], 2, axis=-1).astype(np.float32)


def pool16() -> TokenPool:
    return TokenPool({"input_ids": np.arange(1, 16 * 32 + 1).reshape(16, 32)})


def test_offline_batches_everything_and_counts_padding():
    sim = SimClock(per_batch=0.010)
    lengths = [4, 8, 8, 32, 16, 4, 4, 4]
    stats, kept = run(sim.execute, pool16(), lengths, None, BatchPolicy(4, 1.0, "longest"),
                      keep_outputs=[3, 5], clock=sim.clock, sleep=sim.sleep)
    assert stats.completed == 8 and sim.shapes == [(4, 32), (4, 16)]
    assert stats.seconds == pytest.approx(0.020)
    assert stats.throughput == pytest.approx(400.0)
    assert stats.padding_share == pytest.approx(1 - 80 / (128 + 64))
    assert dict(stats.batch_sizes) == {4: 2}
    # request 3 (32 tokens) comes back whole, with its own tokens (pool row 3)
    assert kept[3].shape == (32, 2) and kept[3][0, 0] == 3 * 32 + 1
    assert kept[5].shape == (4, 2)
    # Kept outputs own their data: a view would keep each whole batch output alive, and every
    # later batch would pay for fresh host pages (measured on the H200 host: docs/serving.md).
    assert all(item.base is None and item.flags.owndata for item in kept.values())


def test_server_latency_includes_queueing_and_the_delay_timeout():
    sim = SimClock(per_batch=0.050)
    # Two requests 1 ms apart, max delay 5 ms: one batch leaves at 5 ms, runs 50 ms.
    stats, _ = run(sim.execute, pool16(), [8, 8], [0.0, 0.001], BatchPolicy(4, 0.005, "longest"),
                   clock=sim.clock, sleep=sim.sleep)
    assert sorted(stats.latencies_ms) == pytest.approx([54.0, 55.0])
    # A third request arriving while the model is busy waits for it (queueing counts).
    sim = SimClock(per_batch=0.050)
    stats, _ = run(sim.execute, pool16(), [8, 8, 8], [0.0, 0.001, 0.010],
                   BatchPolicy(2, 0.005, "longest"), clock=sim.clock, sleep=sim.sleep)
    # batch {0,1} full at 1 ms, done at 51 ms; request 2 waits until then, done at 101 ms
    assert sorted(stats.latencies_ms) == pytest.approx([50.0, 51.0, 91.0])


def test_an_overloaded_trial_stops_early():
    sim = SimClock(per_batch=0.010)
    arrivals = [i * 0.001 for i in range(10_000)]  # 1000/s into a model that does 100/s
    stats, _ = run(sim.execute, pool16(), [8] * 10_000, arrivals, BatchPolicy(1, 0.0, "longest"),
                   bound_ms=100, clock=sim.clock, sleep=sim.sleep)
    assert stats.aborted and "already past 100 ms" in stats.aborted
    assert stats.completed < 500


def test_server_keeps_up_below_capacity():
    sim = SimClock(per_batch=0.002, per_token=0.00001)
    arrivals = poisson_arrivals(2000, 100.0, 0)
    lengths = LengthDistribution.parse("lognormal:10:0.5").sample(2000, 32, 0)
    stats, _ = run(sim.execute, pool16(), lengths, arrivals, BatchPolicy(8, 0.005, "buckets"),
                   bound_ms=100, rate=100.0, clock=sim.clock, sleep=sim.sleep)
    assert not stats.aborted and stats.completed == 2000
    assert stats.latency(99) < 20
    assert abs(stats.throughput - 100) < 10


# -- the rate search ------------------------------------------------------------------------
def fake_trial(limit: float, calls: list[float]):
    """A server whose p99 meets the bound exactly below ``limit`` req/s."""

    def trial(rate: float) -> RunStats:
        calls.append(rate)
        p99 = 50.0 if rate <= limit else 500.0
        return RunStats(100, 100, 1.0, [p99] * 100, 100, 100, Counter(),
                        0.0, rate)

    return trial


def test_search_converges_on_the_highest_passing_rate():
    calls: list[float] = []
    found = search_rate(fake_trial(330.0, calls), capacity=1000.0, bound_ms=100, budget_s=60)
    assert found.best_rate is not None and 330 / 1.05 <= found.best_rate <= 330
    assert calls[:2] == [1000.0, 500.0] and len(calls) < 15
    assert found.message == ""


def test_search_goes_above_a_pessimistic_capacity():
    calls: list[float] = []
    found = search_rate(fake_trial(1200.0, calls), capacity=1000.0, bound_ms=100, budget_s=60)
    assert found.best_rate is not None and found.best_rate > 1100


def test_impossible_bound_ends_with_no_rate_and_the_best_tried():
    calls: list[float] = []
    found = search_rate(fake_trial(0.0, calls), capacity=1000.0, bound_ms=100, budget_s=60)
    assert found.best_rate is None
    assert found.message.startswith("no rate meets the bound")
    assert "best rate tried" in found.message
    assert min(calls) == pytest.approx(1000 / 64) and len(calls) == 7


def test_search_stops_at_its_budget():
    ticks = iter(range(1000))
    calls: list[float] = []
    found = search_rate(fake_trial(0.0, calls), capacity=1000.0, bound_ms=100, budget_s=2.5,
                        clock=lambda: float(next(ticks)))
    assert "time budget of 2.5 s" in found.message and "no rate met the bound yet" in found.message
    assert len(calls) == 3


def test_an_unmet_rate_is_never_reported_as_met():
    stats = RunStats(100, 40, 1.0, [1.0] * 40, 0, 0, Counter(), 0.0,
                     5.0, aborted="stopped")
    calls: list[float] = []
    found = search_rate(lambda r: (calls.append(r), stats)[1], capacity=10.0, bound_ms=100,
                        budget_s=60)
    assert found.best_rate is None and math.isinf(RunStats(
        1, 0, 0.0, [], 0, 0, Counter(), 0.0).latency(99))


def test_warm_up_calls_every_shape_once_cheapest_first_within_budget():
    from pytest_xfperf.serving.case import warm_up

    sim = SimClock(per_batch=0.0, per_token=0.001)
    info = warm_up(sim.execute, pool16(), BatchPolicy(3, 0.0, "buckets", (16,)), [5, 30],
                   budget_s=60, clock=sim.clock)
    assert info["shapes"] == info["warmed"] == 6  # batch 1..3 x edges (16, 32)
    assert sim.shapes[0] == (1, 16) and sim.shapes[-1] == (3, 32)
    assert len(set(sim.shapes)) == 6
    sim = SimClock(per_batch=0.0, per_token=0.001)
    info = warm_up(sim.execute, pool16(), BatchPolicy(3, 0.0, "longest"), [5, 7, 30],
                   budget_s=0.02, clock=sim.clock)
    assert info["shapes"] == 9 and info["warmed"] < 9  # the budget stopped it
