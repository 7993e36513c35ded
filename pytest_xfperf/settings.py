"""Run settings, resolved once per session.

Precedence, strongest first: marker (per test, see matrix.py) > command line > environment
variable > ``[tool.xfperf]`` in pyproject.toml or ``xfperf_*`` keys in the pytest ini > default.
One ``Option`` row feeds ``addoption``, ``addini`` and the environment lookup, so the help text
and the parsing exist once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
    memory: float = 0.25
    # Absolute drop allowed in cosine similarity / retrieval agreement vs the baseline's.
    accuracy: float = 0.005

    def with_timing(self, tolerance: float) -> Tolerances:
        """The one-number form (``--xfperf-tolerance``, marker ``tolerance=``): p50 and
        throughput (its inverse) get it; p99, noisier by nature, gets at least it."""
        return replace(self, p50=tolerance, throughput=tolerance, p99=max(self.p99, tolerance))


@dataclass(frozen=True)
class Settings:
    enabled: bool = False
    models: tuple[str, ...] = DEFAULT_MODELS
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    precisions: tuple[str, ...] = DEFAULT_PRECISIONS
    shapes: tuple[Shape, ...] = DEFAULT_SHAPES
    tolerances: Tolerances = field(default_factory=Tolerances)
    warmup_rounds: int = 3
    min_rounds: int = 10
    min_time: float = 2.0
    max_time: float = 30.0
    update_baselines: bool = False
    confirm: bool = True
    fail_on_unstable: bool = False
    fail_on_improvement: bool = False
    force_record: bool = False
    parallel_timing: bool = False
    timeout: float = 0.0
    max_memory_mb: float = 0.0
    timing_disabled: bool = False  # --benchmark-disable: accuracy only
    baselines_dir: Path = Path("baselines")
    cache_dir: Path = Path(".xfperf-cache")
    clear_cache: bool = False
    report_path: Path | None = None
    markdown_path: Path | None = None
    html_path: Path | None = None
    plots_dir: Path | None = None
    # Price per hour of each machine key: the reports' cost per million requests.
    prices: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    exporter: str = "torchscript"
    calibration_method: str = "minmax"
    calibration_batches: int = 8
    per_channel: bool = True
    # Serving scenarios (serving/): which ones, and the workload and batcher they use.
    scenarios: tuple[str, ...] = ("single-stream",)
    lengths: str = "lognormal:48:0.6"
    padding: str = "buckets"
    buckets: tuple[int, ...] = ()  # () = powers of two up to the case's sequence length
    max_queue_delay_ms: float = 10.0
    serving_requests: int = 400
    p99_bound_ms: float = 100.0
    server_budget: float = 60.0
    server_trial: float = 5.0
    # [tool.xfperf.<backend>] tables, validated against the backend's options.
    backend_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    """One setting as it appears on the command line, in ini/pyproject and in the environment."""

    key: str  # Settings field, also the [tool.xfperf] key
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


def _lengths(value: Any) -> str:
    from pytest_xfperf.serving.workload import LengthDistribution

    return str(LengthDistribution.parse(str(value)))


def _buckets(value: Any) -> tuple[int, ...]:
    from pytest_xfperf.serving.batcher import parse_buckets

    return parse_buckets(value)


def _tuple(value: Any) -> tuple[str, ...]:
    names = tuple(split_list(value))
    if not names:
        raise ValueError("the list is empty: give at least one name")
    return names


OPTIONS: tuple[Option, ...] = (
    Option("models", "models: builtin names, local HF model dirs, or conftest models", _tuple),
    Option("backends", "backends to run, e.g. torch-cpu,ort-cpu", _tuple),
    Option("precisions", "precisions to run, e.g. fp32,int8-dynamic", _tuple),
    Option("shapes", "input shapes BATCHxSEQ, e.g. 1x128,8x128", parse_shapes),
    Option("tolerance", "allowed relative regression of p50 latency and throughput "
           "(default 0.10)", parse_tolerance),
    Option("tolerances", "per-metric tolerances, e.g. p50=0.1,p99=1.0,throughput=0.1,"
           "memory=0.25,accuracy=0.005", lambda v: parse_tolerance_table(v)),
    Option("warmup_rounds", "untimed calls before timing (default 3)",
           lambda v: parse_count(v, "warmup_rounds")),
    Option("min_rounds", "minimum timed calls per case (default 10)",
           lambda v: parse_count(v, "min_rounds", 1)),
    Option("min_time", "minimum seconds of timed calls per case (default 2.0)",
           lambda v: parse_positive_float(v, "min_time")),
    Option("max_time", "stop timing a case after this many seconds (default 30)",
           lambda v: parse_positive_float(v, "max_time")),
    Option("update_baselines", "record this run's results as the new baselines", parse_bool,
           flag=True),
    Option("confirm", "re-measure a timing result that is not a clear pass, interleaved "
           "with the reference backend, before failing or flagging it (default true)",
           parse_bool),
    Option("fail_on_unstable", "fail cases whose own noise exceeds their tolerance "
           "(default: report them as unstable)", parse_bool, flag=True),
    Option("force_record", "with --xfperf-update-baselines, record cases that failed their "
           "accuracy check too (marked as forced)", parse_bool, flag=True),
    Option("parallel_timing", "let xdist workers time cases at the same time on one device "
           "(throughput-only runs; latencies then include contention)", parse_bool, flag=True),
    Option("timeout", "fail a case that runs longer than this many seconds (0: no limit)",
           lambda v: parse_positive_float(v, "timeout")),
    Option("max_memory_mb", "fail a case whose memory grows by more than this many MB "
           "(0: no limit)", lambda v: parse_positive_float(v, "max_memory_mb")),
    Option("fail_on_improvement", "fail cases faster than their baseline by more than the "
           "tolerance (a stale baseline)", parse_bool, flag=True),
    Option("baselines", "directory of baseline files (default: baselines/)", Path),
    Option("cache_dir", "artifact cache directory (default: .xfperf-cache/)", Path),
    Option("clear_cache", "empty the artifact cache before the run", parse_bool, flag=True),
    Option("report", "write the results as JSON to this path", Path),
    Option("markdown", "write a Markdown report to this path (also appended to "
           "$GITHUB_STEP_SUMMARY when that is set)", Path),
    Option("html", "write a single-file HTML report (tables and plots) to this path", Path),
    Option("plots", "write PNG plots (matplotlib) into this directory", Path),
    Option("prices", "price per hour of machines, for cost per million requests: "
           "MACHINE_KEY=PRICE,... (the key names the baseline file)",
           lambda v: parse_prices(v)),
    Option("seed", "seed for random weights and inputs (default 0)",
           lambda v: parse_count(v, "seed")),
    Option("exporter", "ONNX exporter: torchscript (default; the form ORT fuses) or dynamo",
           lambda v: parse_choice(v, "exporter", ("torchscript", "dynamo"))),
    Option("calibration_method", "int8-static calibration: minmax (default), entropy or "
           "percentile", lambda v: parse_choice(
               v, "calibration_method", ("minmax", "entropy", "percentile"))),
    Option("calibration_batches", "int8-static: number of seeded calibration batches "
           "(default 8)", lambda v: parse_count(v, "calibration_batches", 1)),
    Option("per_channel", "per-channel weight scales for INT8 (default true)", parse_bool),
    Option("scenarios", "serving scenarios: single-stream (default: one request at a time), "
           "offline (all requests at once, dynamic batching), server (Poisson arrivals, "
           "highest rate meeting the p99 bound); the shape's batch is the batcher's maximum",
           _scenarios),
    Option("lengths", "request lengths of offline/server: lognormal:MEDIAN:SIGMA (default "
           "lognormal:48:0.6), uniform:LOW:HIGH or fixed:N, clipped to the shape's length",
           _lengths),
    Option("padding", "offline/server batches: buckets (default: pad to the length bucket), "
           "longest (pad to the batch's longest request) or fixed (pad to the shape's length)",
           lambda v: parse_choice(v, "padding", ("buckets", "longest", "fixed"))),
    Option("buckets", "length buckets of --xfperf-padding=buckets, e.g. 32,64,128 (default "
           "auto: powers of two from 16)", _buckets),
    Option("max_queue_delay_ms", "dynamic batcher: longest a request waits for its batch to "
           "fill (default 10)", lambda v: parse_positive_float(v, "max_queue_delay_ms")),
    Option("serving_requests", "requests per offline pass (default 400)",
           lambda v: parse_count(v, "serving_requests", 10)),
    Option("p99_bound_ms", "server scenario: the p99 latency bound, queueing included "
           "(default 100)", lambda v: parse_positive_float(v, "p99_bound_ms", strict=True)),
    Option("server_budget", "server scenario: seconds the rate search may take (default 60)",
           lambda v: parse_positive_float(v, "server_budget", strict=True)),
    Option("server_trial", "server scenario: seconds of arrivals per tried rate (default 5; "
           "at least 200 requests)", lambda v: parse_positive_float(v, "server_trial",
                                                                    strict=True)),
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


def parse_prices(value: Any, origin: str = "prices") -> dict[str, float]:
    """``{"cpu-amd-epyc-2c" = 0.10}`` in TOML, or ``KEY=PRICE,KEY=PRICE`` text."""
    if isinstance(value, str):
        value = _pairs(value, f"{origin}: write MACHINE_KEY=PRICE_PER_HOUR pairs like "
                              "cpu-amd-epyc-2c=0.10")
    if not isinstance(value, Mapping):
        raise ValueError(f"{origin}: a table of machine key = price per hour, e.g. "
                         "{\"cpu-amd-epyc-2c\" = 0.10}")
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
    renames = {"baselines": "baselines_dir", "report": "report_path",
               "markdown": "markdown_path", "html": "html_path", "plots": "plots_dir"}
    kwargs = {renames.get(k, k): v for k, v in values.items()}
    return Settings(enabled=enabled, tolerances=tolerances,
                    backend_options=parse_backend_tables(pyproject), **kwargs)
