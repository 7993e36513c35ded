"""PyTorch -> ONNX, with dynamic batch and sequence axes so one file serves every shape."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_xfperf.models.module import named_module

if TYPE_CHECKING:
    import numpy as np
    import torch

OPSET = 17
OUTPUT_NAME = "last_hidden_state"


class ExportError(Exception):
    pass


def export_onnx(
    model: torch.nn.Module,
    sample_inputs: Mapping[str, np.ndarray],
    out_path: Path,
    model_name: str,
) -> dict[str, Any]:
    """TorchScript export of the eager model: the form ONNX Runtime's fusions recognise."""
    import warnings

    import onnx
    import torch

    names = list(sample_inputs)
    wrapped = named_module(model, names)
    args = tuple(torch.from_numpy(sample_inputs[n]) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, OUTPUT_NAME]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation chatter, not actionable
            torch.onnx.export(
                wrapped, args, str(out_path), input_names=names, output_names=[OUTPUT_NAME],
                dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False,
            )
        onnx.checker.check_model(str(out_path))
    except Exception as exc:  # noqa: BLE001 - any exporter failure is reported per case
        raise ExportError(
            f"ONNX export of model {model_name!r} failed: {type(exc).__name__}: {exc}\n"
            "The TorchScript exporter (opset 17) is used; an operator it cannot convert is "
            "named above. Options: make forward() take only tensors named like make_inputs' "
            "keys, avoid data-dependent Python control flow, or register the model with "
            "family='' to skip fusions."
        ) from exc
    return {"opset": OPSET, "inputs": names, "exporter": "torchscript"}
