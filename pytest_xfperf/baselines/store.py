"""Baseline files: ``<dir>/<machine-key>.json``, plain JSON, validated on every load.

Writes merge under a lock and replace the file atomically, so concurrent writers cannot lose
each other's cases and a killed writer leaves the previous file intact. A file that does not
validate is reported and never overwritten.
"""

from __future__ import annotations

import json
import math
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_xfperf.fileio import atomic_write_bytes, locked

# Schema 3: the gate's block record ("timing": block medians of the case and of the
# machine yardstick, see baselines/rule.py), the PyTorch reference's record ("speedup") and the
# machine fingerprint the file was recorded on. Entries of schema 1 and 2 files load (their
# threshold metrics, accuracy and graph still gate) and say their timing must be recorded
# again; the next update writes the file as schema 3.
SCHEMA = 3
MAX_BYTES = 64 * 1024 * 1024
MAX_SAMPLES = 256
MAX_BLOCKS = 64
_SAFE_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
# Larger magnitudes than this are not measurements: refused before any float conversion
# (a 401-digit integer would overflow it).
_LARGEST = 1e15


class BaselineError(Exception):
    """A baseline file cannot be used; the message names the file, the problem and the fix."""


def baseline_path(directory: Path, key: str) -> Path:
    if not _SAFE_KEY.match(key):
        raise BaselineError(f"machine key {key!r} is not a safe file name")
    return directory / f"{key}.json"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} (NaN and Infinity are not valid baselines)")


def _number(value: Any, where: str, positive: bool = False, signed: bool = False) -> float:
    """A finite JSON number in range; ``positive``: > 0 (times), else >= 0 unless ``signed``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {value!r}")
    if isinstance(value, int) and abs(value) > _LARGEST:
        raise ValueError(f"{where} is out of range ({len(str(abs(value)))} digits)")
    number = float(value)
    if not math.isfinite(number) or abs(number) > _LARGEST:
        raise ValueError(f"{where} must be a finite number below {_LARGEST:g}, got {value!r}")
    if positive and number <= 0:
        raise ValueError(f"{where} must be > 0 (a time or rate), got {value!r}")
    if not positive and not signed and number < 0:
        raise ValueError(f"{where} must be >= 0, got {value!r}")
    return number


def _object(entry: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any] | None:
    value = entry.get(name)
    if value is None and name not in entry:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{where}.{name} must be an object")
    return value


def _numbers_by_name(table: Any, where: str, integers: bool = False) -> None:
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be an object of numbers")
    for key, value in table.items():
        if integers and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{where}.{key} must be a whole number, got {value!r}")
        _number(value, f"{where}.{key}", signed=not integers)


def _check_graph(graph: Mapping[str, Any], where: str) -> None:
    """The artifact's fingerprint (artifacts/graph.py): counts, coverage, opset, versions."""
    for name in ("fused", "ops"):
        if name in graph:
            _numbers_by_name(graph[name], f"{where}.{name}", integers=True)
    if "quantization" in graph and graph["quantization"] is not None:
        quantization = graph["quantization"]
        if not isinstance(quantization, dict):
            raise ValueError(f"{where}.quantization must be an object")
        for key, value in quantization.items():
            if not isinstance(value, (str, bool)) and value is not None:
                _number(value, f"{where}.quantization.{key}")
    if "opset" in graph and graph["opset"] is not None:
        _number(graph["opset"], f"{where}.opset")
    built = graph.get("built_with", {})
    if not isinstance(built, dict) or not all(isinstance(v, str) for v in built.values()):
        raise ValueError(f"{where}.built_with must map library names to version strings")


def _check_blocks(blocks: Any, where: str) -> int:
    if not isinstance(blocks, list) or not 0 < len(blocks) <= MAX_BLOCKS:
        raise ValueError(f"{where} must be a list of 1 to {MAX_BLOCKS} block times")
    for i, value in enumerate(blocks):
        _number(value, f"{where}[{i}]", positive=True)
    return len(blocks)


def _check_processes(record: Mapping[str, Any], count: int, where: str) -> None:
    """A pooled record's processes: each one's own blocks, which together are the record's."""
    processes = record["processes"]
    if not isinstance(processes, list) or len(processes) < 2:
        raise ValueError(f"{where}.processes must be a list of at least two processes' blocks")
    total = 0
    for i, process in enumerate(processes):
        if not isinstance(process, dict) or not set(process) <= {"case_ms", "yardstick_ms"}:
            raise ValueError(f"{where}.processes[{i}] must be an object with case_ms and, "
                             "where the record has them, yardstick_ms")
        blocks = _check_blocks(process.get("case_ms"), f"{where}.processes[{i}].case_ms")
        if bool(process.get("yardstick_ms")) != bool(record.get("yardstick_ms")):
            raise ValueError(f"{where}.processes[{i}]: yardstick_ms must be there exactly "
                             "where the record has it")
        if process.get("yardstick_ms") and _check_blocks(
                process["yardstick_ms"], f"{where}.processes[{i}].yardstick_ms") != blocks:
            raise ValueError(f"{where}.processes[{i}]: case_ms and yardstick_ms must pair up")
        total += blocks
    if total != count:
        raise ValueError(f"{where}: the processes' blocks ({total}) must be the record's "
                         f"({count})")


