"""Every bad input the plugin can meet gives a clear error naming the problem, never a crash.

The catalog below lists distinct malformed inputs by kind; a test counts them (at least 50).
Property-based tests (hypothesis) add generated variants on top: mutated baseline files and
random option values either parse or fail with the plugin's own error type and message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_xfperf.artifacts.cache import ArtifactCache
from pytest_xfperf.baselines import store
from pytest_xfperf.baselines.store import BaselineError
from pytest_xfperf.matrix import parse_marker
from pytest_xfperf.models.spec import ModelSpec
from pytest_xfperf.settings import OPTIONS, read_pyproject, resolve

VALID_ENTRY = {"metrics": {"p50_ms": 10.0, "throughput": 100.0}, "samples_ms": [10.0, 10.5],
               "versions": {"torch": "2.13.0"}, "graph": {}, "settings": {}, "stats": {}}
VALID_DOC = json.dumps({"schema": store.SCHEMA, "cases": {"m/b/fp32/b1s8": VALID_ENTRY}})


def _doc(**entry_changes: Any) -> str:
    entry = {**VALID_ENTRY, **entry_changes}
    return json.dumps({"schema": store.SCHEMA, "cases": {"m/b/fp32/b1s8": entry}})


BAD_BASELINES: dict[str, str | bytes] = {
    "empty file": "",
    "whitespace": "   \n",
    "truncated": VALID_DOC[: len(VALID_DOC) // 2],
    "not json": "baseline",
    "top-level list": "[]",
    "top-level number": "3",
    "NaN metric": VALID_DOC.replace("10.0", "NaN", 1),
    "Infinity metric": VALID_DOC.replace("10.0", "Infinity", 1),
    "-Infinity sample": VALID_DOC.replace("10.5", "-Infinity"),
    "duplicate case": VALID_DOC[:-2] + ', "m/b/fp32/b1s8": {}}}',
    "newer schema": '{"schema": 99, "cases": {}}',
    "schema 0": '{"schema": 0, "cases": {}}',
    "schema string": '{"schema": "1", "cases": {}}',
    "schema float": '{"schema": 1.5, "cases": {}}',
    "schema bool": '{"schema": true, "cases": {}}',
    "no cases": '{"schema": 1}',
    "cases list": '{"schema": 1, "cases": []}',
    "entry list": '{"schema": 1, "cases": {"a": []}}',
    "metrics missing": _doc(metrics=None),
    "metrics empty": _doc(metrics={}),
    "metrics string": _doc(metrics="fast"),
    "metric negative": _doc(metrics={"p50_ms": -1}),
    "metric bool": _doc(metrics={"p50_ms": True}),
    "metric string": _doc(metrics={"p50_ms": "10"}),
    "samples not list": _doc(samples_ms=3),
    "sample string": _doc(samples_ms=["1"]),
    "too many samples": _doc(samples_ms=[1.0] * (store.MAX_SAMPLES + 1)),
    "versions list": _doc(versions=["2.13"]),
    "version number": _doc(versions={"torch": 2}),
    "graph list": _doc(graph=[]),
    "settings string": _doc(settings="x"),
    "stats number": _doc(stats=3),
    "paired list": _doc(paired=[[1.0]]),
    # Found against an earlier store: each crashed or hung the run instead of a usage error.
    "401-digit metric": VALID_DOC.replace("10.0", "1" + "0" * 400, 1),
    "graph fused not counts": _doc(graph={"fused": "zzz"}),
    "graph fused count string": _doc(graph={"fused": {"Attention": "12"}}),
    "graph quantization list": _doc(graph={"quantization": [1]}),
    "graph built_with numbers": _doc(graph={"built_with": {"onnx": 1.16}}),
    "stats text": _doc(stats={"cv": "high"}),
    "noise nested": _doc(noise={"cv": {"x": 1}}),
    "metric zero": _doc(metrics={"p50_ms": 0, "throughput": 100.0}),
    "sample zero": _doc(samples_ms=[0.0, 10.0]),
    "unknown metric": _doc(metrics={"p50_ms": 10.0, "latency": 3.0}),
    "timing list": _doc(timing=[1.0]),
    "timing no blocks": _doc(timing={"clock": "wall", "case_ms": []}),
    "timing zero block": _doc(timing={"clock": "wall", "case_ms": [1.0, 0.0]}),
    "timing unpaired yardstick": _doc(timing={"clock": "wall", "case_ms": [1.0, 2.0],
                                              "yardstick_ms": [1.0]}),
    "timing clock number": _doc(timing={"clock": 1, "case_ms": [1.0]}),
    "timing pacing number": _doc(timing={"clock": "device", "case_ms": [1.0], "pacing": 1}),
    "timing too many blocks": _doc(timing={"case_ms": [1.0] * (store.MAX_BLOCKS + 1)}),
    "speedup string blocks": _doc(speedup={"case_ms": ["1.0"]}),
    "machine list": json.dumps({"schema": store.SCHEMA, "cases": {}, "machine": []}),
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "binary garbage": bytes(range(256)),
    "utf-16": VALID_DOC.encode("utf-16"),
    "BOM": "\ufeff" + VALID_DOC,
}

BAD_CONFIG: dict[str, tuple[dict[str, Any], str]] = {
    "models empty": ({"models": []}, "empty"),
    "models number": ({"models": 3}, "models"),
    "shape without seq": ({"shapes": "1x"}, "shape"),
    "shape zero batch": ({"shapes": "0x8"}, "batch"),
    "shape words": ({"shapes": "big"}, "shape"),
    "tolerance negative": ({"tolerance": "-1"}, "outside (0, 10)"),
    "tolerance too big": ({"tolerance": 10}, "outside (0, 10)"),
    "tolerance words": ({"tolerance": "abc"}, "tolerance"),
    "tolerance nan": ({"tolerance": "nan"}, "tolerance"),
    "warmup negative": ({"warmup_rounds": "-1"}, "warmup_rounds"),
    "min_rounds zero": ({"min_rounds": 0}, "min_rounds"),
    "min_time words": ({"min_time": "fast"}, "min_time"),
    "max_time negative": ({"max_time": "-5"}, "max_time"),
    "seed words": ({"seed": "x"}, "seed"),
    "exporter unknown": ({"exporter": "onnx"}, "exporter must be one of"),
    "calibration unknown": ({"calibration_method": "kl"}, "calibration_method must be one of"),
    "calibration batches zero": ({"calibration_batches": 0}, "calibration_batches"),
    "per_channel maybe": ({"per_channel": "maybe"}, "true or false"),
    "tolerances text": ({"tolerances": "p50"}, "METRIC=VALUE"),
    "tolerances unknown metric": ({"tolerances": {"p51": 0.1}}, "unknown tolerance 'p51'"),
    "tolerances bad value": ({"tolerances": {"p50": "x"}}, "tolerance"),
    "ort-cpu unknown setting": ({"ort-cpu": {"threads": 1}}, "unknown setting"),
    "ort-cpu bad mode": ({"ort-cpu": {"execution_mode": "turbo"}}, "execution_mode"),
    "torch-cpu negative threads": ({"torch-cpu": {"threads": -1}}, "threads"),
    "backend table not a table": ({"ort-cpu": "fast"}, "must be a table"),
    "timeout negative": ({"timeout": "-1"}, "timeout"),
    "memory limit words": ({"max_memory_mb": "lots"}, "max_memory_mb"),
}

BAD_PYPROJECT = {
    "unknown key": '[tool.xfperf]\nmodel = ["x"]\n',
    "bad toml": "[tool.xfperf\n",
    "xfperf not a table": 'tool = {xfperf = 3}\n',
}

BAD_MARKERS: dict[str, dict[str, Any]] = {
    "unknown argument": {"model": "x"},
    "models empty": {"models": []},
    "backends empty": {"backends": []},
    "shapes empty": {"shapes": []},
    "bad shape": {"shapes": ["1by8"]},
    "bad tolerance": {"tolerance": "-5%"},
    "bad tolerances": {"tolerances": {"speed": 0.1}},
    "tolerances text": {"tolerances": "p50"},
}

BAD_MODEL_NAMES = ["../evil", "a/b", "Upper", "", "x" * 65, "-dash", "nul\x00", "space name"]

DAMAGES = ["truncate", "bit-flip", "delete file", "meta not json", "meta without files",
           "meta wrong size", "empty file"]


def test_the_catalog_has_at_least_fifty_distinct_inputs():
    count = (len(BAD_BASELINES) + len(BAD_CONFIG) + len(BAD_PYPROJECT) + len(BAD_MARKERS)
             + len(BAD_MODEL_NAMES) + 1 + len(DAMAGES))  # +1: a non-callable build
    assert count >= 50, count


@pytest.mark.parametrize("name", sorted(BAD_BASELINES))
def test_bad_baseline_is_reported_and_left_byte_identical(tmp_path: Path, name: str):
    path = tmp_path / "cpu-x-2c.json"
    data = BAD_BASELINES[name]
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    before = path.read_bytes()
    with pytest.raises(BaselineError, match=r"cpu-x-2c.json is unusable: .+ left untouched; "
                                            r"fix it by hand"):
        store.load(path)
    with pytest.raises(BaselineError):
        store.merge_and_write(path, {"m/b/fp32/b1s8": VALID_ENTRY}, {"key": "cpu-x-2c"})
    assert path.read_bytes() == before


def test_oversized_baseline_is_refused_without_reading_it(tmp_path: Path):
    path = tmp_path / "big.json"
    with path.open("wb") as handle:
        handle.truncate(store.MAX_BYTES + 1)  # sparse: no need to write 64 MiB
    with pytest.raises(BaselineError, match="larger than the"):
        store.load(path)


@pytest.mark.parametrize("name", sorted(BAD_CONFIG))
def test_bad_config_value_names_its_source(name: str):
    table, message = BAD_CONFIG[name]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve({}, {}, table, environ={})


@pytest.mark.parametrize("name", sorted(BAD_PYPROJECT))
def test_bad_pyproject_is_a_clear_error(tmp_path: Path, name: str):
    (tmp_path / "pyproject.toml").write_text(BAD_PYPROJECT[name])
    with pytest.raises(ValueError, match=r"pyproject.toml"):
        read_pyproject(tmp_path)


@pytest.mark.parametrize("name", sorted(BAD_MARKERS))
def test_bad_marker_names_the_test(name: str):
    with pytest.raises(ValueError, match=r"test_x\.py::test_y: "):
        parse_marker(BAD_MARKERS[name], "test_x.py::test_y")


@pytest.mark.parametrize("name", BAD_MODEL_NAMES)
def test_unsafe_model_names_are_refused(name: str):
    """Names become test ids and file names: nothing that could escape a directory."""
    with pytest.raises(ValueError, match="is not allowed"):
        ModelSpec(name=name, build=lambda: None, make_inputs=lambda b, s, r: {})


def test_non_callable_build_is_refused():
    with pytest.raises(ValueError, match="must be callables"):
        ModelSpec(name="ok", build=3, make_inputs=lambda b, s, r: {})  # type: ignore[arg-type]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_cache_entry_is_detected_and_rebuilt(tmp_path: Path, damage: str):
    cache = ArtifactCache(tmp_path)
    builds: list[int] = []

    def build(directory: Path) -> dict[str, Any]:
        builds.append(1)
        (directory / "model.onnx").write_bytes(b"x" * 4096)
        return {"n": len(builds)}

    entry = cache.get_or_build({"k": 1}, build)
    file, meta = entry.file("model.onnx"), entry.path / "meta.json"
    if damage == "truncate":
        file.write_bytes(b"x" * 100)
    elif damage == "bit-flip":
        data = bytearray(file.read_bytes())
        data[2000] ^= 0x10
        file.write_bytes(bytes(data))
    elif damage == "delete file":
        file.unlink()
    elif damage == "meta not json":
        meta.write_text("{")
    elif damage == "meta without files":
        meta.write_text("{}")
    elif damage == "meta wrong size":
        record = json.loads(meta.read_text())
        record["files"]["model.onnx"]["size"] = 1
        meta.write_text(json.dumps(record))
    elif damage == "empty file":
        file.write_bytes(b"")
    fresh = ArtifactCache(tmp_path)
    again = fresh.get_or_build({"k": 1}, build)
    assert len(builds) == 2 and again.built_now and again.info == {"n": 2}
    assert again.file("model.onnx").read_bytes() == b"x" * 4096
    assert fresh.rebuilt_corrupt and list((tmp_path / "corrupt").iterdir())


# -- generated inputs ------------------------------------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, len(VALID_DOC)), position=st.integers(0, len(VALID_DOC) - 1),
       char=st.characters(codec="utf-8"), mode=st.sampled_from(["truncate", "replace",
                                                               "insert"]))
def test_mutated_baseline_loads_or_is_reported(tmp_path_factory, cut, position, char, mode):
    if mode == "truncate":
        text = VALID_DOC[:cut]
    elif mode == "replace":
        text = VALID_DOC[:position] + char + VALID_DOC[position + 1:]
    else:
        text = VALID_DOC[:position] + char + VALID_DOC[position:]
    path = tmp_path_factory.mktemp("mut") / "k.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        document = store.load(path)
    except BaselineError as exc:
        assert "is unusable" in str(exc) and "left untouched" in str(exc)
    else:  # a mutation that is still a valid document must have been fully validated
        for case_id, entry in document["cases"].items():
            store.validate_entry(case_id, entry)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from([o.key for o in OPTIONS if not o.flag]),
       value=st.one_of(st.text(max_size=12), st.integers(-5, 10**6), st.floats(),
                       st.lists(st.text(max_size=5), max_size=3)))
def test_any_option_value_parses_or_names_its_source(key, value):
    try:
        resolve({}, {}, {key: value}, environ={})
    except ValueError as exc:
        assert f"[tool.xfperf] {key}" in str(exc)
