"""Does a launch-bound yardstick follow eager PyTorch on a GPU between processes?

An eager GPU call (`torch-cuda`) is paced by the host: its kernels are launched one by one, so
its device time (CUDA events around the call) is mostly the host's launch rate, which moved
0.64x-1.87x between processes on an H200 (docs/gpu.md). The plugin's GPU yardstick (FP16
GEMMs) does not see that rate. This probe asks whether a yardstick of many small launches
does: in each of N fresh processes, BERT-base FP16 eager on the GPU (batch 1 and 32, sequence
128) is timed in the plugin's blocks (measure/blocks.py: 0.25 s case blocks, a settle call,
the block's median by CUDA events), each case block followed by a 0.05 s block of every
candidate yardstick, in rotated order:

- `gemm`: the plugin's GPU yardstick (measure/yardstick.py);
- `launch`: 100 rounds of multiply, add and GELU on a 1 x 128 x 64 FP16 tensor (300 launches);
- `launch-mixed`: the plugin's launch yardstick (`yardstick.cuda_launch`): 50 rounds of a 64 x 64
  linear layer, layer norm and GELU on the same tensor. (The committed figures were taken with
  a copy of it in this script, the same kernels on other random values.)

A process's level in a view is the median over its blocks of log(case) or log(case /
yardstick); printed is the root mean square of the differences between consecutive processes'
levels (what an A/A shift between a baseline's process and a run's would be) per view.

    taskset -c 8-15 python3 benchmarks/launch_yardstick_probe.py --processes 14 --out OUT.json
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

SHAPES = ((1, 128), (32, 128))
BLOCKS = 12
CASE_SECONDS, YARDSTICK_SECONDS = 0.25, 0.05


def _elementwise_launches() -> Callable[[], object]:
    """The candidate that did not ship: 300 elementwise launches."""
    import torch

    generator = torch.Generator(device="cuda").manual_seed(0)
    x, scale, shift = (torch.randn(*shape, device="cuda", dtype=torch.float16,
                                   generator=generator) for shape in ((1, 128, 64), (64,), (64,)))

    def launch() -> object:
        y = x
        for _ in range(100):
            y = torch.nn.functional.gelu(y * scale + shift)
        return y

    return launch


def child() -> dict[str, Any]:
    """One process: every shape's case blocks and the candidates' blocks after each."""
    import torch

    from pytest_xfperf.measure import yardstick
    from pytest_xfperf.measure.blocks import Timed, time_block
    from pytest_xfperf.models.builtin import BUILTIN

    spec = BUILTIN["bert-base"](0)
    model = spec.build().to("cuda", torch.float16).eval()
    gemm, mixed = yardstick.cuda(0), yardstick.cuda_launch(0)
    candidates = {"gemm": Timed(gemm.call, gemm.synchronize, True),
                  "launch": Timed(_elementwise_launches(), torch.cuda.synchronize, True),
                  "launch-mixed": Timed(mixed.call, mixed.synchronize, True)}
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                           "shapes": {}}
    for batch, seq in SHAPES:
        tensors = {k: torch.from_numpy(v).to("cuda")
                   for k, v in spec.make_inputs(batch, seq, 0).items()}

        def forward(tensors: dict[str, Any] = tensors) -> object:
            with torch.inference_mode():
                return model(**tensors)

        case = Timed(forward, torch.cuda.synchronize, True)
        for target in (case, *candidates.values()):
            for _ in range(5):
                target.call()
            torch.cuda.synchronize()
        names = list(candidates)
        blocks: dict[str, list[float]] = {"case": [], **{n: [] for n in names}}
        for block in range(BLOCKS):
            _, device = time_block(case, 3, CASE_SECONDS, 4 * CASE_SECONDS, settle=1)
            blocks["case"].append(statistics.median(device))
            for name in names[block % len(names):] + names[:block % len(names)]:
                _, device = time_block(candidates[name], 3, YARDSTICK_SECONDS,
                                       4 * CASE_SECONDS, settle=1)
                blocks[name].append(statistics.median(device))
        out["shapes"][f"b{batch}s{seq}"] = blocks
    return out


def levels(process: dict[str, Any], shape: str) -> dict[str, float]:
    """The process's level in each view: median over blocks of log(case [/ yardstick])."""
    blocks = process["shapes"][shape]
    case = blocks["case"]
    views = {"own": statistics.median(math.log(c) for c in case)}
    for name, values in blocks.items():
        if name != "case":
            views[f"/ {name}"] = statistics.median(math.log(c / y)
                                                   for c, y in zip(case, values, strict=True))
    return views


def summarize(processes: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for shape in processes[0]["shapes"]:
        per_process = [levels(p, shape) for p in processes]
        views: dict[str, Any] = {}
        for view in per_process[0]:
            series = [p[view] for p in per_process]
            steps = [b - a for a, b in zip(series, series[1:], strict=False)]
            views[view] = {
                "rms_consecutive": math.sqrt(statistics.fmean(s * s for s in steps)),
                "range_x": math.exp(max(series) - min(series)),
                "case_ms_median": math.exp(statistics.median(
                    p["own"] for p in per_process)) if view == "own" else None}
        summary[shape] = views
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=14)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child()))
        return
    processes: list[dict[str, Any]] = []
    started = time.time()
    for index in range(args.processes):
        done = subprocess.run([sys.executable, __file__, "--child"], capture_output=True,
                              text=True, check=True)
        processes.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"process {index + 1}/{args.processes} at {time.time() - started:.0f} s",
              flush=True)
        if args.out and len(processes) > 1:  # kept whole after each process
            args.out.write_text(json.dumps({"started": started, "processes": processes,
                                            "summary": summarize(processes)}, indent=1))
    summary = summarize(processes)
    for shape, views in summary.items():
        for view, figures in views.items():
            print(f"{shape} {view:14s} rms of consecutive steps {figures['rms_consecutive']:.3f}"
                  f"  range {figures['range_x']:.2f}x")


if __name__ == "__main__":
    main()
