"""Issue-8 figures: serving scenarios on one model and backend, and the scheduler's overhead.

    python benchmarks/serving_figures.py overhead
    python benchmarks/serving_figures.py model --model minilm-l6 --backend ort-cpu \\
        --precision int8-dynamic
    python benchmarks/serving_figures.py model --model bert-base --backend ort-cuda \\
        --precision fp16            # on a GPU machine

``overhead`` drives the batcher and the load generator with a model that does nothing (it
returns a preallocated array), offline and at a high Poisson rate, and reports the loop's own
time per request (padding, batching, unbatching, bookkeeping; the no-op call excluded) and the
whole loop's time per request (the no-op call included).

``model`` builds the case like the plugin does (same pipeline and runner) and measures, on one
seeded workload of varied lengths (default lognormal:48:0.6 tokens, at most --seq):
- offline throughput with a single fixed sequence length (padding=fixed) for each batch size
  of --batches, and with dynamic batching (padding to length buckets, and to each batch's
  longest request) at the same maximum batch sizes; padding share of each;
- the server scenario: the highest Poisson rate whose p99 (queueing included) stays within
  --bound ms, with dynamic batching (buckets) at --server-batch;
- the same search with a bound below one request's latency, which must end with "no rate meets
  the bound" within its budget.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pytest_xfperf.baselines.machine import machine_key
from pytest_xfperf.serving.case import WARMUP_SECONDS, serve, warm_up
from pytest_xfperf.serving.config import ServingConfig
from pytest_xfperf.serving.scenarios import BatchPolicy, run
from pytest_xfperf.serving.workload import LengthDistribution, TokenPool, poisson_arrivals
from pytest_xfperf.versions import library_versions


def overhead(requests: int) -> dict[str, Any]:
    import numpy as np

    pool = TokenPool({"input_ids": np.ones((64, 128), dtype=np.int64),
                      "token_type_ids": np.zeros((64, 128), dtype=np.int64)})
    lengths = LengthDistribution.parse("lognormal:48:0.6").sample(requests, 128, 0)
    out_cache: dict[tuple[int, int], Any] = {}

    def noop(inputs: Any) -> Any:
        shape = inputs["input_ids"].shape
        if shape not in out_cache:
            out_cache[shape] = np.zeros((*shape, 4), dtype=np.float32)
        return out_cache[shape]

    figures: dict[str, Any] = {}
    for padding in ("buckets", "longest"):
        for max_batch in (1, 8, 32):
            policy = BatchPolicy(max_batch, 0.002, padding)
            run(noop, pool, lengths[:1000], None, policy)  # warm-up
            offline, _ = run(noop, pool, lengths, None, policy, keep_outputs=range(16))
            rate = 20_000.0
            arrivals = poisson_arrivals(requests, rate, 0)
            server, _ = run(noop, pool, lengths, arrivals, policy, rate=rate)
            figures[f"{padding}/max_batch={max_batch}"] = {
                "offline_scheduler_us_per_request": round(
                    1e6 * offline.scheduler_seconds / offline.completed, 2),
                "offline_total_us_per_request": round(1e6 * offline.seconds / offline.completed,
                                                      2),
                "server_scheduler_us_per_request_at_20k_rps": round(
                    1e6 * server.scheduler_seconds / server.completed, 2),
                "server_p99_ms_at_20k_rps": round(server.latency(99), 3),
            }
    return {"requests": requests, "figures": figures}


def build_runner(model: str, backend: str, precision: str, seq: int) -> tuple[Any, Any]:
    from pytest_xfperf.artifacts.cache import ArtifactCache
    from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
    from pytest_xfperf.backends.catalog import BACKENDS
    from pytest_xfperf.models.builtin import BUILTIN
    from pytest_xfperf.values import Shape

    spec = BUILTIN[model](0)
    info = BACKENDS[backend]
    built = spec.build()
    if backend == "torch-cpu":
        from pytest_xfperf.backends.pytorch import TorchCpuRunner

        return spec, TorchCpuRunner(built)
    if backend == "torch-cuda":
        from pytest_xfperf.backends.torch_cuda import TorchCudaRunner

        return spec, TorchCudaRunner(built, precision, "eager")
    pipeline = ArtifactPipeline(ArtifactCache(Path(".xfperf-cache")), 0)
    assert info.onnx_target is not None
    artifact = pipeline.build(spec, precision, lambda: built, Shape(8, seq), info.onnx_target)
    if backend == "ort-cpu":
        from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner

        return spec, OrtCpuRunner(artifact.path)
    from pytest_xfperf.backends.onnxruntime_cuda import OrtCudaRunner

    return spec, OrtCudaRunner(artifact.path, precision)


def model_figures(args: argparse.Namespace) -> dict[str, Any]:
    spec, runner = build_runner(args.model, args.backend, args.precision, args.seq)
    pool = TokenPool(spec.make_inputs(64, args.seq, 0))
    lengths_text = args.lengths
    distribution = LengthDistribution.parse(lengths_text)
    lengths = distribution.sample(args.requests, args.seq, 0)
    execute = runner.run
    # Every shape once, as the plugin's serving cases do before measuring (see warm_up).
    for padding in args.paddings:
        warm = warm_up(execute, pool, BatchPolicy(max(args.batches), 0.0, padding), lengths,
                       WARMUP_SECONDS)
        print(f"warm-up {padding}: {warm}", file=sys.stderr)
    single = []
    for length in lengths[:50]:  # one request alone, unbatched and unpadded: the floor
        inputs = pool.pad([0], [length], length)
        started = time.perf_counter()
        execute(inputs)
        single.append((time.perf_counter() - started) * 1000)
    offline: dict[str, Any] = {}
    for padding in args.paddings:
        for max_batch in args.batches:
            policy = BatchPolicy(max_batch, args.delay / 1000, padding)
            passes = sorted((run(execute, pool, lengths, None, policy)[0]
                             for _ in range(args.passes)), key=lambda s: s.throughput)
            median = passes[len(passes) // 2]
            offline[f"{padding}/{max_batch}"] = {
                "throughput_rps": round(median.throughput, 2),
                "tokens_per_s": round(median.tokens_per_s, 1),
                "padding_share": round(median.padding_share, 4),
                "passes_rps": [round(p.throughput, 2) for p in passes]}
    figures: dict[str, Any] = {
        "case": f"{args.model}/{args.backend}/{args.precision}", "seq": args.seq,
        "lengths": str(distribution), "requests": args.requests,
        "max_queue_delay_ms": args.delay,
        "single_request_ms": {"min": round(min(single), 3),
                              "median": round(sorted(single)[len(single) // 2], 3)},
        "offline": offline, "runner": runner.settings()}
    if args.offline_only:
        return figures
    best_fixed = max((k for k in offline if k.startswith("fixed/")),
                     key=lambda k: offline[k]["throughput_rps"])
    best_dynamic = max((k for k in offline if not k.startswith("fixed/")),
                       key=lambda k: offline[k]["throughput_rps"])
    config = ServingConfig(distribution, "buckets", (), args.delay, args.requests, args.bound,
                           args.budget, 0, args.trial)
    started = time.perf_counter()
    server = serve("server", execute, pool, args.server_batch, config).details
    server_seconds = time.perf_counter() - started
    impossible_bound = round(min(single) / 2, 3)
    started = time.perf_counter()
    impossible = serve("server", execute, pool, args.server_batch,
                       ServingConfig(distribution, "buckets", (), args.delay, args.requests,
                                     impossible_bound, args.budget, 0, args.trial)).details
    impossible_seconds = time.perf_counter() - started
    return {
        **figures,
        "best_fixed": {"setup": best_fixed, **offline[best_fixed]},
        "best_dynamic": {"setup": best_dynamic, **offline[best_dynamic]},
        "dynamic_vs_fixed": round(offline[best_dynamic]["throughput_rps"]
                                  / offline[best_fixed]["throughput_rps"], 3),
        "server": {"max_batch": args.server_batch, "seconds": round(server_seconds, 1),
                   **server["server"]},
        "impossible_bound": {"bound_ms": impossible_bound,
                             "seconds": round(impossible_seconds, 1),
                             "message": impossible["server"]["message"],
                             "trials": len(impossible["server"]["trials"])},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    ov = sub.add_parser("overhead")
    ov.add_argument("--requests", type=int, default=20_000)
    md = sub.add_parser("model")
    md.add_argument("--model", default="minilm-l6")
    md.add_argument("--backend", default="ort-cpu")
    md.add_argument("--precision", default="int8-dynamic")
    md.add_argument("--seq", type=int, default=128)
    md.add_argument("--lengths", default="lognormal:48:0.6")
    md.add_argument("--requests", type=int, default=400)
    md.add_argument("--passes", type=int, default=3)
    md.add_argument("--batches", type=lambda t: [int(x) for x in t.split(",")],
                    default=[1, 2, 4, 8, 16, 32])
    md.add_argument("--delay", type=float, default=10.0, help="max queue delay, ms")
    md.add_argument("--bound", type=float, default=100.0, help="p99 bound, ms")
    md.add_argument("--budget", type=float, default=90.0, help="server search budget, s")
    md.add_argument("--trial", type=float, default=5.0, help="seconds per server trial")
    md.add_argument("--server-batch", type=int, default=16)
    md.add_argument("--paddings", type=lambda t: t.split(","),
                    default=["fixed", "buckets", "longest"])
    md.add_argument("--offline-only", action="store_true",
                    help="offline figures only (no server search); any --paddings")
    args = parser.parse_args()
    result = overhead(args.requests) if args.what == "overhead" else model_figures(args)
    result.update(machine=machine_key(), versions=library_versions(),
                  date=time.strftime("%Y-%m-%d"))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
