from pathlib import Path

import pytest

from pytest_xfperf.artifacts.cache import ArtifactCache


def writer(calls: list):
    def build(directory: Path) -> dict:
        calls.append(directory)
        (directory / "model.onnx").write_bytes(b"x" * 1000)
        return {"fused": {"Attention": 1}}
    return build


def test_built_once_then_loaded(tmp_path: Path):
    calls: list = []
    entry = ArtifactCache(tmp_path).get_or_build({"k": 1}, writer(calls))
    assert entry.built_now and entry.file("model.onnx").read_bytes() == b"x" * 1000
    again = ArtifactCache(tmp_path).get_or_build({"k": 1}, writer(calls))
    assert not again.built_now and again.info == {"fused": {"Attention": 1}}
    assert len(calls) == 1
    assert not any((tmp_path / "tmp").iterdir())


def test_failed_build_leaves_no_entry(tmp_path: Path):
    def broken(directory: Path) -> dict:
        (directory / "model.onnx").write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    cache = ArtifactCache(tmp_path)
    with pytest.raises(RuntimeError):
        cache.get_or_build({"k": 2}, broken)
    calls: list = []
    assert cache.get_or_build({"k": 2}, writer(calls)).built_now
    assert not any((tmp_path / "tmp").iterdir())


def test_entries_moved_aside_are_bounded(tmp_path: Path):
    """Damaged entries are moved to <cache>/corrupt/ for a look, the newest KEEP_CORRUPT
    only: a cache damaged again and again does not fill the disk."""
    from pytest_xfperf.artifacts.cache import KEEP_CORRUPT

    calls: list = []
    for round_ in range(KEEP_CORRUPT + 3):
        entry = ArtifactCache(tmp_path).get_or_build({"n": 1}, writer(calls))
        entry.file("model.onnx").write_bytes(b"damaged")  # wrong size: found on the next load
        ArtifactCache(tmp_path).get_or_build({"n": 1}, writer(calls))
        assert len(list((tmp_path / "corrupt").iterdir())) == min(round_ + 1, KEEP_CORRUPT)


def test_an_optimize_stage_is_keyed_by_the_fusions_it_applies():
    """The optimizer's type is part of an optimize stage's key: a family that gains fusions
    (Llama-style decoders take ORT's GPT-2 fusions) is built again, not served the unfused copy
    cached under the old key; a family without an optimizer keeps one key for both devices."""
    from pytest_xfperf.artifacts.cache import cache_key
    from pytest_xfperf.artifacts.optimize import optimizer_key

    assert optimizer_key("llama", use_gpu=False) == {"optimizer": "gpt2"}
    assert optimizer_key("roberta", use_gpu=True) == {"optimizer": "bert", "use_gpu": True}
    assert optimizer_key("mistral", use_gpu=True) == optimizer_key("mistral", use_gpu=False) == {}
    base = {"stage": "decoder-optimize", "family": "llama"}
    unfused_before = cache_key(base)
    assert cache_key({**base, **optimizer_key("llama", use_gpu=False)}) != unfused_before
