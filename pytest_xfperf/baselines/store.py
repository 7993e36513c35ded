"""Baseline files: ``<dir>/<machine-key>.json``, plain JSON, validated on every load.

Writes merge under a lock and replace the file atomically, so concurrent writers cannot lose
each other's cases and a killed writer leaves the previous file intact. A file that does not
validate is reported and never overwritten.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_xfperf.fileio import atomic_write_bytes, locked

# Schema 2 adds a per-entry "noise" block (robust CV and CV of the recording run), and
# optionally "paired" (interleaved samples of the case and its reference). Schema 1
# files are migrated on load (the block is derived from their samples and stats) and written
# back as schema 2 by the next update.
SCHEMA = 2
MAX_BYTES = 64 * 1024 * 1024
MAX_SAMPLES = 256
_SAFE_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


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


def _check_number(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"{where} must be >= 0, got {value!r}")


def validate_entry(case_id: str, entry: Any) -> None:
    where = f"cases[{case_id!r}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object")
    metrics = entry.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError(f"{where}.metrics must be a non-empty object")
    for name, value in metrics.items():
        _check_number(value, f"{where}.metrics.{name}")
    _check_samples(entry.get("samples_ms", []), f"{where}.samples_ms")
    versions = entry.get("versions", {})
    if not isinstance(versions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in versions.items()
    ):
        raise ValueError(f"{where}.versions must map library names to version strings")
    for optional in ("graph", "settings", "stats", "noise", "serving", "paired"):
        if optional in entry and not isinstance(entry[optional], dict):
            raise ValueError(f"{where}.{optional} must be an object")
    if "paired" in entry:
        _check_paired(entry["paired"], f"{where}.paired")


def _check_paired(paired: dict[str, Any], where: str) -> None:
    """The case and its reference timed in interleaved blocks when the entry was recorded:
    two lists of as many blocks, each a list of samples, at most MAX_SAMPLES per side."""
    sides = [paired.get("case_ms"), paired.get("reference_ms")]
    for name, blocks in zip(("case_ms", "reference_ms"), sides, strict=True):
        if not isinstance(blocks, list) or not all(isinstance(b, list) for b in blocks):
            raise ValueError(f"{where}.{name} must be a list of blocks (lists of numbers)")
        _check_samples([x for b in blocks for x in b], f"{where}.{name} (all blocks)")
    assert isinstance(sides[0], list) and isinstance(sides[1], list)
    if len(sides[0]) != len(sides[1]):
        raise ValueError(f"{where}: case_ms has {len(sides[0])} blocks but reference_ms "
                         f"{len(sides[1])}; they must pair up")


def _check_samples(samples: Any, where: str) -> None:
    if not isinstance(samples, list) or len(samples) > MAX_SAMPLES:
        raise ValueError(f"{where} must be a list of at most {MAX_SAMPLES} numbers")
    for i, value in enumerate(samples):
        _check_number(value, f"{where}[{i}]")


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
    if schema == 1:
        return migrate_v1(data)
    document: dict[str, Any] = data
    return document


def noise_block(samples: list[float], stats: Mapping[str, Any]) -> dict[str, float]:
    """The recording run's noise: robust CV (MAD-based) of its samples, and its CV."""
    from pytest_xfperf.baselines.decision import robust_cv

    robust = round(robust_cv(samples), 6) if samples else 0.0
    cv = stats.get("cv", 0.0)
    return {"robust_cv": robust, "cv": round(float(cv), 6) if isinstance(cv, (int, float))
            else 0.0}


def migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    cases = {}
    for case_id, entry in data["cases"].items():
        entry = dict(entry)
        entry.setdefault("noise", noise_block(list(entry.get("samples_ms", [])),
                                              entry.get("stats", {})))
        cases[case_id] = entry
    return {**data, "schema": SCHEMA, "cases": cases, "migrated_from": 1}


def load(path: Path) -> dict[str, Any]:
    """The validated document, or an empty one if the file does not exist yet."""
    if not path.exists():
        return {"schema": SCHEMA, "cases": {}}
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
    path: Path, entries: Mapping[str, Mapping[str, Any]], machine: Mapping[str, Any]
) -> None:
    """Merge ``entries`` into the file under a lock and replace it atomically."""
    for case_id, entry in entries.items():
        validate_entry(case_id, entry)
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
        cases.update({k: dict(v) for k, v in entries.items()})
        document["cases"] = dict(sorted(cases.items()))
        text = json.dumps(document, indent=1, sort_keys=False, allow_nan=False) + "\n"
        atomic_write_bytes(path, text.encode("utf-8"))


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
