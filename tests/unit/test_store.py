import json
import multiprocessing
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
    assert store.load(tmp_path / "none.json") == {"schema": 1, "cases": {}}


BAD_DOCUMENTS = {
    "truncated": '{"schema": 1, "cases": {"a": {"metrics": {"p50_ms": 1',
    "not json": "hello",
    "top level list": "[]",
    "nan": '{"schema": 1, "cases": {"a": {"metrics": {"p50_ms": NaN}}}}',
    "infinity": '{"schema": 1, "cases": {"a": {"metrics": {"p50_ms": Infinity}}}}',
    "duplicate key": '{"schema": 1, "cases": {"a": {"metrics": {"p50_ms": 1}}, "a": {}}}',
    "newer schema": '{"schema": 99, "cases": {}}',
    "schema string": '{"schema": "1", "cases": {}}',
    "no cases": '{"schema": 1}',
    "metrics string": '{"schema": 1, "cases": {"a": {"metrics": "fast"}}}',
    "negative": '{"schema": 1, "cases": {"a": {"metrics": {"p50_ms": -1}}}}',
    "bool metric": '{"schema": 1, "cases": {"a": {"metrics": {"p50_ms": true}}}}',
    "samples not list": '{"schema": 1, "cases": {"a": {"metrics": {"x": 1}, "samples_ms": 3}}}',
    "versions not str":
        '{"schema": 1, "cases": {"a": {"metrics": {"x": 1}, "versions": {"t": 2}}}}',
    "deep nesting": "[" * 100000 + "]" * 100000,
}


@pytest.mark.parametrize("name", BAD_DOCUMENTS)
def test_bad_file_is_reported_and_left_untouched(tmp_path: Path, name: str):
    path = tmp_path / "cpu-test-2c.json"
    path.write_text(BAD_DOCUMENTS[name])
    before = path.read_bytes()
    with pytest.raises(BaselineError, match=f"{path.name} is unusable: .+ left untouched"):
        store.load(path)
    with pytest.raises(BaselineError):
        store.merge_and_write(path, {"x/y/fp32/b1s1": entry()}, MACHINE)
    assert path.read_bytes() == before


def test_newer_schema_says_upgrade(tmp_path: Path):
    path = tmp_path / "k.json"
    path.write_text('{"schema": 2, "cases": {}}')
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


def _writer(path: str, worker: int, rounds: int) -> None:
    for r in range(rounds):
        store.merge_and_write(Path(path), {f"w{worker}/r{r}/fp32/b1s1": entry(r + 1)}, MACHINE)


def test_concurrent_writers_lose_nothing(tmp_path: Path):
    path = tmp_path / "k.json"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(path), w, 10)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    assert len(json.loads(path.read_text())["cases"]) == 40
