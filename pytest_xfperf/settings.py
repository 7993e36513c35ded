"""Run settings, resolved once per session.

Precedence, strongest first: marker (per test, see matrix.py) > command line > environment
variable > ``[tool.xfperf]`` in pyproject.toml or ``xfperf_*`` keys in the pytest ini > default.
One ``Option`` row feeds ``addoption``, ``addini`` and the environment lookup, so the help text
and the parsing exist once; it names the field it sets, and ``resolve`` builds the nested
groups (``Matrix``, ``TimingPolicy``, ``GateOptions``, ``BuildOptions``, ``ServingConfig``,
``ReportPaths``) once per session. The module's length is that table: one row per option.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_xfperf.artifacts.options import BuildOptions
from pytest_xfperf.baselines.pooling import MAX_PROCESSES
from pytest_xfperf.baselines.rule import GatePolicy
from pytest_xfperf.baselines.store import MAX_BLOCKS
from pytest_xfperf.measure.timing import TimingPolicy
from pytest_xfperf.serving.config import ServingConfig
from pytest_xfperf.serving.workload import LengthDistribution
from pytest_xfperf.shard import ShardSpec
from pytest_xfperf.values import (
    Shape,
    parse_bool,
    parse_choice,
    parse_count,
    parse_positive_float,
    parse_shapes,
    parse_tolerance,
    split_list,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

DEFAULT_MODELS = ("minilm-l6", "bert-base")
DEFAULT_BACKENDS = ("torch-cpu", "ort-cpu")
DEFAULT_PRECISIONS = ("fp32", "int8-dynamic")
DEFAULT_SHAPES = (Shape(1, 128),)


@dataclass(frozen=True)
class Tolerances:
    """Relative tolerances: how much worse than the baseline a metric may get."""

    p50: float = 0.10
    # p99 of a few dozen samples is close to their maximum: only a gross change is a signal.
    p99: float = 1.00
    throughput: float = 0.10
    # The speed-up over eager PyTorch on the same device: optimization drift.
    speedup: float = 0.10
    memory: float = 0.25
    # Absolute drop allowed in cosine similarity / retrieval agreement vs the baseline's.
    accuracy: float = 0.005

    def with_timing(self, tolerance: float) -> Tolerances:
        """The one-number form (``--xfperf-tolerance``, marker ``tolerance=``): p50 and
        throughput (its inverse) get it; p99, noisier by nature, gets at least it."""
        return replace(self, p50=tolerance, throughput=tolerance, p99=max(self.p99, tolerance))


@dataclass(frozen=True)
class Matrix:
    """What is expanded into cases (a marker may override any of it per test)."""

    models: tuple[str, ...] = DEFAULT_MODELS
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    precisions: tuple[str, ...] = DEFAULT_PRECISIONS
    shapes: tuple[Shape, ...] = DEFAULT_SHAPES
    scenarios: tuple[str, ...] = ("single-stream",)


@dataclass(frozen=True)
class GateOptions:
    """What the gate allows and what it does with what it finds."""

    tolerances: Tolerances = field(default_factory=Tolerances)
    update_baselines: bool = False
    pool_recordings: int = 1  # processes a recorded baseline pools (baselines/pooling.py)
    fail_on_unstable: bool = False
    fail_on_improvement: bool = False
    force_record: bool = False
    other_machine: str = "skip"  # a baseline from another machine: "skip" or "fail"
    fail_on_drift: bool = False  # a case the history shows drifting fails (nightly jobs)
    policy: GatePolicy = field(default_factory=GatePolicy)


@dataclass(frozen=True)
class ReportPaths:
    report: Path | None = None
    markdown: Path | None = None
    html: Path | None = None
    plots: Path | None = None
    # Price per hour of each machine key: the reports' cost per million requests.
    prices: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    enabled: bool = False
    matrix: Matrix = field(default_factory=Matrix)
    timing: TimingPolicy = field(default_factory=TimingPolicy)
    gate: GateOptions = field(default_factory=GateOptions)
    build: BuildOptions = field(default_factory=BuildOptions)
    serving: ServingConfig = field(default_factory=ServingConfig)
    reports: ReportPaths = field(default_factory=ReportPaths)
    timing_disabled: bool = False  # --benchmark-disable: accuracy only
    parallel_timing: bool = False
    timeout: float = 0.0
    max_memory_mb: float = 0.0
    baselines_dir: Path = Path("baselines")
    cache_dir: Path = Path(".xfperf-cache")
    clear_cache: bool = False
    seed: int = 0
    # The run history (history/): one SQLite file, relative to the rootdir; "off": none.
    history: Path = Path(".xfperf/history.db")
    shard: ShardSpec | None = None  # --xfperf-shard K/N: this run's share of the matrix
    # [tool.xfperf.<backend>] tables, validated against the backend's options.
    backend_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


HISTORY_OFF = ("off", "none", "false", "0")


def history_file(settings: Settings, root: Path) -> Path | None:
    """The history file of this run (an absolute setting wins over ``root``), or None: off."""
    if str(settings.history).strip().lower() in HISTORY_OFF:
        return None
    return root / settings.history


@dataclass(frozen=True)
class Option:
    """One setting as it appears on the command line, in ini/pyproject and in the environment,
    and the field of ``Settings`` it sets (``group.field``, or a top-level field)."""

    key: str  # the [tool.xfperf] key
    target: str
    help: str
    parse: Callable[[Any], Any]
    flag: bool = False  # a switch with no value

    @property
    def cli(self) -> str:
        return "--xfperf-" + self.key.replace("_", "-")

    @property
    def dest(self) -> str:
        return "xfperf_" + self.key

    @property
    def env(self) -> str:
        return "XFPERF_" + self.key.upper()


def _scenarios(value: Any) -> tuple[str, ...]:
    from pytest_xfperf.serving.scenarios import SCENARIOS

    names = _tuple(value)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(SCENARIOS)}")
    return names


def _lengths(value: Any) -> LengthDistribution:
    return LengthDistribution.parse(str(value))


def _buckets(value: Any) -> tuple[int, ...]:
    from pytest_xfperf.serving.batcher import parse_buckets

    return parse_buckets(value)


def _tuple(value: Any) -> tuple[str, ...]:
    names = tuple(split_list(value))
    if not names:
        raise ValueError("the list is empty: give at least one name")
    return names


def parse_pool_recordings(value: str | int) -> int:
    """How many processes a recorded baseline may pool: 1 (no pooling) to MAX_PROCESSES."""
    count = parse_count(value, "pool_recordings", 1)
    if count > MAX_PROCESSES:
        raise ValueError(f"pool_recordings must be at most {MAX_PROCESSES} (a record holds at "
                         f"most {MAX_BLOCKS} blocks), got {value!r}")
    return count


OPTIONS: tuple[Option, ...] = (
    Option("models", "matrix.models",
           "models: builtin names, local HF model dirs, or conftest models", _tuple),
    Option("backends", "matrix.backends", "backends to run, e.g. torch-cpu,ort-cpu", _tuple),
    Option("precisions", "matrix.precisions", "precisions to run, e.g. fp32,int8-dynamic",
           _tuple),
    Option("shapes", "matrix.shapes", "input shapes BATCHxSEQ, e.g. 1x128,8x128; for a "
           "generative model bBATCHpPROMPTnNEW, e.g. b1p128n32",
           parse_shapes),
    Option("scenarios", "matrix.scenarios", "serving scenarios: single-stream (default: one "
           "request at a time), offline (all requests at once, dynamic batching), server "
           "(Poisson arrivals, highest rate meeting the p99 bound); the shape's batch is the "
           "batcher's maximum", _scenarios),
    Option("tolerance", "gate.tolerances", "allowed relative regression of p50 latency and "
           "throughput (default 0.10)", parse_tolerance),
    Option("tolerances", "gate.tolerances", "per-metric tolerances, e.g. p50=0.1,p99=1.0,"
           "throughput=0.1,speedup=0.1,memory=0.25,accuracy=0.005",
           lambda v: parse_tolerance_table(v)),
    Option("spreads", "gate.policy", "how far a case's level moves between processes (log-scale "
           "standard deviation) by clock and view, and by what paces the call (the CPU "
           "library, a GPU graph), added "
           "to every interval: wall_own=0.15,wall_normalized=0.03,wall_torch_own=0.21,"
           "wall_torch_normalized=0.08 (PyTorch's threads on the CPU),device_own=0.008,"
           "device_normalized=0.03 (a captured graph's replay),device_prefill=0.031 (a "
           "generation's TTFT there),device_launched=0.5 (launched by the host),"
           "device_eager_normalized=0.05 (eager PyTorch over the launch yardstick),"
           "device_eager_work=0.03 (eager PyTorch its GPU work paces) by default; "
           "measure a suite's with "
           "`python -m pytest_xfperf history spreads`",
           lambda v: parse_spreads(v)),
    Option("update_baselines", "gate.update_baselines",
           "record this run's results as the new baselines", parse_bool, flag=True),
    Option("pool_recordings", "gate.pool_recordings", "with --xfperf-update-baselines, pool "
           "each case's blocks with those of the baseline's earlier recordings of the same "
           "setup (versions, graph, settings, yardstick), up to N processes, the newest kept: "
           "the baseline's level becomes their median and the gate's between-process spreads "
           "shrink to match; record N times in a row to fill it (default 1: replace; at most "
           f"{MAX_PROCESSES})", lambda v: parse_pool_recordings(v)),
    Option("fail_on_unstable", "gate.fail_on_unstable", "fail cases whose measurement cannot "
           "resolve their tolerance (default: report them as unstable)", parse_bool, flag=True),
    Option("fail_on_improvement", "gate.fail_on_improvement", "fail cases faster than their "
           "baseline by more than the tolerance (a stale baseline)", parse_bool, flag=True),
    Option("force_record", "gate.force_record", "with --xfperf-update-baselines, record cases "
           "that failed their accuracy check too (marked as forced)", parse_bool, flag=True),
    Option("other_machine", "gate.other_machine", "when the only baseline is from a machine "
           "with another fingerprint: skip (default: report it, gate nothing) or fail",
           lambda v: parse_choice(v, "other_machine", ("skip", "fail"))),
    Option("fail_on_drift", "gate.fail_on_drift", "fail cases whose run history shows a "
           "lasting slowdown (drifting; for nightly jobs; default: report it)", parse_bool,
           flag=True),
    Option("history", "history", "the run history, an SQLite file every run appends to "
           "(default .xfperf/history.db; off: none)", Path),
    Option("shard", "shard", "run shard K of N of the matrix, e.g. 2/4 (balanced by recorded "
           "cost; merge the shards' reports with `python -m pytest_xfperf report merge`)",
           ShardSpec.parse),
    Option("warmup_rounds", "timing.warmup_rounds", "untimed calls before timing (default 3)",
           lambda v: parse_count(v, "warmup_rounds")),
    Option("min_rounds", "timing.min_rounds", "minimum timed calls per case (default 10)",
           lambda v: parse_count(v, "min_rounds", 1)),
    Option("min_time", "timing.min_time", "seconds of timed calls of a case's first "
           "measurement, spread over its blocks (default 2.0)",
           lambda v: parse_positive_float(v, "min_time", strict=True)),
    Option("max_time", "timing.max_time", "stop timing a case after this many seconds "
           "(default 30)", lambda v: parse_positive_float(v, "max_time", strict=True)),
    Option("parallel_timing", "parallel_timing", "let xdist workers time cases at the same "
           "time on one device (throughput-only runs; latencies then include contention)",
           parse_bool, flag=True),
    Option("timeout", "timeout", "fail a case that runs longer than this many seconds "
           "(0: no limit)", lambda v: parse_positive_float(v, "timeout")),
    Option("max_memory_mb", "max_memory_mb", "fail a case whose memory grows by more than "
           "this many MB (0: no limit)", lambda v: parse_positive_float(v, "max_memory_mb")),
    Option("baselines", "baselines_dir", "directory of baseline files (default: baselines/)",
           Path),
    Option("cache_dir", "cache_dir", "artifact cache directory (default: .xfperf-cache/)",
           Path),
    Option("clear_cache", "clear_cache", "empty the artifact cache before the run",
           parse_bool, flag=True),
    Option("report", "reports.report", "write the results as JSON to this path", Path),
    Option("markdown", "reports.markdown", "write a Markdown report to this path (also "
           "appended to $GITHUB_STEP_SUMMARY when that is set)", Path),
    Option("html", "reports.html", "write a single-file HTML report (tables and plots) to "
           "this path", Path),
    Option("plots", "reports.plots", "write PNG plots (matplotlib) into this directory", Path),
    Option("prices", "reports.prices", "price per hour of machines, for cost per million "
           "requests: MACHINE_KEY=PRICE,... (the key names the baseline file)",
           lambda v: parse_prices(v)),
    Option("seed", "seed", "seed for random weights and inputs (default 0)",
           lambda v: parse_count(v, "seed")),
    Option("exporter", "build.exporter", "ONNX exporter: torchscript (default; the form ORT "
           "fuses) or dynamo", lambda v: parse_choice(v, "exporter", ("torchscript", "dynamo"))),
    Option("calibration_method", "build.calibration_method", "int8-static calibration: "
           "minmax (default), entropy or percentile", lambda v: parse_choice(
               v, "calibration_method", ("minmax", "entropy", "percentile"))),
    Option("calibration_batches", "build.calibration_batches", "int8-static and fp8-static: "
           "number of seeded calibration batches (default 8); int8-dynamic checks its "
           "accuracy on as many 1x128 batches",
           lambda v: parse_count(v, "calibration_batches", 1)),
    Option("per_channel", "build.per_channel", "per-channel weight scales for INT8 "
           "(default true)", parse_bool),
    Option("reduce_range", "build.reduce_range", "7-bit INT8 weights: auto (default: on for "
           "CPUs without an 8-bit dot product, VNNI), true or false",
           lambda v: parse_choice(str(v).lower(), "reduce_range", ("auto", "true", "false"))),
    Option("lengths", "serving.lengths", "request lengths of offline/server: "
           "lognormal:MEDIAN:SIGMA (default lognormal:48:0.6), uniform:LOW:HIGH or fixed:N, "
           "clipped to the shape's length", _lengths),
    Option("padding", "serving.padding", "offline/server batches: buckets (default: pad to "
           "the length bucket), longest (pad to the batch's longest request) or fixed (pad to "
           "the shape's length)", lambda v: parse_choice(v, "padding",
                                                          ("buckets", "longest", "fixed"))),
    Option("buckets", "serving.buckets", "length buckets of --xfperf-padding=buckets, e.g. "
           "32,64,128 (default auto: powers of two from 16)", _buckets),
    Option("max_queue_delay_ms", "serving.max_delay_ms", "dynamic batcher: longest a request "
           "waits for its batch to fill (default 10)",
           lambda v: parse_positive_float(v, "max_queue_delay_ms")),
    Option("serving_requests", "serving.requests", "requests per offline pass (default 400)",
           lambda v: parse_count(v, "serving_requests", 10)),
    Option("p99_bound_ms", "serving.bound_ms", "server scenario: the p99 latency bound, "
           "queueing included (default 100)",
           lambda v: parse_positive_float(v, "p99_bound_ms", strict=True)),
    Option("server_budget", "serving.budget_s", "server scenario: seconds the rate search may "
           "take (default 60)", lambda v: parse_positive_float(v, "server_budget", strict=True)),
    Option("server_trial", "serving.trial_s", "server scenario: seconds of arrivals per tried "
           "rate (default 5; at least 200 requests)",
           lambda v: parse_positive_float(v, "server_trial", strict=True)),
)
OPTIONS_BY_KEY = {o.key: o for o in OPTIONS}


def argparse_type(option: Option) -> Callable[[str], Any]:
    """Wrap a parser so argparse reports a clean usage error instead of a traceback."""

    def convert(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = option.key  # argparse shows this name in its message
    return convert


def read_pyproject(rootpath: Path) -> dict[str, Any]:
    """The ``[tool.xfperf]`` table of the project's pyproject.toml, or {}."""
    path = rootpath / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read [tool.xfperf]: {exc}") from None
    table = data.get("tool", {}).get("xfperf", {})
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [tool.xfperf] must be a table")
    from pytest_xfperf.backends.catalog import BACKENDS

    unknown = sorted(set(table) - set(OPTIONS_BY_KEY) - set(BACKENDS))
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) in [tool.xfperf]: {', '.join(unknown)}; "
            f"valid keys: {', '.join(sorted(OPTIONS_BY_KEY))}, and a table per "
            f"backend ({', '.join(sorted(BACKENDS))})"
        )
    return table


