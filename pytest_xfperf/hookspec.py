"""Hooks that a project's conftest.py can implement."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy
import pytest

if TYPE_CHECKING:
    from pytest_xfperf.models.spec import ModelSpec

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_xfperf_models(config: pytest.Config) -> list[ModelSpec]:
    """Register models by name, for ``--xfperf-models`` and the ``xfperf`` marker.

    Implement it in a ``conftest.py`` at or above your perf tests::

        import numpy as np
        from pytest_xfperf import ModelSpec

        def build():
            import torch
            torch.manual_seed(0)
            return MyEncoder().eval()   # forward(input_ids=..., attention_mask=...) -> tensor

        def make_inputs(batch, seq, seed):
            rng = np.random.default_rng(seed)
            ids = rng.integers(1, 1000, size=(batch, seq), dtype=np.int64)
            mask = np.ones((batch, seq), dtype=np.int64)
            mask[:, seq * 3 // 4:] = 0   # some padding, as real batches have
            return {"input_ids": ids, "attention_mask": mask}

        def pytest_xfperf_models(config):
            return [ModelSpec(name="my-encoder", build=build, make_inputs=make_inputs,
                              family="")]   # family="bert" etc. enables ORT fusions

    Every implementation's list is combined; a name may be registered once.
    """
    raise NotImplementedError  # a hook specification has no body of its own
