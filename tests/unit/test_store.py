import json
from pathlib import Path

import pytest

from pytest_xfperf.baselines import store
from pytest_xfperf.baselines.store import BaselineError

MACHINE = {"key": "cpu-test-2c"}


def entry(p50: float = 10.0) -> dict:
    return {"metrics": {"p50_ms": p50, "throughput": 100.0}, "samples_ms": [p50, p50 + 1],
            "versions": {"torch": "2.13.0"}}


def test_round_trip_and_merge(tmp_path: Path):
    path = tmp_path / "b" / "cpu-test-2c.json"
    store.merge_and_write(path, {"a/x/fp32/b1s8": entry(1)}, MACHINE)
    store.merge_and_write(path, {"b/x/fp32/b1s8": entry(2)}, MACHINE)
    cases = store.load(path)["cases"]
    assert set(cases) == {"a/x/fp32/b1s8", "b/x/fp32/b1s8"}
    assert cases["b/x/fp32/b1s8"]["metrics"]["p50_ms"] == 2
    assert list(tmp_path.joinpath("b").iterdir()) == [path]  # no temp or lock files left


def test_missing_file_is_empty(tmp_path: Path):
    assert store.load(tmp_path / "none.json") == {"schema": store.SCHEMA, "cases": {}}


def test_schema_1_is_migrated_on_load_and_written_as_current(tmp_path: Path):
    path = tmp_path / "cpu-test-2c.json"
    old = {"schema": 1, "cases": {"a/x/fp32/b1s8": {
        "metrics": {"p50_ms": 10.0}, "samples_ms": [9.0, 10.0, 11.0, 10.0, 10.0],
        "stats": {"cv": 0.07}, "versions": {}}}}
    path.write_text(json.dumps(old))
    loaded = store.load(path)
    assert loaded["migrated_from"] == 1 and loaded["schema"] == store.SCHEMA
    assert loaded["cases"]["a/x/fp32/b1s8"]["noise"] == {"robust_cv": 0.0, "cv": 0.07}
    store.merge_and_write(path, {"b/x/fp32/b1s8": entry()}, MACHINE)
    written = json.loads(path.read_text())
    assert written["schema"] == store.SCHEMA and "migrated_from" not in written
    assert "noise" in written["cases"]["a/x/fp32/b1s8"]


def test_newer_schema_says_upgrade(tmp_path: Path):
    path = tmp_path / "k.json"
    path.write_text(f'{{"schema": {store.SCHEMA + 1}, "cases": {{}}}}')
    with pytest.raises(BaselineError, match="upgrade pytest-xfperf"):
        store.load(path)


def test_unsafe_machine_key_is_refused(tmp_path: Path):
    with pytest.raises(BaselineError):
        store.baseline_path(tmp_path, "../../etc/passwd")


def test_invalid_entry_is_not_written(tmp_path: Path):
    path = tmp_path / "k.json"
    with pytest.raises(ValueError, match="finite"):
        store.merge_and_write(path, {"a": {"metrics": {"p50_ms": float("nan")}}}, MACHINE)
    assert not path.exists()


def test_the_record_step_keeps_blocks_and_a_bounded_spread_of_samples(tmp_path: Path):
    """300 samples become MAX_SAMPLES evenly spread; the block records are kept whole, in
    order, and the entry loads back."""
    from pytest_xfperf.baselines.record import entry as record_entry
    from pytest_xfperf.matrix import Case, Shape
    from pytest_xfperf.measure.stats import summarize
    from pytest_xfperf.result import Result

    timing = {"clock": "wall", "case_ms": [1.0 + i for i in range(12)],
              "yardstick_ms": [0.5] * 12, "yardstick": "mlp1 onnxruntime 1.0 threads=0"}
    result = Result(case=Case("m", "ort-cpu", "fp32", Shape(1, 8)),
                    stats=summarize([0.001 * (1 + i % 7) for i in range(300)], 1),
                    samples_ms=[1.0 + i % 7 for i in range(300)], timing=timing,
                    reference_timing={**timing, "reference": "torch-cpu"}, speedup=2.0)
    kept = record_entry(result)
    assert len(kept["samples_ms"]) == store.MAX_SAMPLES
    assert kept["timing"]["case_ms"][3] == 4.0 and len(kept["timing"]["case_ms"]) == 12
    assert kept["speedup"]["reference"] == "torch-cpu" and kept["metrics"]["speedup"] == 2.0
    path = tmp_path / "cpu-test-2c.json"
    store.merge_and_write(path, {"m/ort-cpu/fp32/b1s8": kept}, MACHINE)
    assert store.load(path)["cases"]["m/ort-cpu/fp32/b1s8"]["timing"] == kept["timing"]
