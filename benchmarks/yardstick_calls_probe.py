"""The yardstick's calls right after a case's block: what the case's threads leave behind.

    python benchmarks/yardstick_calls_probe.py [--case ort|torch] [--case-spinning]
        [--pause-ms 0] [--rounds 12] [--block-s 0.25] [--json OUT.json]

In one process: the power benchmark's encoder (hidden 128, 20 layers, input 1x128) as an
``ort-cpu`` case (the plugin's session options, 2 threads; ``--case-spinning``: its workers
spin on after a call, ONNX Runtime's default) or as eager PyTorch (``--case torch``), and the
plugin's CPU yardstick on 2 threads. ``--rounds`` times: a block of the case (``--block-s``),
a pause of ``--pause-ms``, then a yardstick block a fifth as long, each block after one
untimed call as the gate takes them. Printed: per round the case's median, the yardstick's
median and its first six calls in ms; then the standard deviation of the log of the case's
block medians, of the yardstick's, and of their ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _case(kind: str, spinning: bool, tmp: Path) -> Callable[[], object]:
    import numpy as np

    if kind == "torch":
        import torch
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        model = BertModel(BertConfig(hidden_size=128, num_hidden_layers=20,
                                     num_attention_heads=2, intermediate_size=512,
                                     vocab_size=2000)).eval()
        ids = torch.randint(1, 2000, (1, 128))

        def call() -> object:
            with torch.inference_mode():
                return model(input_ids=ids)
        return call
    import onnxruntime as ort
    from yardstick_threads_probe import export

    from pytest_xfperf.backends.onnxruntime_cpu import session_options

    path = tmp / "encoder.onnx"
    export(path)
    options, _ = session_options({"intra_op_threads": 2, "spin_between_calls": spinning})
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(1, 2000, (1, 128)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    return lambda: session.run(None, feeds)


def _sd_log(values: list[float]) -> float:
    return statistics.stdev(math.log(v) for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("ort", "torch"), default="ort")
    parser.add_argument("--case-spinning", action="store_true")
    parser.add_argument("--pause-ms", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--block-s", type=float, default=0.25)
    parser.add_argument("--json")
    args = parser.parse_args()
    from yardstick_threads_probe import block_calls

    from pytest_xfperf.measure import yardstick

    with tempfile.TemporaryDirectory() as tmp:
        case = _case(args.case, args.case_spinning, Path(tmp))
        stick = yardstick.cpu(2)
        for _ in range(5):
            case()
            stick.call()
        rounds: list[dict[str, Any]] = []
        for _ in range(args.rounds):
            case_calls = [t * 1e3 for t in block_calls(case, args.block_s)[0]]
            time.sleep(args.pause_ms / 1e3)
            stick_calls = [t * 1e3 for t in block_calls(stick.call, args.block_s * 0.2)[0]]
            rounds.append({"case_ms": statistics.median(case_calls),
                           "yardstick_ms": statistics.median(stick_calls),
                           "yardstick_first_ms": [round(v, 3) for v in stick_calls[:6]]})
    for r in rounds:
        print(f"{r['case_ms']:7.2f} {r['yardstick_ms']:6.3f}  {r['yardstick_first_ms']}")
    cases = [r["case_ms"] for r in rounds]
    sticks = [r["yardstick_ms"] for r in rounds]
    summary = {"case": _sd_log(cases), "yardstick": _sd_log(sticks),
               "ratio": _sd_log([c / y for c, y in zip(cases, sticks, strict=True)])}
    print("sd of the log:", {k: round(v, 3) for k, v in summary.items()})
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "summary": summary,
                                               "rounds": rounds}, indent=1) + "\n")


if __name__ == "__main__":
    main()
