"""A uniform calling convention for any model: positional tensors in, one tensor out.

The TorchScript exporter traces positional arguments, and transformers 5.x models fail when
traced positionally, so the wrapper takes positional tensors and calls the model by keyword.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def primary_output(output: Any) -> torch.Tensor:
    import torch

    if isinstance(output, torch.Tensor):
        return output
    hidden = getattr(output, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"the model returned {type(output).__name__}; return a tensor, a tuple starting with "
        "one, or an object with last_hidden_state"
    )


def named_module(model: torch.nn.Module, input_names: Sequence[str]) -> torch.nn.Module:
    import torch

    names = tuple(input_names)

    class NamedInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return primary_output(self.model(**dict(zip(names, tensors, strict=True))))

    return NamedInputs().eval()
