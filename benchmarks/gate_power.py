"""Power of the gate as users see it: real `pytest --xfperf` runs of a user-registered model.

A temporary project registers COPIES identical copies of a BERT-shaped encoder (seeded random
weights, hidden 128, 20 layers) through the `pytest_xfperf_models` hook, each gated on its
own on ort-cpu FP32 at the shipped defaults, with a 10 % tolerance. Its baselines are
recorded at 20 layers, then runs at other layer counts are gated against them; every run
changes the model the way users do (its config), so PyTorch eager, the speed-up's reference,
changes with it. Levels are interleaved run by run, and the baselines are recorded again
every RECORD_EVERY runs, so that the state of the host when a baseline was recorded counts
in the figures.

    python benchmarks/gate_power.py measure --minutes 30 --raw RAW.json
    python benchmarks/gate_power.py measure --profile gpu --minutes 8 --raw RAW.json
    python benchmarks/gate_power.py analyze --raw RAW.json [--json OUT.json]
    python benchmarks/gate_power.py replay --raw RAW.json [--runs FIRST:END] [--spread-own S]
        [--spread-normalized S] [--json OUT.json]
    python benchmarks/gate_power.py spreads RAW.json [RAW.json ...]
    python benchmarks/gate_power.py sweep RAW.json [RAW.json ...] --policy confidence=0.9
        [--policy spread_wall_normalized=0.026,confidence=0.9 ...] [--json OUT.json]
    python benchmarks/gate_power.py pool RAW.json [RAW.json ...] [--recordings 1,2,3]
        [--json OUT.json]

The gpu profile gates BERT-base-wide copies (hidden 768) on torch-cuda-graph at FP16, shapes
1x128 and 32x128, with a 5 % tolerance: A/A runs and a +10 % level (22 layers for 20); eager
torch-cuda cases run beside them, their speed-up gated against the CUDA-graph reference. Its
+30 % level (26 layers) is for eager torch-cuda alone, at the 20 % its spread resolves
(`--backends torch-cuda --tolerance 20%`).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

# level -> (layers, extra pytest arguments). The +N % levels change the layer count; their
# true factor is measured through the runs (embeddings and the head do not scale).
LEVELS: dict[str, tuple[int, list[str]]] = {
    "A/A": (20, []),
    "+5%": (21, []),
    "+20%": (24, []),
    "+50%": (30, []),
    # The dynamo exporter leaves Attention unfused (ORT fuses only the TorchScript export),
    # and the model is 20 % cheaper: latency alone may pass; fusions and speed-up must not.
    "fusions lost, model -20%": (16, ["--xfperf-exporter", "dynamo"]),
    # Baselines from a machine with other ISA flags, 20x faster: never a regression.
    "other machine": (20, []),
}
PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {
        "width": 128, "heads": 2, "base_layers": 20, "copies": 6, "record_every": 14,
        "backends": ["ort-cpu"], "precisions": ["fp32"], "shapes": ["1x128"],
        "tolerance": "10%", "levels": LEVELS,
        # A/A runs twice per cycle: its false-alarm rate has the tightest target.
        "cycle": ["A/A", "+5%", "A/A", "+20%", "+50%", "fusions lost, model -20%",
                  "other machine"]},
    "gpu": {
        "width": 768, "heads": 12, "base_layers": 20, "copies": 3, "record_every": 6,
        "backends": ["torch-cuda-graph", "torch-cuda"], "precisions": ["fp16"],
        "shapes": ["1x128", "32x128"], "tolerance": "5%",
        # +30 %: for eager PyTorch, whose spread resolves a 20 % line, not a 5 % one.
        "levels": {"A/A": (20, []), "+10%": (22, []), "+30%": (26, [])},
        "cycle": ["A/A", "+10%"]},
}
FORMAT = 1

CONFTEST = textwrap.dedent('''
    import os
    from power_encoder import build_encoder, encoder_inputs  # copied beside this file
    from pytest_xfperf import ModelSpec

    LAYERS = int(os.environ["XF_LAYERS"])
    COPIES = int(os.environ["XF_COPIES"])
    WIDTH, HEADS = int(os.environ["XF_WIDTH"]), int(os.environ["XF_HEADS"])

    def build():
        return build_encoder(LAYERS, WIDTH, HEADS)

    if os.environ.get("XF_EVERY_BLOCK"):
        # Benchmark only: no verdict before the policy's last round, so that every run
        # measures max_blocks and `gate_power.py replay` can apply any rule round by round.
        from pytest_xfperf.baselines import rule as _rule
        _verdict = _rule.verdict

        def _verdict_at_end(views, tolerance, final):
            return _verdict(views, tolerance, final) if final else None

        _rule.verdict = _verdict_at_end

    def pytest_xfperf_models(config):
        return [ModelSpec(name=f"enc{i}", build=build, make_inputs=encoder_inputs,
                          identity=f"enc-{LAYERS}", family="bert", num_layers=LAYERS,
                          num_heads=HEADS, hidden_size=WIDTH)
                for i in range(COPIES)]
''')


def _project(root: Path, profile: dict[str, Any], copies: int, threads: int) -> None:
    (root / "conftest.py").write_text(CONFTEST)
    shutil.copyfile(Path(__file__).with_name("power_encoder.py"), root / "power_encoder.py")
    (root / "test_perf.py").write_text("def test_inference(xfperf):\n    xfperf.check()\n")
    models = [f"enc{i}" for i in range(copies)]
    (root / "pyproject.toml").write_text(textwrap.dedent(f'''
        [tool.xfperf]
        models = {json.dumps(models)}
        backends = {json.dumps(profile["backends"])}
        precisions = {json.dumps(profile["precisions"])}
        shapes = {json.dumps(profile["shapes"])}
        tolerance = "{profile["tolerance"]}"
    '''))
    if threads:  # a pinned slice of a larger host: the libraries' defaults count every core
        with (root / "pyproject.toml").open("a") as handle:
            handle.write(f"[tool.xfperf.ort-cpu]\nintra_op_threads = {threads}\n"
                         f"[tool.xfperf.torch-cpu]\nthreads = {threads}\n")


def _pytest(root: Path, layers: int, profile: dict[str, Any], copies: int, args: list[str],
            report: Path, baselines: Path, every_block: bool = False
            ) -> tuple[int, float, dict[str, Any]]:
    env = {**os.environ, "XF_LAYERS": str(layers), "XF_COPIES": str(copies),
           "XF_WIDTH": str(profile["width"]), "XF_HEADS": str(profile["heads"]),
           "XF_EVERY_BLOCK": "1" if every_block else ""}
    command = [sys.executable, "-m", "pytest", *plugin_flag(), "test_perf.py", "--xfperf", "-q",
               "-p", "no:cacheprovider", "--xfperf-baselines", str(baselines),
               "--xfperf-report", str(report), *args]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if not report.exists():
        raise SystemExit(f"pytest wrote no report (exit {done.returncode}):\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    data = json.loads(report.read_text())
    report.unlink()
    return done.returncode, seconds, data


def plugin_flag() -> list[str]:
    """``-p pytest_xfperf.plugin`` where the package is not installed (a bare checkout on the
    GPU machine, on PYTHONPATH); nothing where its entry point already loads it."""
    from importlib.metadata import entry_points

    installed = any(ep.name == "xfperf" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "pytest_xfperf.plugin"]


def _case_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for case in data["cases"]:
        gate = case.get("baseline") or {}
        rows.append({"id": case["id"], "verdict": case["verdict"], "rounds": case["rounds"],
                     "p50_ms": (case.get("stats") or {}).get("p50_ms"),
                     "measure_seconds": case.get("measure_seconds"),
                     "decisions": gate.get("decisions", {}),
                     # What failed it, threshold metrics included (memory, p99).
                     "regressions": gate.get("regressions", []),
                     "drift": gate.get("graph_drift", []),
                     "timing": case.get("timing"), "reference": case.get("reference_timing")})
    return rows


def _other_machine(baselines: Path, target: Path) -> None:
    """The recorded file as if from a machine with AMX tiles, 20x faster, under its key."""
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.json"):
        old.unlink()
    (source,) = baselines.glob("*.json")
    document = json.loads(source.read_text())
    document["machine"]["isa"] = sorted({*document["machine"]["isa"], "amx_tile"})
    document["machine"]["key"] = "cpu-other-machine-00000000"
    for entry in document["cases"].values():
        entry["timing"]["case_ms"] = [x / 20 for x in entry["timing"]["case_ms"]]
        entry["metrics"]["p50_ms"] /= 20
    (target / "cpu-other-machine-00000000.json").write_text(json.dumps(document))


def _levels(text: str, known: dict[str, Any]) -> list[str]:
    """--cycle's comma-separated levels; a level whose name holds a comma ("fusions lost,
    model -20%") is taken whole."""
    out: list[str] = []
    pending = ""
    for piece in text.split(","):
        pending = f"{pending},{piece}" if pending else piece.strip()
        if pending in known:
            out.append(pending)
            pending = ""
    if pending:
        raise SystemExit(f"--cycle: unknown level {pending!r}; the profile's are {list(known)}")
    return out