def _check_record(record: Mapping[str, Any], where: str) -> None:
    """A block record: the case's (or reference's) block medians and the yardstick's, in
    pairs, and how they were taken."""
    count = _check_blocks(record.get("case_ms"), f"{where}.case_ms")
    yardstick = record.get("yardstick_ms", [])
    if yardstick:
        if _check_blocks(yardstick, f"{where}.yardstick_ms") != count:
            raise ValueError(f"{where}: case_ms and yardstick_ms must pair up (same length)")
    for name in ("clock", "yardstick", "reference", "pacing"):
        if name in record and not isinstance(record[name], str):
            raise ValueError(f"{where}.{name} must be a string")
    if "processes" in record:
        _check_processes(record, count, where)
    if "pace_ms" in record:
        pace = record["pace_ms"]
        if not isinstance(pace, dict) or set(pace) != {"launched", "finished"}:
            raise ValueError(f"{where}.pace_ms must be an object with 'launched' and "
                             "'finished' (milliseconds)")
        for key, value in pace.items():
            _number(value, f"{where}.pace_ms.{key}", positive=True)


def validate_entry(case_id: str, entry: Any) -> None:
    from pytest_xfperf.metrics import METRICS

    where = f"cases[{case_id!r}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object")
    metrics = entry.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError(f"{where}.metrics must be a non-empty object")
    for name, value in metrics.items():
        metric = METRICS.get(name)
        if metric is None:
            raise ValueError(f"{where}.metrics.{name} is not a metric this version knows "
                             f"(valid: {', '.join(METRICS)})")
        _number(value, f"{where}.metrics.{name}",
                positive=metric.timing and metric.unit not in ("MB",),
                signed=metric.absolute)
    _check_samples(entry.get("samples_ms", []), f"{where}.samples_ms")
    versions = entry.get("versions", {})
    if not isinstance(versions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in versions.items()
    ):
        raise ValueError(f"{where}.versions must map library names to version strings")
    for name in ("settings", "serving", "paired"):
        _object(entry, name, where)
    for name in ("stats", "noise"):
        table = _object(entry, name, where)
        if table is not None:
            _numbers_by_name(table, f"{where}.{name}")
    graph = _object(entry, "graph", where)
    if graph is not None:
        _check_graph(graph, f"{where}.graph")
    for name in ("timing", "speedup"):
        record = _object(entry, name, where)
        if record is not None:
            _check_record(record, f"{where}.{name}")
    more = _object(entry, "more_timing", where)
    for name, record in (more or {}).items():
        if name not in METRICS or not isinstance(record, dict):
            raise ValueError(f"{where}.more_timing.{name} must be a block record of a metric "
                             f"(valid: {', '.join(METRICS)})")
        _check_record(record, f"{where}.more_timing.{name}")
    _object(entry, "generation", where)
    if "seconds" in entry:
        _number(entry["seconds"], f"{where}.seconds")
    if not isinstance(entry.get("memory_mode", ""), str):
        raise ValueError(f"{where}.memory_mode must be a string")


def _check_samples(samples: Any, where: str) -> None:
    if not isinstance(samples, list) or len(samples) > MAX_SAMPLES:
        raise ValueError(f"{where} must be a list of at most {MAX_SAMPLES} numbers")
    for i, value in enumerate(samples):
        _number(value, f"{where}[{i}]", positive=True)


