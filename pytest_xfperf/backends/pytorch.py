"""PyTorch eager on the CPU: the FP32 reference every other case is compared with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pytest_xfperf.models.module import primary_output

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pytest_xfperf.backends.base import RunnerContext


def create(context: RunnerContext) -> TorchCpuRunner:
    return TorchCpuRunner(context.model(), int(context.options.get("threads", 0)))


class TorchCpuRunner:
    name = "torch-cpu"

    def __init__(self, model: torch.nn.Module, threads: int = 0) -> None:
        import torch

        self._model = model
        # torch's thread count is process-wide: set it for this runner, restore it on close.
        self._previous_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)

    def _tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        import torch

        return {k: torch.from_numpy(v) for k, v in inputs.items()}

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        import torch

        tensors = self._tensors(inputs)
        model = self._model

        def call() -> object:
            with torch.inference_mode():
                return model(**tensors)

        return call

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = primary_output(self._model(**self._tensors(inputs)))
        return out.float().numpy()

    def synchronize(self) -> None:
        pass

    def settings(self) -> dict[str, Any]:
        import torch

        return {"threads": torch.get_num_threads(), "mode": "eager", "grad": "inference_mode"}

    def close(self) -> None:
        import torch

        torch.set_num_threads(self._previous_threads)
