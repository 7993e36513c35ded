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

    python benchmarks/generation_figures.py ab --before DIR --out OUT [--rounds 4]
        [--models llama-small] [--backends ort-cpu] [--precisions fp32,int8-dynamic]
        [--shapes b1p128n32] [--resume]

compares two versions of the plugin on one matrix: the checkout DIR (another commit of this
project) and this one, each loaded first on PYTHONPATH, in real `pytest --xfperf` runs that
alternate (before, after, after, before, ...), with one artifact cache, so that each version
builds its own artifacts once. OUT/summary.json, rewritten after every run, holds every run's
TPOT, TTFT, tokens and the fusions of its ONNX decoder, the machine the reports name, and the
median of after over before per case. With --resume, runs whose reports are already in OUT are
read instead of run again.
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


def plugin_command(matrix: list[str], report: Path, baselines: Path, tests: str = "tests/perf",
                   python: list[str] | None = None) -> list[str]:
    from importlib import metadata

    try:  # installed: pytest loads the plugin by its entry point
        metadata.version("pytest-xfperf")
        load: list[str] = []
    except metadata.PackageNotFoundError:  # a checkout on PYTHONPATH (the GPU machine)
        load = ["-p", "pytest_xfperf.plugin"]
    return [*(python or [sys.executable]), "-m", "pytest", tests, *load,
            "-p", "no:cacheprovider", "-q", "--xfperf", *matrix,
            "--xfperf-baselines", str(baselines), "--xfperf-report", str(report)]


def run_command(command: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(command, cwd=ROOT, check=False, stdout=subprocess.DEVNULL,
                   env={**os.environ, **(env or {})})


def plugin_run(matrix: list[str], report: Path, baselines: Path, tests: str = "tests/perf",
               env: dict[str, str] | None = None) -> list[str]:
    command = plugin_command(matrix, report, baselines, tests)
    run_command(command, env)
    return command


def _cases(report: Path) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in json.loads(report.read_text())["cases"]}


def _generation_figures(case: dict[str, Any]) -> dict[str, Any]:
    """A generative case's figures from its JSON report entry (None where it has none)."""
    metrics = case.get("generation_metrics") or {}
    return {"tpot_ms": metrics.get("tpot_ms"), "ttft_ms": metrics.get("ttft_ms"),
            "accuracy": case.get("accuracy"),
            "first_divergence": (case.get("generation") or {}).get("first_divergence")}


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
            row[name] = {**_generation_figures(case), "speedup": case.get("speedup")}
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


def ab(out: Path, before: Path, rounds: int, matrix: list[str], resume: bool = False) -> None:
    from pytest_xfperf.baselines.machine import cpu_fingerprint

    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    versions = {"before": before.resolve(), "after": ROOT}
    runs: list[dict[str, Any]] = []
    command: list[str] = []
    machine: dict[str, Any] | None = None
    for index in range(rounds):
        order = ("before", "after") if index % 2 == 0 else ("after", "before")
        for version in order:
            report = out / f"{version}_{index}.json"
            path = os.pathsep.join(p for p in (str(versions[version]),
                                               os.environ.get("PYTHONPATH", "")) if p)
            command = plugin_command([*matrix, "--xfperf-cache-dir", str(cache),
                                      "--xfperf-history", "off"], report,
                                     out / f"baselines_{version}",
                                     # -P: the working directory (this checkout) is not put
                                     # first on sys.path, so the version on PYTHONPATH is the
                                     # one imported
                                     python=[sys.executable, "-P"])
            if not (resume and report.is_file()):
                report.unlink(missing_ok=True)
                run_command(command, env={"PYTHONPATH": path})
            if not report.is_file():
                raise SystemExit(f"{version} run {index} wrote no report: {' '.join(command)}")
            machine = json.loads(report.read_text()).get("machine")
            cases = {
                case_id: {**_generation_figures(case), "verdict": case.get("verdict"),
                          "fused": ((case.get("generation") or {}).get("artifact") or {})
                          .get("optimize", {}).get("fused")}
                for case_id, case in _cases(report).items()}
            runs.append({"round": index, "version": version, "cases": cases})
            print(json.dumps(runs[-1]), flush=True)
            # written after every run, so that a run cut short still leaves its figures
            _write_ab_summary(out, before, command, runs, machine, cpu_fingerprint())


def _write_ab_summary(out: Path, before: Path, command: list[str], runs: list[dict[str, Any]],
                      machine: dict[str, Any] | None, cpu: dict[str, Any]) -> None:
    medians: dict[str, dict[str, float]] = {}
    for case_id in sorted({c for r in runs for c in r["cases"]}):
        tpots = {version: [r["cases"][case_id]["tpot_ms"] for r in runs
                           if r["version"] == version
                           and (r["cases"].get(case_id) or {}).get("tpot_ms")]
                 for version in ("before", "after")}
        if tpots["before"] and tpots["after"]:
            before_ms, after_ms = (statistics.median(tpots[v]) for v in ("before", "after"))
            medians[case_id] = {"before_tpot_ms": before_ms, "after_tpot_ms": after_ms,
                                "after_over_before": after_ms / before_ms}
    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "cpu": cpu, "machine": machine, "before": str(before),
               "command": " ".join(command[1:]), "runs": runs, "median_tpot": medians}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cpu_parser = sub.add_parser("cpu")
    cpu_parser.add_argument("--out", type=Path, required=True)
    cpu_parser.add_argument("--rounds", type=int, default=3)
    gpu_parser = sub.add_parser("gpu")
    gpu_parser.add_argument("--out", type=Path, required=True)
    ab_parser = sub.add_parser("ab")
    ab_parser.add_argument("--out", type=Path, required=True)
    ab_parser.add_argument("--before", type=Path, required=True,
                           help="a checkout of the version to compare against")
    ab_parser.add_argument("--rounds", type=int, default=4)
    ab_parser.add_argument("--models", default="llama-small")
    ab_parser.add_argument("--backends", default="ort-cpu")
    ab_parser.add_argument("--precisions", default="fp32,int8-dynamic")
    ab_parser.add_argument("--shapes", default="b1p128n32")
    ab_parser.add_argument("--resume", action="store_true",
                           help="read a run whose report is already in OUT instead of running it "
                                "again (a matrix cut short by a time limit goes on)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    if args.command == "cpu":
        cpu(args.out.resolve(), args.rounds)
    elif args.command == "ab":
        ab(args.out.resolve(), args.before, args.rounds,
           ["--xfperf-models", args.models, "--xfperf-backends", args.backends,
            "--xfperf-precisions", args.precisions, "--xfperf-shapes", args.shapes],
           args.resume)
    else:
        gpu(args.out.resolve())


if __name__ == "__main__":
    main()