def parse(text: str) -> dict[str, Any]:
    """Parse and validate a baseline document; ValueError says what is wrong."""
    try:
        data: Any = json.loads(text, object_pairs_hook=_no_duplicates,
                               parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("the top level must be an object")
    schema = data.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise ValueError(f"'schema' must be an integer, got {schema!r}")
    if schema > SCHEMA:
        raise ValueError(
            f"schema {schema} is newer than this pytest-xfperf understands ({SCHEMA}): "
            "upgrade pytest-xfperf"
        )
    if schema < 1:
        raise ValueError(f"unknown schema {schema}")
    cases = data.get("cases")
    if not isinstance(cases, dict):
        raise ValueError("'cases' must be an object keyed by case id")
    for case_id, entry in cases.items():
        validate_entry(case_id, entry)
    machine = data.get("machine", {})
    if not isinstance(machine, dict):
        raise ValueError("'machine' must be an object (the fingerprint of the recording machine)")
    if schema < SCHEMA:
        return migrate(data)
    document: dict[str, Any] = data
    return document


def noise_block(samples: list[float], stats: Mapping[str, Any]) -> dict[str, float]:
    """The recording run's noise: robust CV (MAD-based) of its samples, and its CV."""
    from pytest_xfperf.measure.stats import robust_cv

    robust = round(robust_cv(samples), 6) if samples else 0.0
    cv = stats.get("cv", 0.0)
    return {"robust_cv": robust, "cv": round(float(cv), 6) if isinstance(cv, (int, float))
            else 0.0}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """An older file in memory as the current schema (the file itself is not touched): the
    noise block derived where missing; the block record cannot be derived, so its entries
    gate thresholds, accuracy and graph only, and their timing says to record again."""
    cases = {}
    for case_id, entry in data["cases"].items():
        entry = dict(entry)
        entry.setdefault("noise", noise_block(list(entry.get("samples_ms", [])),
                                              entry.get("stats", {})))
        entry.pop("paired", None)  # the interleaved record of schema 2: not this rule's
        cases[case_id] = entry
    return {**data, "schema": SCHEMA, "cases": cases, "migrated_from": data["schema"]}


def load(path: Path) -> dict[str, Any]:
    """The validated document, or an empty one if the file does not exist yet."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {"schema": SCHEMA, "cases": {}}
    except OSError as exc:
        raise BaselineError(f"baseline file {path} cannot be read: {exc}") from None
    if not stat.S_ISREG(mode):
        raise BaselineError(
            f"baseline file {path} is not a regular file (a FIFO, device or directory): it "
            "was not opened; remove it or point --xfperf-baselines elsewhere")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ValueError(f"{size} bytes is larger than the {MAX_BYTES}-byte limit")
        return parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BaselineError(
            f"baseline file {path} is unusable: {exc}. It was left untouched; fix it by hand, "
            f"restore it from version control, or delete it and re-record with "
            f"--xfperf-update-baselines"
        ) from None


def merge_and_write(
    path: Path, entries: Mapping[str, Mapping[str, Any]], machine: Mapping[str, Any],
    pool: int = 1,
) -> dict[str, str]:
    """Merge ``entries`` into the file under a lock and replace it atomically. With ``pool``
    above 1, each entry's block records join those of the file's entry where both measured
    the same setup (``pooling``), up to ``pool`` processes. Returns, for each entry where
    pooling was asked for, what became of it."""
    from pytest_xfperf.baselines import pooling

    for case_id, entry in entries.items():
        validate_entry(case_id, entry)
    pooled: dict[str, str] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.parent):
        document = load(path)  # refuses (raises) rather than overwrite a corrupt file
        document.pop("migrated_from", None)
        # A writer killed mid-write leaves its private temp file; under the lock no other
        # writer is active, so any left for this file is stale.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        document["schema"] = SCHEMA
        document["machine"] = dict(machine)
        cases = dict(document["cases"])
        for case_id, entry in entries.items():
            if pool > 1:
                cases[case_id], reason = pooling.pooled_entry(entry, cases.get(case_id), pool,
                                                              MAX_BLOCKS)
                count = pooling.processes_of(cases[case_id].get("timing"))
                pooled[case_id] = (f"{count} processes" if reason is None
                                   else f"1 process ({reason})")
                validate_entry(case_id, cases[case_id])
            else:
                cases[case_id] = dict(entry)
        document["cases"] = dict(sorted(cases.items()))
        text = json.dumps(document, indent=1, sort_keys=False, allow_nan=False) + "\n"
        atomic_write_bytes(path, text.encode("utf-8"))
    return pooled


def remove_cases(path: Path, case_ids: set[str]) -> list[str]:
    """Drop ``case_ids`` from the file under the lock, atomically; returns those removed."""
    with locked(path.parent):
        if not path.exists():
            raise BaselineError(f"baseline file {path} does not exist")
        document = load(path)
        removed = sorted(set(document["cases"]) & case_ids)
        if removed:
            document.pop("migrated_from", None)
            document["schema"] = SCHEMA
            document["cases"] = {k: v for k, v in document["cases"].items() if k not in removed}
            text = json.dumps(document, indent=1, allow_nan=False) + "\n"
            atomic_write_bytes(path, text.encode("utf-8"))
        return removed
