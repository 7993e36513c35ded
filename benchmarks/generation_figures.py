"""Generation figures through real `pytest --xfperf` runs.

    python benchmarks/generation_figures.py cpu --out DIR [--rounds 3]

Each round runs `pytest --xfperf` on GPT-2-small geometry, b1p128n32, on torch-cpu FP32 and
ort-cpu FP32 and INT8 dynamic, writing its JSON report. Its test file,
benchmarks/generation_hand_case.py, is a user's perf test plus, for each ONNX Runtime case, a
greedy loop written by hand over the very session the plugin timed, in the same process right
after it. DIR/summary.json holds the figures, the machine's CPU fingerprint, the command and
the date.

    python benchmarks/generation_figures.py gpu --out DIR

runs the shipped perf test on a CUDA machine for the Llama-style geometry in FP16: eager
decoding (torch-cuda) against the captured one (torch-cuda-graph), b1 and b32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CPU_MATRIX = ["--xfperf-models", "gpt2-small", "--xfperf-backends", "torch-cpu,ort-cpu",
              "--xfperf-precisions", "fp32,int8-dynamic", "--xfperf-shapes", "b1p128n32"]
GPU_MATRIX = ["--xfperf-models", "llama-small", "--xfperf-backends",
              "torch-cuda,torch-cuda-graph", "--xfperf-precisions", "fp16",
              "--xfperf-shapes", "b1p128n64,b32p128n64"]


def plugin_run(matrix: list[str], report: Path, baselines: Path, tests: str = "tests/perf",
               env: dict[str, str] | None = None) -> list[str]:
    from importlib import metadata

    try:  # installed: pytest loads the plugin by its entry point
        metadata.version("pytest-xfperf")
        load: list[str] = []
    except metadata.PackageNotFoundError:  # a checkout on PYTHONPATH (the GPU machine)
        load = ["-p", "pytest_xfperf.plugin"]
    command = [sys.executable, "-m", "pytest", tests, *load, "-p", "no:cacheprovider",
               "-q", "--xfperf", *matrix, "--xfperf-baselines", str(baselines),
               "--xfperf-report", str(report)]
    subprocess.run(command, cwd=ROOT, check=False, stdout=subprocess.DEVNULL,
                   env={**os.environ, **(env or {})})
    return command


def _cases(report: Path) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in json.loads(report.read_text())["cases"]}


def cpu(out: Path, rounds: int) -> None:
    from pytest_xfperf.baselines.machine import cpu_fingerprint

    out.mkdir(parents=True, exist_ok=True)
    hand_file = out / "hand.jsonl"
    hand_file.unlink(missing_ok=True)
    rows = []
    command: list[str] = []
    for index in range(rounds):
        report = out / f"plugin_{index}.json"
        command = plugin_run(CPU_MATRIX, report, out / "baselines",
                             "benchmarks/generation_hand_case.py",
                             {"XFPERF_HAND_OUT": str(hand_file)})
        cases = _cases(report)
        hands = [json.loads(line) for line in hand_file.read_text().splitlines()]
        row: dict[str, Any] = {"round": index}
        for name, case_id in (("torch_fp32", "gpt2-small/torch-cpu/fp32/b1p128n32"),
                              ("ort_fp32", "gpt2-small/ort-cpu/fp32/b1p128n32"),
                              ("ort_int8", "gpt2-small/ort-cpu/int8-dynamic/b1p128n32")):
            case = cases.get(case_id, {})
            metrics = case.get("generation_metrics") or {}
            row[name] = {"tpot_ms": metrics.get("tpot_ms"), "ttft_ms": metrics.get("ttft_ms"),
                         "speedup": case.get("speedup"), "accuracy": case.get("accuracy"),
                         "first_divergence": (case.get("generation") or {}).get(
                             "first_divergence")}
            hand = [h for h in hands if h["case"] == case_id]
            if hand:  # this round's line: the last one written for the case
                row[name]["hand"] = hand[-1]["hand"]
                row[name]["plugin_over_hand"] = (metrics["tpot_ms"]
                                                 / hand[-1]["hand"]["tpot_ms"] - 1)
        row["int8_speedup_over_torch"] = (row["torch_fp32"]["tpot_ms"]
                                          / row["ort_int8"]["tpot_ms"])
        rows.append(row)
        print(json.dumps(row), flush=True)

    def median(name: str) -> float:
        return statistics.median(r[name]["plugin_over_hand"] for r in rows)

    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "cpu": cpu_fingerprint(), "command": " ".join(command[1:]), "rounds": rows,
               "median_int8_speedup_over_torch": statistics.median(
                   r["int8_speedup_over_torch"] for r in rows),
               "median_plugin_over_hand": {"ort_fp32": median("ort_fp32"),
                                           "ort_int8": median("ort_int8")}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def gpu(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report = out / "plugin.json"
    command = plugin_run(GPU_MATRIX, report, out / "baselines")
    rows = {case_id: {"generation_metrics": case.get("generation_metrics"),
                      "generation": case.get("generation"), "compute": case.get("compute"),
                      "accuracy": case.get("accuracy"), "verdict": case.get("verdict"),
                      "settings": case.get("settings")}
            for case_id, case in _cases(report).items()}
    summary: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "command": " ".join(command[1:]), "cases": rows}
    eager = rows.get("llama-small/torch-cuda/fp16/b1p128n64")
    graph = rows.get("llama-small/torch-cuda-graph/fp16/b1p128n64")
    if eager and graph:
        summary["b1_eager_over_graph_tpot"] = (eager["generation_metrics"]["tpot_ms"]
                                               / graph["generation_metrics"]["tpot_ms"])
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cpu_parser = sub.add_parser("cpu")
    cpu_parser.add_argument("--out", type=Path, required=True)
    cpu_parser.add_argument("--rounds", type=int, default=3)
    gpu_parser = sub.add_parser("gpu")
    gpu_parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    if args.command == "cpu":
        cpu(args.out.resolve(), args.rounds)
    else:
        gpu(args.out.resolve())


if __name__ == "__main__":
    main()
