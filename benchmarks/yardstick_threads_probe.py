"""Which CPU yardstick follows the host and not itself: its threads and spinning.

    python benchmarks/yardstick_threads_probe.py --processes 12 --out OUT.json
        [--variants quiet2,quiet1] [--case-threads 2] [--case-spinning] [--rounds 8]
        [--block-s 0.25]

Each of ``--processes`` fresh processes loads one ONNX export of the power benchmark's encoder
(BERT-shaped, hidden 128, 20 layers, input 1x128; exported once, by the parent) in ONNX
Runtime on ``--case-threads`` threads, as the plugin's ort-cpu case does (its workers stop
spinning when a call returns; ``--case-spinning``: they spin on, ONNX Runtime's default), and
builds the plugin's CPU yardstick (the MLP of measure/yardstick.py) in each variant:
``quiet2`` (two threads that sleep after a call), ``spin2`` (two threads, ONNX Runtime's
default spinning), ``stop2`` (two threads that spin within a call and stop when it returns:
ONNX Runtime's ``session.force_spinning_stop``), ``quiet1``, ``spin1`` and ``stop1`` (one
thread). Then, ``--rounds`` times, for each variant in turn: a block of the case
(``--block-s``, a block's value the median of its calls, one untimed call first as the gate's
settle call), then a block of that variant a fifth as long. Printed and written per variant:
the spread (standard deviation of the log) of the case's blocks, of the yardstick's and of
their ratio within a process (mean over processes), and of the per-process medians between
processes: the figure a baseline recorded in one process and a run in another both carry.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("quiet2", "spin2", "stop2", "quiet1", "spin1", "stop1")


def export(path: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(hidden_size=128, num_hidden_layers=20, num_attention_heads=2,
                        intermediate_size=512, vocab_size=2000, attn_implementation="eager")
    model = BertModel(config).eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=ids, attention_mask=mask).last_hidden_state

    ids = torch.randint(1, 2000, (1, 128))
    torch.onnx.export(Hidden(), (ids, torch.ones_like(ids)), str(path), dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=["out"],
                      opset_version=17)


def block_calls(call: Callable[[], object], seconds: float) -> tuple[list[float], float]:
    """One block as the gate times it: an untimed settle call, then calls for ``seconds`` and
    at least three; each call's seconds, and the block's length after the settle call."""
    call()
    calls: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(calls) < 3:
        t0 = time.perf_counter()
        call()
        calls.append(time.perf_counter() - t0)
    return calls, time.perf_counter() - started


def one_process(model: str, variants: list[str], case_threads: int, case_spinning: bool,
                rounds: int, block_s: float) -> dict[str, list[tuple[float, float]]]:
    import numpy as np
    import onnxruntime as ort

    sys.path.insert(0, str(ROOT))
    from pytest_xfperf.backends.onnxruntime_cpu import session_options
    from pytest_xfperf.measure import yardstick

    options, _ = session_options({"intra_op_threads": case_threads,
                                  "spin_between_calls": case_spinning})
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(1, 2000, (1, 128)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    sticks: dict[str, Any] = {}
    quiet_session = yardstick.cpu_session
    for variant in variants:
        mode, threads = variant[:-1], int(variant[-1])

        def session_for(graph: Any, _threads: int, spinning: bool = True,
                        _mode: str = mode, _n: int = threads) -> Any:
            return quiet_session(graph, _n, spinning=_mode != "quiet",
                                 stop_after_run=_mode == "stop")

        yardstick.cpu_session = session_for  # type: ignore[assignment]
        sticks[variant] = yardstick.cpu(threads)
    yardstick.cpu_session = quiet_session  # type: ignore[assignment]
    for _ in range(5):
        session.run(None, feeds)

    def block(call: Any, seconds: float) -> float:
        return statistics.median(block_calls(call, seconds)[0])

    out: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            case = block(lambda: session.run(None, feeds), block_s)
            out[variant].append((case, block(sticks[variant].call, block_s * 0.2)))
    return out


def _spread(values: list[float]) -> float:
    logs = [math.log(v) for v in values]
    return statistics.stdev(logs) if len(logs) > 1 else 0.0


def summarize(runs: list[dict[str, list[tuple[float, float]]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for variant in runs[0]:
        pairs = [run[variant] for run in runs]
        out[variant] = {
            "case_within": statistics.fmean(_spread([c for c, _ in p]) for p in pairs),
            "yardstick_within": statistics.fmean(_spread([y for _, y in p]) for p in pairs),
            "ratio_within": statistics.fmean(_spread([c / y for c, y in p]) for p in pairs),
            "own_between": _spread([statistics.median(c for c, _ in p) for p in pairs]),
            "ratio_between": _spread([statistics.median(c / y for c, y in p) for p in pairs]),
            "yardstick_ms": [round(statistics.median(y for _, y in p) * 1e3, 3) for p in pairs],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=12)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--case-threads", type=int, default=2)
    parser.add_argument("--case-spinning", action="store_true")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block-s", type=float, default=0.25)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; valid: {', '.join(VARIANTS)}")
    if args.child:
        print(json.dumps(one_process(args.child, variants, args.case_threads,
                                     args.case_spinning, args.rounds, args.block_s)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "encoder.onnx"
        export(model)
        runs = []
        for index in range(args.processes):
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(model), "--out", str(args.out),
                 "--variants", ",".join(variants), "--case-threads", str(args.case_threads),
                 *(["--case-spinning"] if args.case_spinning else []),
                 "--rounds", str(args.rounds), "--block-s", str(args.block_s)],
                capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"process {index + 1} of {args.processes}", flush=True)
    summary = summarize(runs)
    for variant, figures in summary.items():
        print(variant, {k: (round(v, 3) if isinstance(v, float) else v)
                        for k, v in figures.items()})
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "summary": summary,
                                    "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