def measure(args: argparse.Namespace) -> None:
    from pytest_xfperf.baselines.machine import machine_info
    from pytest_xfperf.baselines.pooling import MAX_PROCESSES

    if not 1 <= args.pool <= MAX_PROCESSES:
        raise SystemExit(f"--pool {args.pool}: expected 1 to {MAX_PROCESSES}")

    profile = dict(PROFILES[args.profile])
    if args.backends:
        profile["backends"] = args.backends.split(",")
    if args.tolerance:
        profile["tolerance"] = args.tolerance
    copies = args.copies or profile["copies"]
    added = args.pytest_args.split()
    levels = profile["levels"]
    cycle = _levels(args.cycle, levels) if args.cycle else profile["cycle"]
    record_every = args.record_every or profile["record_every"]
    deadline = time.time() + args.minutes * 60
    raw: dict[str, Any] = {"format": FORMAT, "machine": machine_info(), "copies": copies,
                           "every_block": args.every_block,
                           "profile": args.profile,
                           "settings": {k: v for k, v in profile.items() if k != "levels"},
                           "tolerance": profile["tolerance"],
                           "levels": {k: v[0] for k, v in levels.items()},
                           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                           "command": " ".join(sys.argv), "records": [], "runs": [],
                           "pytest_args": added, "pool": args.pool,
                           "affinity": sorted(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _project(root, profile, copies, args.threads)
        baselines, other = root / "baselines", root / "other-baselines"
        index = 0
        while time.time() < deadline:
            if index % record_every == 0:
                for old in baselines.glob("*.json"):
                    old.unlink()
                # --pool N: N recordings back to back, each pooled with those before it.
                for _ in range(args.pool):
                    code, seconds, data = _pytest(
                        root, profile["base_layers"], profile, copies,
                        ["--xfperf-update-baselines", "--xfperf-pool-recordings",
                         str(args.pool), *added], root / "r.json", baselines)
                (stored,) = baselines.glob("*.json")
                entries = json.loads(stored.read_text())["cases"]
                raw["records"].append({"index": index, "exit": code, "seconds": seconds,
                                       "cases": _case_rows(data),
                                       "baseline": {k: {"timing": v.get("timing"),
                                                        "speedup": v.get("speedup")}
                                                    for k, v in entries.items()}})
                print(f"[record] {seconds:.0f} s", flush=True)
                _other_machine(baselines, other)
            level = cycle[index % len(cycle)]
            layers, extra = levels[level]
            target = other if level == "other machine" else baselines
            code, seconds, data = _pytest(root, layers, profile, copies, [*extra, *added],
                                          root / "r.json", target, args.every_block)
            raw["runs"].append({"index": index, "level": level, "layers": layers,
                                "exit": code, "seconds": seconds, "cases": _case_rows(data)})
            verdicts = [c["verdict"] for c in raw["runs"][-1]["cases"]]
            print(f"[{index}] {level}: {verdicts} {seconds:.0f} s", flush=True)
            index += 1
            Path(args.raw).write_text(json.dumps(raw))
    raw["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    Path(args.raw).write_text(json.dumps(raw))


def upper_bound(failures: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate with ``failures`` in ``trials``."""
    if failures >= trials:
        return 1.0

    def tail(p: float) -> float:  # P(X <= failures) for X ~ Binomial(trials, p)
        return sum(math.comb(trials, k) * p**k * (1 - p) ** (trials - k)
                   for k in range(failures + 1))

    low, high = failures / trials, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if tail(mid) > 1 - confidence else (low, mid)
    return high


def _load(path: str) -> dict[str, Any]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def _cost_of(cases: list[dict[str, Any]]) -> list[float]:
    """Each case's timing (its blocks and the yardstick's) over one round of its own blocks:
    the case's measurement time."""
    return [(c["measure_seconds"]["case"] + c["measure_seconds"]["yardstick"])
            / (c["measure_seconds"]["case"] / c["rounds"]) for c in cases
            if c["measure_seconds"] and c["rounds"]]


def _cleared(case: dict[str, Any]) -> bool:
    """Whether the latency decision's interval lay wholly between the lines (``rule``)."""
    from pytest_xfperf.baselines import rule

    decision = case["decisions"].get("p50_ms") or {}
    return bool(decision) and rule.between_lines(decision["low"], decision["high"],
                                                 decision["tolerance"])


def analyze(args: argparse.Namespace) -> dict[str, Any]:
    raw = _load(args.raw)
    runs = raw["runs"]
    def base_p50(case_id: str) -> float:
        """Median p50 of the same case (copy number aside) in the A/A runs."""
        kind = case_id.split("/", 1)[1]
        base = [c["p50_ms"] for r in runs if r["level"] == "A/A" for c in r["cases"]
                if c["p50_ms"] and c["id"].split("/", 1)[1] == kind]
        return statistics.median(base) if base else float("nan")

    table = {}
    backends = sorted({c["id"].split("/")[1] for r in runs for c in r["cases"]})
    for level, backend in [(lv, b) for lv in raw["levels"] for b in backends]:
        cases = [c for r in runs if r["level"] == level for c in r["cases"]
                 if c["id"].split("/")[1] == backend]
        if not cases:
            continue
        failed = [c for c in cases if c["verdict"] in ("REGRESSED", "DRIFT", "UNSTABLE")]
        regressed = sum(c["verdict"] == "REGRESSED" for c in cases)
        factors = [c["p50_ms"] / base_p50(c["id"]) for c in cases if c["p50_ms"]]
        cost = _cost_of(cases)
        # A pass whose interval lay wholly between the lines: a trial the measurement settled.
        clear_passes = [c for c in cases if c["verdict"] == "pass" and _cleared(c)]
        clear_cost = _cost_of(clear_passes)
        speedup_lost = sum((c["decisions"].get("speedup") or {}).get("outcome") == "regressed"
                           for c in cases)
        table[f"{level} {backend}"] = {
            "trials": len(cases), "runs": sum(r["level"] == level for r in runs),
            "fails": len(failed), "fail_rate": len(failed) / len(cases),
            "upper_95": upper_bound(len(failed), len(cases)),
            "regressed": regressed, "drift": sum(c["verdict"] == "DRIFT" for c in cases),
            "speedup_regressed": speedup_lost,
            "unstable": sum(c["verdict"] in ("unstable", "UNSTABLE") for c in cases),
            "true_factor": statistics.median(factors) if factors else None,
            "mean_rounds": statistics.fmean(c["rounds"] for c in cases),
            "cost_x_measurement": statistics.fmean(cost) if cost else None,
            "clear_passes": len(clear_passes),
            "clear_pass_cost_x_measurement": statistics.fmean(clear_cost) if clear_cost else None,
            "seconds_per_run": statistics.fmean(r["seconds"] for r in runs
                                                if r["level"] == level),
        }
    record_cost = [(c["measure_seconds"]["case"] + c["measure_seconds"]["yardstick"])
                   / (c["measure_seconds"]["case"] * 8 / 12) for r in raw["records"]
                   for c in r["cases"] if c["measure_seconds"]]
    out = {"machine": raw["machine"], "started": raw["started"],
           "finished": raw.get("finished"), "copies": raw["copies"],
           "tolerance": raw["tolerance"], "records": len(raw["records"]),
           "record_cost_x_measurement": statistics.fmean(record_cost) if record_cost else None,
           "levels": table}
    for level, row in table.items():
        factor = row["true_factor"]
        print(f"{level:40s} trials {row['trials']:4d}  fails {row['fails']:3d} "
              f"({row['fail_rate']:.1%}, 95% upper {row['upper_95']:.1%})  "
              f"regressed {row['regressed']}  drift {row['drift']}  speed-up lost "
              f"{row['speedup_regressed']}  unstable {row['unstable']}  true "
              f"{'-' if factor is None else f'{factor - 1:+.1%}'}  rounds "
              f"{row['mean_rounds']:.2f}  cost {row['cost_x_measurement'] or 0:.2f}x  "
              f"clear passes {row['clear_passes']} at "
              f"{row['clear_pass_cost_x_measurement'] or 0:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


def _trials(raw: dict[str, Any], levels: Callable[[str], bool]
            ) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(run, case, the case's baseline entry) for every gated case of a power run whose level
    ``levels`` keeps and that has block records on both sides."""
    records = sorted(raw["records"], key=lambda r: r["index"])
    for run in raw["runs"]:
        if not levels(run["level"]):
            continue
        baseline = [r for r in records if r["index"] <= run["index"]][-1]["baseline"]
        for case in run["cases"]:
            then = baseline.get(case["id"]) or {}
            if then.get("timing") and case.get("timing"):
                yield run, case, then


def _paced(record: dict[str, Any], backend: str) -> dict[str, Any]:
    """A block record with what paces it; records from before a wall-clock record said which
    library ran it get the pacing today's plugin would give them."""
    from pytest_xfperf.backends.catalog import pace_fields

    return {**pace_fields(record["clock"], backend), **record}


def spreads(paths: Sequence[str]) -> dict[str, dict[str, float]]:
    """How far each timed series moved between processes in the A/A trials of power runs:
    the root mean square of the log of the gate's own shift (no spread added), by series and
    view, per file and pooled: the case, its PyTorch reference, and the speed-up (the case's
    shift over the reference's). What ``GatePolicy``'s spreads stand for. Also each trial
    decided again by today's rule on the blocks it took (final): how many it would fail."""
    from pytest_xfperf.baselines import gate, rule

    policy = rule.DEFAULT_POLICY
    pooled: dict[str, list[float]] = {}
    failed: dict[str, int] = {"trials": 0, "latency": 0, "speed-up": 0}
    out: dict[str, dict[str, float]] = {}
    for path in paths:
        raw = _load(path)
        tolerance = float(raw["tolerance"].rstrip("%")) / 100
        logs: dict[str, list[float]] = {}
        for _, case, then in _trials(raw, lambda level: level == "A/A"):
            views, _ = gate.block_views(case["timing"], then["timing"], policy, False)
            series = {"case": views}
            if then.get("speedup") and case.get("reference"):
                series["reference"], _ = gate.block_views(
                    case["reference"], then["speedup"], policy, False)
                series["speed-up"] = gate.speedup_views(views, series["reference"])
            failed["trials"] += 1
            timing = _paced(case["timing"], case["id"].split("/")[1])
            now, _ = gate.block_views(timing, then["timing"], policy)
            failed["latency"] += (rule.verdict(now, tolerance, True)
                                  is rule.Outcome.REGRESSED)
            if "reference" in series:
                reference = _paced(case["reference"], str(case["reference"].get("reference")))
                eager, _ = gate.block_views(reference, then["speedup"], policy)
                failed["speed-up"] += (rule.verdict(gate.speedup_views(now, eager),
                                                    tolerance, True)
                                       is rule.Outcome.REGRESSED)
            for name, shifts in series.items():
                for view in shifts:
                    key = f"{name} {'normalized' if view.normalized else 'own'}"
                    logs.setdefault(key, []).append(math.log(view.ratio))
        out[path] = {key: math.sqrt(statistics.fmean(v * v for v in values))
                     for key, values in logs.items()}
        out[path]["trials"] = len(logs.get("case own", []))
        for key, values in logs.items():
            pooled.setdefault(key, []).extend(values)
    out["pooled"] = {key: math.sqrt(statistics.fmean(v * v for v in values))
                     for key, values in pooled.items()}
    out["pooled"]["trials"] = len(pooled.get("case own", []))
    for name, row in out.items():
        print(f"{name}: {int(row['trials'])} A/A trials; root mean square of the log: "
              + ", ".join(f"{key} {value:.3f}" for key, value in sorted(row.items())
                          if key != "trials"))
    print(f"today's rule on the same blocks, at each file's tolerance: of {failed['trials']} "
          f"A/A trials, latency regressed in {failed['latency']}, the speed-up in "
          f"{failed['speed-up']}")
    out["decided again"] = {key: float(value) for key, value in failed.items()}
    return out


# Bounds of the yardstick's own move (either way) by which `moves` groups the A/A trials.
MOVE_BINS = (1.0, 1.1, 1.2, 1.35, 1.6, math.inf)


def moves(paths: Sequence[str]) -> dict[str, list[dict[str, float]]]:
    """How far the A/A trials' case moved between processes, by how far the yardstick itself
    moved between the baseline's process and the gated one, by clock: the root mean square
    and the largest of the log shift, own and divided. What ``GatePolicy.host_move_covered``
    stands for: the move up to which dividing corrects the host."""
    from pytest_xfperf.baselines import gate, rule

    policy = rule.DEFAULT_POLICY
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for path in paths:
        for _, case, then in _trials(_load(path), lambda level: level == "A/A"):
            now, before = case["timing"], then["timing"]
            views, _ = gate.block_views(now, before, policy, spread=False)
            if len(views) < 2:  # the two sides did not time the same yardstick
                continue
            own, divided = views
            moved = gate.host_moved(now, before, policy)
            rows.setdefault(str(now.get("clock", "wall")), []).append(
                (abs(math.log(moved)), math.log(own.ratio), math.log(divided.ratio)))
    out: dict[str, list[dict[str, float]]] = {}
    for clock, trials in sorted(rows.items()):
        for low, high in itertools.pairwise(MOVE_BINS):
            chosen = [t for t in trials if math.log(low) <= t[0] < math.log(high)]
            if not chosen:
                continue
            row = {"from_x": low, "to_x": high, "trials": len(chosen),
                   "own_rms": _rms([math.exp(t[1]) for t in chosen]),
                   "divided_rms": _rms([math.exp(t[2]) for t in chosen]),
                   "own_largest_x": math.exp(max(abs(t[1]) for t in chosen)),
                   "divided_largest_x": math.exp(max(abs(t[2]) for t in chosen))}
            out.setdefault(clock, []).append(row)
            print(f"{clock} clock, yardstick moved {low:g}x-{high:g}x: {len(chosen)} A/A trials; "
                  f"root mean square of the log own {row['own_rms']:.3f}, divided "
                  f"{row['divided_rms']:.3f}; largest own {row['own_largest_x']:.2f}x, divided "
                  f"{row['divided_largest_x']:.2f}x")
    return out


# Rules `replay` compares on the same blocks. "shipped" is the plugin's own (baselines/gate.py
# and rule.py, with the policy's between-process spreads, which --spread-* override to sweep
# them); the others are the same estimator without the spreads, deciding on own times alone,
# on divided times alone, on the narrower view, or only where both views show a change.
REPLAY_RULES = ("shipped", "narrower", "both", "normalized", "own")


def _prefix(record: dict[str, Any], blocks: int) -> dict[str, Any]:
    out = {**record, "case_ms": record["case_ms"][:blocks]}
    if record.get("yardstick_ms"):
        out["yardstick_ms"] = record["yardstick_ms"][:blocks]
    return out


def _outcome(name: str, now: dict[str, Any], then: dict[str, Any], tolerance: float,
             final: bool, policy: Any) -> Any:
    from pytest_xfperf.baselines import gate, rule

    if name == "shipped":
        views, _ = gate.block_views(now, then, policy)
        return rule.verdict(views, tolerance, final)
    views, _ = gate.block_views(now, then, policy, spread=False)
    if len(views) == 1 or name == "own":
        return rule.decide(views[0], tolerance, final)
    own, normalized = views
    if name == "normalized":
        return rule.decide(normalized, tolerance, final)
    if name == "narrower":
        return rule.verdict(views, tolerance, final)
    assert name == "both"  # a change only where both views show it
    outcomes = [rule.decide(view, tolerance, final) for view in (own, normalized)]
    for shown in (rule.Outcome.REGRESSED, rule.Outcome.IMPROVED):
        if all(outcome is shown for outcome in outcomes):
            return shown
    if rule.Outcome.PASS in outcomes:
        return rule.Outcome.PASS
    if None in outcomes:
        return None
    return rule.Outcome.UNSTABLE if rule.Outcome.UNSTABLE in outcomes else rule.Outcome.PASS


def _rms(ratios: Sequence[float]) -> float:
    """Root mean square of the log of ``ratios``: in A/A trials, the spread of a view's level
    between two processes that ``GatePolicy``'s spreads stand for."""
    return math.sqrt(statistics.fmean(math.log(r) ** 2 for r in ratios))


def replay(args: argparse.Namespace) -> dict[str, Any]:
    """Every trial's blocks decided again, round by round, under each rule of REPLAY_RULES
    (the runs must have been measured with --every-block)."""
    from pytest_xfperf.baselines import gate, rule

    raw = _load(args.raw)
    if not raw.get("every_block"):
        raise SystemExit("replay needs runs measured with --every-block")
    tolerance = args.tolerance or float(raw["tolerance"].rstrip("%")) / 100
    sweep = {f"spread_{clock}_{view}": value for clock in ("wall", "device")
             for view, value in (("own", args.spread_own),
                                 ("normalized", args.spread_normalized)) if value is not None}
    policy = dataclasses.replace(rule.DEFAULT_POLICY, **sweep)
    rounds = list(range(policy.first_blocks, policy.max_blocks + 1, policy.round_blocks))
    records = sorted(raw["records"], key=lambda r: r["index"])
    table: dict[str, dict[str, Any]] = {}
    shifts: dict[str, list[tuple[float, float, float]]] = {}
    first, _, last = (args.runs or ":").partition(":")
    for run in raw["runs"]:
        if run["level"] == "other machine":
            continue  # no comparison is made (a different machine's file): nothing to replay
        if (first and run["index"] < int(first)) or (last and run["index"] >= int(last)):
            continue
        baseline = [r for r in records if r["index"] <= run["index"]][-1]["baseline"]
        for case in run["cases"]:
            then = (baseline.get(case["id"]) or {}).get("timing")
            now = case.get("timing")
            if not then or not now or len(now["case_ms"]) < rounds[-1]:
                continue
            level = f"{run['level']}, {case['id'].split('/')[1]}"
            row = table.setdefault(level, {"trials": 0, "drift": 0,
                                           **{n: {} for n in REPLAY_RULES}})
            row["trials"] += 1
            row["drift"] += case["verdict"] == "DRIFT"
            views, _ = gate.block_views(now, then, policy, spread=False)
            if len(views) == 2:  # both sides timed the same yardstick
                shifts.setdefault(level, []).append(
                    (views[0].ratio, views[1].ratio, gate.host_moved(now, then, policy)))
            for name in REPLAY_RULES:
                for blocks in rounds:
                    final = blocks == rounds[-1]
                    outcome = _outcome(name, _prefix(now, blocks), then, tolerance, final,
                                       policy)
                    if outcome is not None:
                        break
                key = f"{outcome.value}@{blocks}"
                row[name][key] = row[name].get(key, 0) + 1
    for level, row in table.items():
        print(f"{level}: {row['trials']} trials, drift {row['drift']}")
        if shifts.get(level):
            own, normalized, host = zip(*shifts[level], strict=True)
            print(f"  at {rounds[-1]} blocks own {min(own):.2f}-{max(own):.2f} (median "
                  f"{statistics.median(own):.3f}), normalized {min(normalized):.2f}-"
                  f"{max(normalized):.2f} (median {statistics.median(normalized):.3f}), "
                  f"yardstick {min(host):.2f}-{max(host):.2f}; root mean square of the log: "
                  f"own {_rms(own):.3f}, normalized {_rms(normalized):.3f}")
        for name in REPLAY_RULES:
            counts = row[name]
            regressed = sum(v for k, v in counts.items() if k.startswith("regressed"))
            unstable = sum(v for k, v in counts.items() if k.startswith("unstable"))
            blocks = sum(int(k.split("@")[1]) * v for k, v in counts.items()) / row["trials"]
            print(f"  {name:16s} regressed {regressed:3d} ({regressed / row['trials']:.0%}, "
                  f"95% upper {upper_bound(regressed, row['trials']):.0%})  unstable "
                  f"{unstable:3d}  mean blocks {blocks:.1f}  {dict(sorted(counts.items()))}")
    if args.json:
        Path(args.json).write_text(json.dumps({"policy": dataclasses.asdict(policy),
                                               "raw": args.raw, "runs": args.runs,
                                               "levels": table}, indent=1)
                                   + "\n")
    return table


def _policy(text: str) -> Any:
    """``GatePolicy`` with the fields of "name=value,..." replaced ("default": as shipped)."""
    from pytest_xfperf.baselines import rule

    fields = {f.name: f.type for f in dataclasses.fields(rule.GatePolicy)}
    changes: dict[str, Any] = {}
    for item in filter(None, "" if text == "default" else text.split(",")):
        name, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if name.strip() not in fields or not math.isfinite(number):
            raise SystemExit(f"--policy {text!r}: expected NAME=VALUE with a number for VALUE "
                             f"and NAME one of {sorted(fields)}")
        changes[name.strip()] = int(number) if fields[name.strip()] in (int, "int") else number
    return dataclasses.replace(rule.DEFAULT_POLICY, **changes)


def _decided(now: dict[str, Any], then: dict[str, Any], policy: Any, tolerance: float,
             reference: tuple[dict[str, Any], dict[str, Any]] | None = None
             ) -> tuple[str, float, int]:
    """The verdict ``policy`` gives, round by round, on the blocks a trial took, the
    deciding view's shift, and the rounds taken: latency, or the speed-up when ``reference``
    (this run's eager blocks, the baseline's) is given."""
    from pytest_xfperf.baselines import gate, rule

    taken = len(now["case_ms"])
    rounds = [b for b in range(policy.first_blocks, policy.max_blocks + 1, policy.round_blocks)
              if b <= taken] or [taken]
    for blocks in rounds:
        views, _ = gate.block_views(_prefix(now, blocks), then, policy)
        if reference is not None:
            eager_now, eager_then = reference
            eager, _ = gate.block_views(_prefix(eager_now, blocks), eager_then, policy)
            views = gate.speedup_views(views, eager)
        outcome = rule.verdict(views, tolerance, blocks == rounds[-1])
        if outcome is not None:
            return str(outcome.value), rule.deciding(views).ratio, rounds.index(blocks) + 1
    raise AssertionError("the last round always decides")


def sweep(paths: Sequence[str], policies: Sequence[str]) -> dict[str, Any]:
    """Every trial of power runs decided again under each ``--policy``: GatePolicy's knobs
    swept on the same blocks. A trial has the blocks the plugin took for it; where a policy
    would have taken more rounds than that, it is decided on those it has (at its last
    round), so the sweep is exact only for runs measured with --every-block, and otherwise
    tells how a knob moves the verdicts rather than their exact counts."""
    out: dict[str, Any] = {}
    for text in policies:
        policy = _policy(text)
        table: dict[str, dict[str, dict[str, int]]] = {}
        shifts: dict[str, list[float]] = {}  # log of the latency's deciding shift, by level
        for path in paths:
            raw = _load(path)
            tolerance = float(raw["tolerance"].rstrip("%")) / 100
            for run, case, then in _trials(raw, lambda level: level != "other machine"):
                now = _paced(case["timing"], case["id"].split("/")[1])
                row = table.setdefault(run["level"], {"latency": {}, "speed-up": {}})
                verdict, ratio, _ = _decided(now, then["timing"], policy, tolerance)
                row["latency"][verdict] = row["latency"].get(verdict, 0) + 1
                shifts.setdefault(run["level"], []).append(math.log(ratio))
                if then.get("speedup") and case.get("reference"):
                    eager = _paced(case["reference"], str(case["reference"].get("reference")))
                    verdict, _, _ = _decided(now, then["timing"], policy, tolerance,
                                          (eager, then["speedup"]))
                    row["speed-up"][verdict] = row["speed-up"].get(verdict, 0) + 1
        print(f"policy {text}:")
        for level, row in table.items():
            trials = sum(row["latency"].values())
            regressed = row["latency"].get("regressed", 0)
            logs = shifts[level]
            caught_low = 1 - upper_bound(trials - regressed, trials)
            print(f"  {level}: {trials} trials, deciding shift median "
                  f"{math.exp(statistics.median(logs)):.3f} (sd of the log "
                  f"{statistics.pstdev(logs):.3f}); latency regressed {regressed} "
                  f"({regressed / trials:.1%}, 95% {caught_low:.1%}"
                  f" .. {upper_bound(regressed, trials):.1%}) "
                  f"{dict(sorted(row['latency'].items()))}; speed-up "
                  f"{dict(sorted(row['speed-up'].items()))}")
        out[text] = {"policy": dataclasses.asdict(policy), "levels": table}
    return out


def _pooled(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One block record from single processes' records (oldest first), pooled by the plugin's
    own ``pooling.pooled_record``: it keeps the processes, from which the gate scales its
    spreads."""
    from pytest_xfperf.baselines import pooling
    from pytest_xfperf.baselines.store import MAX_BLOCKS

    out = dict(records[0])
    for record in records[1:]:
        out = pooling.pooled_record(record, out, len(records), MAX_BLOCKS)
    return out


def _processes(records: Sequence[dict[str, Any]], case_id: str, need: int
               ) -> list[dict[str, Any]]:
    """The entries of ``case_id`` that single processes recorded, oldest first: from the last
    record, its pooled processes (a run measured with --pool), else one per record, from the
    last ``need`` records. Empty where fewer than ``need`` processes are there."""
    if not records:
        return []
    last = records[-1]["baseline"].get(case_id) or {}
    timing, speedup = last.get("timing") or {}, last.get("speedup") or {}
    if timing.get("processes"):
        out = [{"timing": {**timing, **own}} for own in timing["processes"]]
        if speedup.get("processes") and len(speedup["processes"]) == len(out):
            for entry, own in zip(out, speedup["processes"], strict=True):
                entry["speedup"] = {**speedup, **own}
        for entry in out:
            for record in entry.values():
                record.pop("processes", None)
    else:
        out = [r["baseline"].get(case_id) or {} for r in records[-need:]]
    out = [e for e in out if e.get("timing")]
    return out if len(out) >= need else []


def pool(paths: Sequence[str], counts: Sequence[int]) -> dict[str, Any]:
    """Every trial of power runs decided again against a baseline pooled from the last k
    recordings before it (each a process of its own; ``_pooled``), the gate scaling its
    spreads for k, for each k of ``counts``. Only trials with max(counts)
    recordings before them count, so every k decides the same trials. In a run measured with
    --pool, the recordings are the pooled processes of the baseline it was gated against
    (recorded back to back, as users record them); elsewhere they are the run's earlier
    recordings, 5-6 runs (about ten minutes) apart."""
    from pytest_xfperf.baselines import pooling, rule

    need = max(counts)
    out: dict[str, Any] = {}
    for k in counts:
        policy = rule.DEFAULT_POLICY
        table: dict[str, dict[str, dict[str, int]]] = {}
        for path in paths:
            raw = _load(path)
            tolerance = float(raw["tolerance"].rstrip("%")) / 100
            records = sorted(raw["records"], key=lambda r: r["index"])
            for run in raw["runs"]:
                if run["level"] == "other machine":
                    continue
                before = [r for r in records if r["index"] <= run["index"]]
                for case in run["cases"]:
                    entries = _processes(before, case["id"], need)[-k:]
                    if not case.get("timing") or len(entries) < k:
                        continue
                    row = table.setdefault(run["level"], {"latency": {}, "speed-up": {}})
                    now = _paced(case["timing"], case["id"].split("/")[1])
                    then = _pooled([e["timing"] for e in entries])
                    verdict, _, _ = _decided(now, then, policy, tolerance)
                    row["latency"][verdict] = row["latency"].get(verdict, 0) + 1
                    if case.get("reference") and all(e.get("speedup") for e in entries):
                        eager = _paced(case["reference"],
                                       str(case["reference"].get("reference")))
                        verdict, _, _ = _decided(now, then, policy, tolerance,
                                              (eager, _pooled([e["speedup"]
                                                               for e in entries])))
                        row["speed-up"][verdict] = row["speed-up"].get(verdict, 0) + 1
        print(f"baseline pooled from {k} recording(s), spreads x "
              f"{pooling.spread_factor(k):.3f}:")
        for level, row in table.items():
            trials = sum(row["latency"].values())
            regressed = row["latency"].get("regressed", 0)
            print(f"  {level}: {trials} trials; latency regressed {regressed} "
                  f"({regressed / trials:.1%}, 95% upper {upper_bound(regressed, trials):.1%}) "
                  f"{dict(sorted(row['latency'].items()))}; speed-up "
                  f"{dict(sorted(row['speed-up'].items()))}")
        out[str(k)] = table
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--minutes", type=float, default=30.0)
    m.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    m.add_argument("--copies", type=int, default=0, help="0: the profile's")
    m.add_argument("--raw", required=True)
    m.add_argument("--threads", type=int, default=0,
                   help="threads of ONNX Runtime and PyTorch (0: their defaults); set it when "
                        "the run is pinned to some cores of a larger host (taskset)")
    m.add_argument("--every-block", action="store_true",
                   help="measure every run to the policy's max_blocks (no early verdict), so "
                        "that `replay` can apply other rules to the same blocks")
    m.add_argument("--tolerance", default="",
                   help="the latency and speed-up tolerance (default: the profile's)")
    m.add_argument("--cycle", default="",
                   help="comma-separated levels run in turn (default: the profile's cycle)")
    m.add_argument("--record-every", type=int, default=0,
                   help="record the baselines again every N runs (0: the profile's)")
    m.add_argument("--backends", default="",
                   help="comma-separated backends gated (default: the profile's)")
    m.add_argument("--pool", type=int, default=1,
                   help="record each baseline N times back to back, pooled "
                        "(--xfperf-pool-recordings N)")
    m.add_argument("--pytest-args", default="",
                   help="arguments added to every pytest run, records included (e.g. "
                        "'--xfperf-spreads wall_own=0.05,wall_normalized=0.025': a machine's "
                        "own spreads, measured first)")
    r = sub.add_parser("replay", help="decide the recorded blocks again under each rule")
    r.add_argument("--raw", required=True)
    r.add_argument("--json")
    r.add_argument("--spread-own", type=float, default=None,
                   help="the shipped rule's between-process spread of own times (log-scale "
                        "sd), on both clocks; default: the policy's")
    r.add_argument("--tolerance", type=float, default=0.0,
                   help="decide at this tolerance (0.1: 10 %%) instead of the runs' own")
    r.add_argument("--spread-normalized", type=float, default=None,
                   help="the same for the view divided by the yardstick")
    r.add_argument("--runs", default="",
                   help="FIRST:END, the runs replayed by index (END excluded; either may be "
                        "left out): to leave out runs that shared the machine, or to judge "
                        "runs with spreads measured on others")
    a = sub.add_parser("analyze")
    a.add_argument("--raw", required=True)
    a.add_argument("--json")
    w = sub.add_parser("spreads", help="how far each series moved between processes in the "
                                        "A/A trials of power runs")
    w.add_argument("raw", nargs="+")
    v = sub.add_parser("moves", help="the A/A trials' shifts by how far the yardstick itself "
                                      "moved (what host_move_covered stands for)")
    v.add_argument("raw", nargs="+")
    v.add_argument("--json")
    s = sub.add_parser("sweep", help="every trial decided again with GatePolicy's knobs changed")
    s.add_argument("raw", nargs="+")
    s.add_argument("--policy", action="append", default=[],
                   help="NAME=VALUE,... of GatePolicy's fields, or 'default'; repeat to compare")
    s.add_argument("--json")
    o = sub.add_parser("pool", help="every trial decided again against a baseline pooled from "
                                     "the last k recordings, as the plugin pools them")
    o.add_argument("raw", nargs="+")
    o.add_argument("--recordings", default="1,2,3",
                   help="comma-separated k: how many recordings each baseline pools")
    o.add_argument("--json")
    args = parser.parse_args()
    if args.command == "spreads":
        spreads(args.raw)
    elif args.command == "moves":
        found = moves(args.raw)
        if args.json:
            Path(args.json).write_text(json.dumps({"raw": args.raw, "moves": found},
                                                  indent=1) + "\n")
    elif args.command == "sweep":
        result = sweep(args.raw, args.policy or ["default"])
        if args.json:
            Path(args.json).write_text(json.dumps({"raw": args.raw, "sweep": result},
                                                  indent=1) + "\n")
    elif args.command == "pool":
        counts = [int(k) for k in args.recordings.split(",") if k]
        if not counts or min(counts) < 1:
            raise SystemExit(f"--recordings {args.recordings!r}: expected positive integers")
        pooled = pool(args.raw, counts)
        if args.json:
            Path(args.json).write_text(json.dumps({"raw": args.raw, "pool": pooled},
                                                  indent=1) + "\n")
    elif args.command == "measure":
        measure(args)
    elif args.command == "replay":
        replay(args)
    else:
        analyze(args)


if __name__ == "__main__":
    main()
