"""Baselines and cache under kill -9 and concurrent writers: nothing lost, nothing torn.

These use the store and the cache directly (no model needed), in forked processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from pytest_xfperf.artifacts.cache import ArtifactCache
from pytest_xfperf.baselines import store

MACHINE = {"key": "cpu-test-2c"}
FORK = multiprocessing.get_context("fork")


def entry(value: float, samples: int = 200) -> dict[str, Any]:
    return {"metrics": {"p50_ms": value, "throughput": 1000 / value},
            "samples_ms": [value + i * 1e-3 for i in range(samples)],
            "versions": {"torch": "2.13.0"}}


def _update_forever(path: str, worker: int) -> None:
    """Keep rewriting a growing baseline until killed."""
    n = 0
    while True:
        n += 1
        store.merge_and_write(Path(path), {f"k{worker}/{n % 40}/fp32/b1s1": entry(n)}, MACHINE)


def test_kill_9_during_100_updates_never_leaves_a_bad_file(tmp_path: Path):
    path = tmp_path / "cpu-test-2c.json"
    store.merge_and_write(path, {"seed/x/fp32/b1s1": entry(1.0)}, MACHINE)
    rng = random.Random(0)
    corrupted = 0
    for round_ in range(100):
        writer = FORK.Process(target=_update_forever, args=(str(path), round_))
        writer.start()
        time.sleep(rng.uniform(0.0, 0.05))  # kill at a random point of some write
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        try:
            cases = store.load(path)["cases"]
        except store.BaselineError:
            corrupted += 1
            continue
        assert "seed/x/fp32/b1s1" in cases  # earlier updates survive every kill
    assert corrupted == 0
    # Killed writers may leave their private temp files; the next write sweeps them.
    store.merge_and_write(path, {"last/x/fp32/b1s1": entry(2.0)}, MACHINE)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def _write_rounds(path: str, worker: int, rounds: int) -> None:
    for r in range(rounds):
        store.merge_and_write(Path(path), {f"w{worker}/r{r}/fp32/b1s1": entry(r + 1, 20)},
                              MACHINE)


def test_8_writers_50_rounds_lose_nothing(tmp_path: Path):
    path = tmp_path / "cpu-test-2c.json"
    workers = [FORK.Process(target=_write_rounds, args=(str(path), w, 50)) for w in range(8)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(300)
        assert p.exitcode == 0
    cases = json.loads(path.read_text())["cases"]
    expected = {f"w{w}/r{r}/fp32/b1s1" for w in range(8) for r in range(50)}
    assert set(cases) == expected  # 400 entries, 0 lost


def _build_same(root: str, results: Any) -> None:
    calls = []

    def build(directory: Path) -> dict[str, Any]:
        calls.append(1)
        with (directory / "model.onnx").open("ab") as handle:
            for _ in range(20):  # slow, large writes: a torn file would show
                handle.write(os.urandom(1 << 16))
                handle.flush()
                time.sleep(0.005)
        return {"pid": os.getpid()}

    built = ArtifactCache(Path(root)).get_or_build({"same": "key"}, build)
    results.put((len(calls), built.info["pid"], built.file("model.onnx").stat().st_size))


def test_concurrent_builds_of_one_artifact_build_once_and_share_it(tmp_path: Path):
    results = FORK.Queue()
    procs = [FORK.Process(target=_build_same, args=(str(tmp_path), results)) for _ in range(4)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert sum(calls for calls, _, _ in outcomes) == 1  # one process built, three loaded
    assert len({pid for _, pid, _ in outcomes}) == 1
    assert {size for _, _, size in outcomes} == {20 << 16}


def _build_and_die(root: str) -> None:
    def build(directory: Path) -> dict[str, Any]:
        (directory / "model.onnx").write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-build
        return {}

    ArtifactCache(Path(root)).get_or_build({"k": "killed"}, build)


def test_a_build_killed_midway_leaves_no_entry(tmp_path: Path):
    p = FORK.Process(target=_build_and_die, args=(str(tmp_path),))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    def build(directory: Path) -> dict[str, Any]:
        (directory / "model.onnx").write_bytes(b"whole")
        return {}

    entry_ = ArtifactCache(tmp_path).get_or_build({"k": "killed"}, build)
    assert entry_.built_now and entry_.file("model.onnx").read_bytes() == b"whole"


def test_truncated_and_bit_flipped_entries_are_all_detected(tmp_path: Path):
    """100 random damages of a cached file: every one detected and rebuilt (100 %)."""
    rng = random.Random(1)
    payload = os.urandom(1 << 14)
    builds = []

    def build(directory: Path) -> dict[str, Any]:
        builds.append(1)
        (directory / "model.onnx").write_bytes(payload)
        return {}

    ArtifactCache(tmp_path).get_or_build({"k": 2}, build)
    detected = 0
    for trial in range(100):
        cache = ArtifactCache(tmp_path)
        file = cache.get_or_build({"k": 2}, build).file("model.onnx")
        data = bytearray(file.read_bytes())
        if trial % 2:
            data = data[: rng.randrange(len(data))]  # truncated
        else:
            bit = rng.randrange(len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)  # one bit flipped
        file.write_bytes(bytes(data))
        fresh = ArtifactCache(tmp_path)
        again = fresh.get_or_build({"k": 2}, build)
        detected += bool(again.built_now and fresh.rebuilt_corrupt)
        assert again.file("model.onnx").read_bytes() == payload
    assert detected == 100
