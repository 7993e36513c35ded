"""Why PyTorch eager, the CPU speed-up's reference, moves between processes on a small host.

    python benchmarks/reference_probe.py --processes 8 --out OUT.json

Each process builds the power benchmark's encoder (BERT-shaped, hidden 128, 20 layers,
seeded random weights, input 1x128), then times PyTorch eager in blocks of ``--block-s``
seconds (a block's value is the median of its calls), in one of three settings, taken in
turn process by process:

- ``alone``: PyTorch only; ONNX Runtime is not imported;
- ``yardstick``: each PyTorch block followed by a block of the plugin's CPU yardstick
  (``measure.yardstick.cpu``), as the gate times a case: its ONNX Runtime threads sleep as
  soon as a run ends (``session.intra_op.allow_spinning = 0``);
- ``yardstick, spinning``: the same with ONNX Runtime's default, threads that spin on after a
  run, waiting for the next.

Per process it reports the median block value, the spread of block values (standard deviation
of their logarithm) and how much slower a block's first call is than the block's median (the
yardstick's threads, if still spinning, hold a core through it); across processes, the spread
of the per-process medians: the figure that a baseline recorded in one process and a run in
another both carry.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from typing import Any

SETTINGS = ("alone", "yardstick", "yardstick, spinning")


def _spread(values: list[float]) -> float:
    logs = [math.log(v) for v in values]
    return statistics.stdev(logs) if len(logs) > 1 else 0.0


def one_process(setting: str, blocks: int, block_s: float) -> dict[str, Any]:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    geometry: dict[str, Any] = {"hidden_size": 128, "num_hidden_layers": 20,
                                "num_attention_heads": 2, "intermediate_size": 512,
                                "vocab_size": 2000, "attn_implementation": "eager"}
    config = BertConfig(**geometry)  # the power benchmark's encoder
    model: Any = BertModel(config)
    model.eval()
    ids = torch.randint(1, 2000, (1, 128), generator=torch.Generator().manual_seed(0))
    feeds = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def case() -> None:
        with torch.inference_mode():
            model(**feeds)

    yard = None
    if setting != "alone":
        from pytest_xfperf.measure import yardstick

        if setting == "yardstick, spinning":
            quiet = yardstick.cpu_session

            def spinning(graph: Any, threads: int, spinning: bool = True) -> Any:
                return quiet(graph, threads, spinning=True)

            yardstick.cpu_session = spinning  # type: ignore[assignment]
        yard = yardstick.cpu(0)
    for _ in range(5):
        case()
    case_blocks, yard_blocks, first_ratios = [], [], []
    for _ in range(blocks):
        calls: list[float] = []
        started = time.perf_counter()
        while time.perf_counter() - started < block_s or len(calls) < 3:
            t0 = time.perf_counter()
            case()
            calls.append((time.perf_counter() - t0) * 1000)
        case_blocks.append(statistics.median(calls))
        first_ratios.append(calls[0] / statistics.median(calls[1:]))
        if yard is not None:
            y_calls: list[float] = []
            started = time.perf_counter()
            while time.perf_counter() - started < block_s / 5 or len(y_calls) < 3:
                t0 = time.perf_counter()
                yard.call()
                y_calls.append((time.perf_counter() - t0) * 1000)
            yard_blocks.append(statistics.median(y_calls))
    return {"setting": setting, "torch_threads": torch.get_num_threads(),
            "case_ms": [round(v, 3) for v in case_blocks],
            "case_median_ms": round(statistics.median(case_blocks), 3),
            "case_spread": round(_spread(case_blocks), 4),
            "first_call_ratio": round(statistics.median(first_ratios), 3),
            "yardstick_ms": [round(v, 4) for v in yard_blocks]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=8, help="processes per setting")
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--block-s", type=float, default=0.25)
    parser.add_argument("--out", required=True)
    parser.add_argument("--child", choices=SETTINGS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_process(args.child, args.blocks, args.block_s)))
        return
    runs: list[dict[str, Any]] = []
    for index in range(args.processes):
        for setting in SETTINGS:
            done = subprocess.run([sys.executable, __file__, "--child", setting, "--blocks",
                                   str(args.blocks), "--block-s", str(args.block_s),
                                   "--out", "-"], capture_output=True, text=True, check=True)
            run = json.loads(done.stdout.strip().splitlines()[-1])
            run["process"] = index
            print(json.dumps({k: run[k] for k in ("process", "setting", "case_median_ms",
                                                  "case_spread", "first_call_ratio")}),
                  flush=True)
            runs.append(run)
    summary = {}
    for setting in SETTINGS:
        medians = [r["case_median_ms"] for r in runs if r["setting"] == setting]
        summary[setting] = {"process_medians_ms": medians,
                            "between_processes_spread": round(_spread(medians), 4),
                            "max_over_min": round(max(medians) / min(medians), 3),
                            "within_process_spread_median": round(statistics.median(
                                r["case_spread"] for r in runs if r["setting"] == setting), 4),
                            "first_call_ratio_median": round(statistics.median(
                                r["first_call_ratio"] for r in runs
                                if r["setting"] == setting), 3)}
    from pytest_xfperf.baselines.machine import cpu_fingerprint

    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_fingerprint(),
              "summary": summary, "runs": runs}
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
