"""The measure and accuracy steps of an offline or server case (the harness judges it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_xfperf.accuracy import DEFAULT_THRESHOLDS, compare, violations
from pytest_xfperf.measure import machine_state
from pytest_xfperf.serving.case import serve
from pytest_xfperf.serving.scenarios import BatchPolicy, run
from pytest_xfperf.serving.workload import TokenPool

if TYPE_CHECKING:
    from pytest_xfperf.harness import CaseHarness
    from pytest_xfperf.result import Result

# Distinct token rows the requests of a serving workload draw from (see serving/workload.py).
POOL_ROWS = 64
ACCURACY_ONLY_REQUESTS = 16  # --benchmark-disable: a short accuracy-only pass, no load


def serve_case(harness: CaseHarness, result: Result) -> None:
    """A seeded workload of varied lengths through the dynamic batcher on the case's runner;
    its figures are gated by thresholds."""
    runner, case, session = harness.runner, harness.case, harness.session
    assert runner is not None
    settings = session.settings
    config = settings.serving
    pool = TokenPool(harness.spec.make_inputs(POOL_ROWS, case.shape.seq, settings.seed))
    result.machine_state = machine_state.snapshot()
    with session.device_lock(case.backend):
        if settings.timing_disabled:
            lengths = config.lengths.sample(ACCURACY_ONLY_REQUESTS, case.shape.seq, config.seed)
            policy = BatchPolicy(case.shape.batch, 0.0, config.padding, config.buckets)
            _, kept = run(runner.run, pool, lengths, None, policy,
                          keep_outputs=range(len(lengths)))
        else:
            outcome = serve(case.scenario, runner.run, pool, case.shape.batch, config,
                            session.progress(case.id))
            kept, lengths = outcome.kept, outcome.lengths
            result.serving = outcome.details
            result.serving_metrics = outcome.metrics
            result.bound_unmet = outcome.bound_unmet
    harness.finish_memory(result)
    check_request_accuracy(harness, result, pool, kept, lengths)


def check_request_accuracy(harness: CaseHarness, result: Result, pool: Any,
                           kept: dict[int, Any], lengths: list[int]) -> None:
    """Each kept request's unbatched output against the same backend's output for that
    request alone, unpadded: what batching changes (padding, masks, unbatching order, and
    dynamic INT8's scales, which it takes from the whole padded batch). The precision's own
    drop against FP32 is the single-stream case's check."""
    import numpy as np

    runner = harness.runner
    assert runner is not None
    if not kept:
        return
    outputs, alone_outputs = [], []
    for request_id, output in sorted(kept.items()):
        length = lengths[request_id]
        alone = runner.run(pool.pad([request_id], [length], length))[0]
        if alone.ndim == 2:  # per token: the request's own rows
            alone = alone[:length]
        outputs.append(np.asarray(output, dtype=np.float32).reshape(alone.shape))
        alone_outputs.append(np.asarray(alone, dtype=np.float32))
    joined = np.concatenate([o.reshape(-1) for o in outputs])
    expected = np.concatenate([r.reshape(-1) for r in alone_outputs])
    result.accuracy = compare(joined, expected, np.ones(joined.shape, dtype=bool))
    if result.serving:
        result.serving["accuracy_versus"] = "same backend, each request alone, unpadded"
    precision = harness.case.precision
    thresholds = DEFAULT_THRESHOLDS.get(precision, DEFAULT_THRESHOLDS["fp32"])
    problems = [p.replace(" vs FP32", "") for p in violations(result.accuracy, thresholds)]
    why = (" (dynamic INT8 takes its activation scales from the whole padded batch, so "
           "batch-mates and padding change each request's result)"
           if precision == "int8-dynamic" else "")
    result.accuracy_problems = [f"batched vs the same request alone: {p}{why}"
                                for p in problems]
