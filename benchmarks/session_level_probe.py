"""Does a new ONNX Runtime session draw the process's level again?

An unchanged case's level moves between processes (the gate's spreads), and blocks of one
process cannot show it. If most of that move is drawn when the session is created (where its
weights and buffers land, which cores its workers take), a run could draw it several times
within one process by timing its blocks across several sessions. If it is the host's state
while the blocks run, it cannot.

Each of PROCESSES child processes creates SESSIONS sessions of the power benchmark's encoder
(20 layers, hidden 128, ort-cpu FP32 through the plugin's own pipeline and runner, batch 1 x
128) one after another, each with a new yardstick session, and times BLOCKS blocks of each
with the plugin's own block timing (`measure/blocks.py`, the shipped plan). A session's level
is the median of the log of its block values, own and divided by the yardstick. The output
splits the variance of those levels into a part between processes and a part between
sessions of one process; the latter includes the blocks' own scatter, estimated from the
halves of each session's blocks. With ``--same-session`` (the control) each process creates
one session of each and times it in SESSIONS segments of BLOCKS blocks: time alone separates
the segments. docs/measurements.md has the figures ("What the process's level is").

    python benchmarks/session_level_probe.py --processes 12 --sessions 6 [--same-session] \
        --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LAYERS, WIDTH, HEADS = 20, 128, 2


def _spec() -> Any:
    from power_encoder import build_encoder, encoder_inputs  # the power benchmark's encoder

    from pytest_xfperf import ModelSpec

    return ModelSpec(name="enc", build=lambda: build_encoder(LAYERS, WIDTH, HEADS),
                     make_inputs=encoder_inputs, identity=f"enc-{LAYERS}",
                     family="bert", num_layers=LAYERS, num_heads=HEADS, hidden_size=WIDTH)


def _artifact(cache_dir: Path) -> Path:
    from pytest_xfperf.artifacts.cache import ArtifactCache
    from pytest_xfperf.artifacts.pipeline import ArtifactPipeline

    spec = _spec()
    return ArtifactPipeline(ArtifactCache(cache_dir), seed=0).build(
        spec, "fp32", spec.build).path


def _child(model: Path, sessions: int, blocks: int, same_session: bool
           ) -> list[dict[str, Any]]:
    from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner
    from pytest_xfperf.baselines.rule import GatePolicy
    from pytest_xfperf.measure.blocks import BlockPlan, Series, Timed, measure
    from pytest_xfperf.measure.case import make_yardstick
    from pytest_xfperf.measure.timing import TimingPolicy

    plan = BlockPlan.of(TimingPolicy(), GatePolicy())
    feeds = _spec().make_inputs(1, 128, 0)
    out = []
    runner, yardstick = None, None
    for _ in range(sessions):
        if runner is None or not same_session:
            if yardstick is not None:
                yardstick.close()
            runner = OrtCpuRunner(model)
            yardstick = make_yardstick("ort-cpu", {})
        assert yardstick is not None
        series = Series(clock="wall")
        measure(series, Timed(runner.prepare(feeds), lambda: None),
                Timed(yardstick.call, yardstick.synchronize), plan, blocks)
        out.append({"case_ms": series.case_ms, "yardstick_ms": series.yardstick_ms})
    if yardstick is not None:
        yardstick.close()
    return out


def _level(values: list[float]) -> float:
    return statistics.median(math.log(v) for v in values)


def _views(session: dict[str, Any]) -> dict[str, list[float]]:
    case, yard = session["case_ms"], session["yardstick_ms"]
    return {"own": case, "divided": [c / y for c, y in zip(case, yard, strict=True)]}


def analyze(processes: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Variance components of the session levels, per view (logs)."""
    out: dict[str, Any] = {}
    for view in ("own", "divided"):
        levels = [[_level(_views(s)[view]) for s in p] for p in processes]
        means = [statistics.fmean(p) for p in levels]
        sessions = len(levels[0])
        within = statistics.fmean(statistics.variance(p) for p in levels)
        between_means = statistics.variance(means)
        # Var(process mean) = between + within / sessions.
        between = max(0.0, between_means - within / sessions)
        halves = []  # a session's level from its even blocks against its odd ones
        for p in processes:
            for s in p:
                values = _views(s)[view]
                halves.append(_level(values[0::2]) - _level(values[1::2]))
        blocks_part = statistics.fmean(h * h for h in halves) / 4  # Var(level) of the blocks
        out[view] = {
            "process_levels": [round(m, 4) for m in means],
            "sd_between_processes": round(math.sqrt(between), 4),
            "sd_between_sessions_of_a_process": round(math.sqrt(within), 4),
            "sd_of_a_level_from_its_blocks": round(math.sqrt(blocks_part), 4),
            "sd_sessions_beyond_blocks": round(math.sqrt(max(0.0, within - blocks_part)), 4),
        }
    return out


def _machine() -> dict[str, Any]:
    from pytest_xfperf.baselines.machine import cpu_fingerprint, machine_key

    return {"cpu": cpu_fingerprint(), "key": machine_key(), "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=12)
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--same-session", action="store_true",
                        help="the control: one session per process, timed in SESSIONS "
                             "segments of BLOCKS blocks (what changes is time alone)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.sessions, args.blocks, args.same_session)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = _artifact(Path(tmp) / "cache")
        processes = []
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        for i in range(args.processes):
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(model), "--sessions",
                 str(args.sessions), "--blocks", str(args.blocks)]
                + (["--same-session"] if args.same_session else []),
                check=True, capture_output=True, text=True)
            processes.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"process {i + 1}/{args.processes} done", file=sys.stderr)
    result = {"started": started, "machine": _machine(), "processes": args.processes,
              "same_session": args.same_session,
              "sessions": args.sessions, "blocks": args.blocks,
              "components": analyze(processes), "raw": processes}
    print(json.dumps(result["components"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
