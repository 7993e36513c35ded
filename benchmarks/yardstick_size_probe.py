"""Which CPU yardstick follows which case between processes: the yardstick's working set and
the length of its call.

    python benchmarks/yardstick_size_probe.py --processes 16 --rest 60 --out OUT.json
        [--cache DIR] [--rounds 6] [--block-s 0.25]

Cases, built by the plugin's own pipeline (cached in ``--cache``) and run by its ort-cpu
runner on ONNX Runtime's default threads, input 1x128: ``bert-base`` FP32 and INT8 dynamic
(440 and 110 MB of weights), ``minilm-l6`` FP32 (90 MB) and ``bert-tiny`` FP32 (18 MB).
Candidates, each an MLP of FP32 MatMul and Relu in ONNX Runtime with the shipped yardstick's
session settings (measure/yardstick.py: the case's threads, workers sleeping after a call):

- ``mlp1mb``: the shipped yardstick, 4 layers of 512 x 512 on 64 rows (1 MB of weights,
  under a millisecond a call);
- ``mlp1mb-long``: the same weights on 1,024 rows (16x the arithmetic, the same working set);
- ``stream16mb``: 4 layers of 1,024 x 1,024 on 16 rows (16 MB: inside a 32 MB L3, beyond a
  2 MB L2);
- ``stream64mb``: 4 layers of 2,048 x 2,048 on 16 rows (64 MB, read once a call);
- ``stream256mb``: 4 layers of 4,096 x 4,096 on 16 rows (256 MB).

Each of ``--processes`` fresh processes, ``--rest`` seconds apart, runs ``--rounds`` rounds; a
round times each case in a block of ``--block-s`` (at least 3 calls, one untimed settle call
first, as the gate does), each followed by one block of every candidate a fifth as long (at
least 3 calls), in an order rotated each round. A block's value is the median of its calls.
Printed and written: per case and candidate, the standard deviation over processes of the log
of the process's median case/candidate ratio ("between"; "own" is the case's own time), the
figure that a baseline recorded in one process and a run in another both carry.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES = ("bert-base/fp32", "bert-base/int8-dynamic", "minilm-l6/fp32", "bert-tiny/fp32")
CANDIDATES = {"mlp1mb": (64, 512), "mlp1mb-long": (1024, 512), "stream16mb": (16, 1024),
              "stream64mb": (16, 2048), "stream256mb": (16, 4096)}
LAYERS = 4
Call = Callable[[], object]


def _candidate(rows: int, width: int) -> Call:
    import numpy as np

    from pytest_xfperf.measure.yardstick import cpu_session, mlp_graph

    rng = np.random.default_rng(1234)
    weights = [(rng.standard_normal((width, width)) / width ** 0.5).astype(np.float32)
               for _ in range(LAYERS)]
    graph = mlp_graph(weights, rows, "probe")
    session = cpu_session(graph, 0, spinning=False)
    feeds = {"x": rng.standard_normal((rows, width)).astype(np.float32)}
    outputs = [graph.output[0].name]
    return lambda: session.run(outputs, feeds)


def _cases(cache: Path) -> dict[str, Call]:
    from pytest_xfperf.artifacts.cache import ArtifactCache
    from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
    from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner
    from pytest_xfperf.models.builtin import BUILTIN

    pipeline = ArtifactPipeline(ArtifactCache(cache), seed=0)
    calls: dict[str, Call] = {}
    models: dict[str, Any] = {}
    for case in CASES:
        model_name, precision = case.split("/")
        spec = BUILTIN[model_name](0)
        if model_name not in models:
            models[model_name] = None

        def build(spec: Any = spec, name: str = model_name) -> Any:
            if models[name] is None:
                models[name] = spec.build().eval()
            return models[name]

        runner = OrtCpuRunner(pipeline.build(spec, precision, build).path)
        calls[case] = runner.prepare(spec.make_inputs(1, 128, 0))
    return calls


def _block(call: Call, seconds: float) -> tuple[float, float]:
    """The block's median call and its length in seconds, after one untimed settle call."""
    from yardstick_threads_probe import block_calls

    calls, length = block_calls(call, seconds)
    return statistics.median(calls), length


def one_process(cache: Path, rounds: int, block_s: float) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    cases = _cases(cache)
    sticks = {name: _candidate(*shape) for name, shape in CANDIDATES.items()}
    for call in [*cases.values(), *sticks.values()]:
        for _ in range(3):
            call()
    out: dict[str, Any] = {c: {"own": [], **{s: [] for s in sticks}} for c in cases}
    names = list(sticks)
    for index in range(rounds):
        order = names[index % len(names):] + names[:index % len(names)]
        for case, call in cases.items():
            value, length = _block(call, block_s)
            out[case]["own"].append(value)
            for stick in order:
                out[case][stick].append(_block(sticks[stick], 0.2 * length)[0])
    return out


def _stdev_log(values: list[float]) -> float:
    return statistics.stdev(math.log(v) for v in values) if len(values) > 1 else 0.0


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for case in runs[0]:
        row = {"own": _stdev_log([statistics.median(r[case]["own"]) for r in runs])}
        for stick in CANDIDATES:
            row[stick] = _stdev_log([statistics.median(
                o / s for o, s in zip(r[case]["own"], r[case][stick], strict=True))
                for r in runs])
        table[case] = row
    table["(candidate's own)"] = {
        stick: _stdev_log([statistics.median(r[CASES[0]][stick]) for r in runs])
        for stick in CANDIDATES}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--rest", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block-s", type=float, default=0.25)
    parser.add_argument("--cache", type=Path, default=Path(".xfperf-cache"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_process(args.cache, args.rounds, args.block_s)))
        return
    runs: list[dict[str, Any]] = []
    started = []
    for index in range(args.processes):
        if index:
            time.sleep(args.rest)
        started.append(time.strftime("%H:%M:%S", time.gmtime()))
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--cache", str(args.cache), "--out",
             str(args.out), "--rounds", str(args.rounds), "--block-s", str(args.block_s)],
            capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        medians = {c: round(statistics.median(runs[-1][c]["own"]) * 1e3, 2) for c in CASES}
        print(f"process {index + 1} of {args.processes} ({started[-1]} UTC): {medians}",
              flush=True)
        if len(runs) > 1:
            args.out.write_text(json.dumps({"command": " ".join(sys.argv), "started": started,
                                            "summary": summarize(runs), "runs": runs}) + "\n")
    for case, row in summarize(runs).items():
        print(case, {k: round(v, 3) for k, v in row.items()})


if __name__ == "__main__":
    main()