def parse_backend_tables(pyproject: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``[tool.xfperf.ort-cpu]`` and friends: session settings per backend."""
    from pytest_xfperf.backends.catalog import BACKENDS

    tables: dict[str, dict[str, Any]] = {}
    for name, info in BACKENDS.items():
        if name not in pyproject:
            continue
        table = pyproject[name]
        origin = f"[tool.xfperf.{name}]"
        if not isinstance(table, Mapping):
            raise ValueError(f"{origin} must be a table of session settings")
        tables[name] = info.parse_options(table, origin)
    return tables


def _pairs(text: str, usage: str) -> dict[str, str]:
    """``A=1, B=2`` as {"A": "1", "B": "2"}; ValueError "<usage>, got '...'" otherwise."""
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    if not pairs or not all(p.count("=") == 1 for p in pairs):
        raise ValueError(f"{usage}, got {text!r}")
    return {k.strip(): v.strip() for k, v in (p.split("=") for p in pairs)}


def parse_tolerance_table(value: Any, origin: str = "tolerances") -> dict[str, float]:
    """A table ``{p50 = 0.1, memory = "30%"}`` or the text ``p50=0.1,memory=30%``."""
    if isinstance(value, str):
        value = _pairs(value, f"{origin}: write METRIC=VALUE pairs like p50=0.1,memory=30%")
    if not isinstance(value, Mapping):
        raise ValueError(f"{origin}: tolerances must be a table like {{p50 = 0.1, memory = 0.25}}")
    known = Tolerances.__dataclass_fields__
    out: dict[str, float] = {}
    for name, raw in value.items():
        if name not in known:
            raise ValueError(
                f"{origin}: unknown tolerance {name!r}; valid: {', '.join(sorted(known))}"
            )
        out[name] = parse_tolerance(raw)
    return out


# Spreads a configuration may still name, and where their cases went.
REMOVED_SPREADS = {
    "device_compiled": "torch-compile's calls and decode steps replay hand-captured graphs and "
                       "take device_own and device_normalized; a generation's TTFT takes "
                       "device_prefill"}


def parse_spreads(value: Any) -> GatePolicy:
    """A table ``{wall_normalized = 0.03}`` or the text ``wall_normalized=0.03``: the gate's
    policy with those between-process spreads (the others keep their defaults)."""
    if isinstance(value, str):
        value = _pairs(value, "write CLOCK_VIEW=SPREAD pairs like "
                              "wall_normalized=0.03,device_own=0.005")
    if not isinstance(value, Mapping):
        raise ValueError("a table like {wall_normalized = 0.03}")
    known = sorted(name.removeprefix("spread_") for name in GatePolicy.__dataclass_fields__
                   if name.startswith("spread_"))
    spreads: dict[str, Any] = {}
    for name, raw in value.items():
        if name in REMOVED_SPREADS:
            raise ValueError(f"spread {name!r} no longer exists: {REMOVED_SPREADS[name]}")
        if name not in known:
            raise ValueError(f"unknown spread {name!r}; valid: {', '.join(known)}")
        spread = parse_positive_float(raw, name)
        if spread >= 1:
            raise ValueError(f"{name} is a standard deviation of a log ratio, below 1 (0.06 "
                             f"is 6 %), got {raw!r}")
        spreads[f"spread_{name}"] = spread
    return replace(GatePolicy(), **spreads)


def parse_prices(value: Any, origin: str = "prices") -> dict[str, float]:
    """``{"cpu-amd-epyc-2c-9a2dc94c" = 0.10}`` in TOML, or ``KEY=PRICE,KEY=PRICE`` text."""
    if isinstance(value, str):
        value = _pairs(value, f"{origin}: write MACHINE_KEY=PRICE_PER_HOUR pairs like "
                              "cpu-amd-epyc-2c-9a2dc94c=0.10")
    if not isinstance(value, Mapping):
        raise ValueError(f"{origin}: a table of machine key = price per hour, e.g. "
                         "{\"cpu-amd-epyc-2c-9a2dc94c\" = 0.10}")
    out = {}
    for key, raw in value.items():
        out[str(key)] = parse_positive_float(raw, f"{origin}: price of {key}", strict=True)
    return out


def resolve(
    cli: Mapping[str, Any],
    ini: Mapping[str, Any],
    pyproject: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    enabled: bool = False,
) -> Settings:
    """Combine the sources; ``cli`` and ``ini`` hold raw values keyed by Option.key (None: unset).

    Raises ValueError naming the source of a bad value.
    """
    values: dict[str, Any] = {}
    for option in OPTIONS:
        sources = (
            ("command line " + option.cli, cli.get(option.key)),
            ("environment variable " + option.env, environ.get(option.env)),
            ("ini option xfperf_" + option.key, ini.get(option.key)),
            ("[tool.xfperf] " + option.key, pyproject.get(option.key)),
        )
        for origin, raw in sources:
            if raw is None or raw == "" or raw is False and option.flag:
                continue
            try:
                # argparse has already parsed CLI values; parse the rest here.
                value = raw if origin.startswith("command line") else option.parse(raw)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{origin}: {exc}") from None
            values[option.key] = value
            break
    # The strongest source's table is taken whole; the one-number --xfperf-tolerance then
    # sets p50 and throughput on top of it.
    tolerances = Tolerances(**values.pop("tolerances", {}))
    if "tolerance" in values:
        tolerances = tolerances.with_timing(values.pop("tolerance"))
    groups: dict[str, dict[str, Any]] = {"matrix": {}, "timing": {}, "gate": {}, "build": {},
                                          "serving": {}, "reports": {}, "": {}}
    for key, value in values.items():
        group, _, name = OPTIONS_BY_KEY[key].target.rpartition(".")
        groups[group][name] = value
    build = groups["build"]
    if "reduce_range" in build:
        build["reduce_range"] = {"auto": None, "true": True, "false": False}[
            build["reduce_range"]]
    seed = groups[""].get("seed", 0)
    return Settings(
        enabled=enabled, matrix=Matrix(**groups["matrix"]),
        timing=TimingPolicy(**groups["timing"]),
        gate=GateOptions(tolerances=tolerances, **groups["gate"]),
        build=BuildOptions(**build), serving=ServingConfig(seed=seed, **groups["serving"]),
        reports=ReportPaths(**groups["reports"]),
        backend_options=parse_backend_tables(pyproject), **groups[""])
