"""ONNX Runtime's CUDA provider options, one at a time, on the plugin's own FP16 artifact and
runner (what `[tool.xfperf.ort-cuda] provider_options` passes through).

    python benchmarks/ort_cuda_options.py --out DIR [--model bert-base] [--rounds 300]

For each variant and batch 1 and 32 (seq 128) it opens the plugin's ``OrtCudaRunner`` with the
variant's options, prepares the plugin's inputs and times ``--rounds`` calls twice: the way the
plugin's blocks time them (CUDA events around each call, wall clock around the whole) and the
way a hand loop does (the call, then ``torch.cuda.synchronize``). Each variant's output is
compared with the default's (cosine), so an option that changes the numbers shows. The default
runs first and last: the difference between those two is the run's own noise. Writes
``DIR/ort_cuda_options.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

# (name, ort-cuda-graph?, provider options). sdpa_kernel is a bit mask of ONNX Runtime's
# attention kernels: 1 flash, 2 memory-efficient (cutlass), 4 TensorRT fused, 8 cuDNN flash,
# 16 unfused (math).
VARIANTS: tuple[tuple[str, bool, dict[str, str]], ...] = (
    ("default", False, {}),
    ("sdpa_kernel=1 flash", False, {"sdpa_kernel": "1"}),
    ("sdpa_kernel=2 efficient", False, {"sdpa_kernel": "2"}),
    ("sdpa_kernel=4 trt-fused", False, {"sdpa_kernel": "4"}),
    ("sdpa_kernel=8 cudnn-flash", False, {"sdpa_kernel": "8"}),
    ("sdpa_kernel=16 math", False, {"sdpa_kernel": "16"}),
    ("skip_layer_norm_strict", False, {"enable_skip_layer_norm_strict_mode": "1"}),
    ("unified_stream", False, {"use_ep_level_unified_stream": "1"}),
    ("copy_in_default_stream=0", False, {"do_copy_in_default_stream": "0"}),
    ("tunable_op", False, {"tunable_op_enable": "1", "tunable_op_tuning_enable": "1"}),
    ("cuda_graph", True, {}),
    ("cuda_graph sdpa_kernel=1", True, {"sdpa_kernel": "1"}),
    ("cuda_graph sdpa_kernel=4", True, {"sdpa_kernel": "4"}),
    ("default again", False, {}),
)


def time_variant(path: Path, graph: bool, extra: dict[str, str], inputs: dict[str, Any],
                 rounds: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from pytest_xfperf.backends.onnxruntime_cuda import OrtCudaRunner
    from pytest_xfperf.measure.blocks import Timed, time_block

    started = time.perf_counter()
    runner = OrtCudaRunner(path, "fp16", cuda_graph=graph, options={"provider_options": extra})
    call = runner.prepare(inputs)
    opened_s = time.perf_counter() - started
    for _ in range(20):
        call()
    runner.synchronize()
    wall, device = time_block(Timed(call, runner.synchronize, device=True), rounds, 0.0, 60.0)
    hand = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        torch.cuda.synchronize()
        hand.append((time.perf_counter() - t0) * 1000)
    output = np.asarray(runner.run(inputs), dtype=np.float32)
    settings = runner.settings()
    runner.close()
    return {"plugin_wall_p50_ms": round(statistics.median(wall), 4),
            "device_p50_ms": round(statistics.median(device), 4),
            "hand_p50_ms": round(statistics.median(hand), 4),
            "open_and_capture_s": round(opened_s, 2), "cuda_graph": settings["cuda_graph"],
            "output": output}


def cosine(a: Any, b: Any) -> float:
    """The plugin's own accuracy comparison, over every element."""
    import numpy as np

    from pytest_xfperf.accuracy import compare

    return compare(a, b, np.ones(a.shape, dtype=bool))["cosine"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--cache-dir", type=Path, default=Path(".xfperf-cache"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    from pytest_xfperf.artifacts.cache import ArtifactCache
    from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
    from pytest_xfperf.models.builtin import BUILTIN
    from pytest_xfperf.values import Shape
    from pytest_xfperf.versions import library_versions

    spec = BUILTIN[args.model](0)
    model = spec.build()
    artifact = ArtifactPipeline(ArtifactCache(args.cache_dir), seed=0).build(
        spec, "fp16", lambda: model, Shape(1, 128), "gpu")
    rows: list[dict[str, Any]] = []
    reference: dict[int, Any] = {}
    for name, graph, extra in VARIANTS:
        for batch in (1, 32):
            inputs = spec.make_inputs(batch, 128, 0)
            row: dict[str, Any] = {"variant": name, "batch": batch, "cuda_graph_asked": graph,
                                   "provider_options": extra}
            try:
                timed = time_variant(artifact.path, graph, extra, inputs, args.rounds)
            except Exception as exc:  # noqa: BLE001 - an option ORT refuses is a finding
                row["error"] = f"{type(exc).__name__}: {exc}"[:400]
            else:
                output = timed.pop("output")
                reference.setdefault(batch, output)
                row.update(timed, cosine_vs_default=round(cosine(output, reference[batch]), 6),
                           samples_per_s=round(batch * 1000 / timed["plugin_wall_p50_ms"], 1))
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"model": args.model, "seq": 128, "rounds": args.rounds,
              "gpu": torch.cuda.get_device_name(), "versions": library_versions(),
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    (args.out / "ort_cuda_options.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
