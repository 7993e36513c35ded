"""The Runner contract, run against every backend of the catalog that this machine can run
(the others skip, naming why), and a backend added in one module and one catalog row."""

from __future__ import annotations

import inspect
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pytest_xfperf.backends.base import BackendUnavailable, Runner, RunnerContext
from pytest_xfperf.backends.catalog import BACKENDS, BackendInfo, load_factory
from pytest_xfperf.matrix import Case
from pytest_xfperf.session import XfperfSession
from pytest_xfperf.values import Shape

# What would mean a runner times itself: measure/ is the only place that reads a clock.
CLOCKS = ("perf_counter", "time.time(", "monotonic", "enable_timing")


def check_contract(info: BackendInfo, pipeline, spec, model) -> None:
    try:
        XfperfSession.check_backend(info.name)
        XfperfSession.check_device(info.name)
    except (BackendUnavailable, ModuleNotFoundError) as exc:
        pytest.skip(f"{info.name}: {exc}")
    precision = info.precisions[0]
    case = Case(spec.name, info.name, precision, Shape(2, 16))
    artifact = (pipeline.build(spec, precision, lambda: model, case.shape, info.onnx_target)
                if info.onnx_target else None)
    factory = load_factory(info)
    source = inspect.getsource(sys.modules[factory.__module__])
    assert not [c for c in CLOCKS if c in source], f"{info.name} times something itself"
    try:
        runner = factory(RunnerContext(case=case, model=lambda: model,
                                       artifact_path=artifact.path if artifact else None,
                                       options={}))
    except BackendUnavailable as exc:
        pytest.skip(f"{info.name}: {exc}")
    assert isinstance(runner, Runner) and runner.name == info.name
    inputs = spec.make_inputs(2, 16, 0)
    call = runner.prepare(inputs)
    call()
    runner.synchronize()
    out = runner.run(inputs)
    assert out.shape == (2, 16, spec.hidden_size) and out.dtype == np.float32
    assert isinstance(runner.settings(), dict) and runner.settings()
    runner.close()


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_runner_contract(name, pipeline, tiny_spec, tiny_model):
    check_contract(BACKENDS[name], pipeline, tiny_spec, tiny_model)


FAKE_BACKEND = textwrap.dedent('''
    """A backend someone adds: PyTorch eager on the CPU under another name."""
    from pytest_xfperf.backends.pytorch import TorchCpuRunner

    class FakeRunner(TorchCpuRunner):
        name = "fake-cpu"

    def create(context):
        return FakeRunner(context.model(), int(context.options.get("threads", 0)))
''')


def test_a_backend_is_one_module_and_one_catalog_row(tmp_path: Path, monkeypatch, pipeline,
                                                     tiny_spec, tiny_model):
    (tmp_path / "fake_backend.py").write_text(FAKE_BACKEND)
    monkeypatch.syspath_prepend(str(tmp_path))
    row = replace(BACKENDS["torch-cpu"], name="fake-cpu", factory="fake_backend:create")
    monkeypatch.setitem(BACKENDS, "fake-cpu", row)
    check_contract(BACKENDS["fake-cpu"], pipeline, tiny_spec, tiny_model)
    from pytest_xfperf.matrix import expand

    (case,) = expand([("bert-tiny", "bert-tiny")], ["fake-cpu"], ["fp32"], [Shape(1, 8)])
    assert case.id == "bert-tiny/fake-cpu/fp32/b1s8" and case.skip_reason is None
