"""PyTorch -> ONNX, with dynamic batch and sequence axes so one file serves every shape."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_xfperf.models.module import named_module

if TYPE_CHECKING:
    import numpy as np
    import torch

OPSET = 17
DYNAMO_OPSET = 18  # the lowest opset the dynamo exporter emits
OUTPUT_NAME = "last_hidden_state"
EXPORTERS = ("torchscript", "dynamo")
_UNSUPPORTED_OP = re.compile(r"operator '?([\w:.]+)'?[^\n]*(?:not supported|unsupported)", re.I)


class ExportError(Exception):
    pass


def export_onnx(
    model: torch.nn.Module,
    sample_inputs: Mapping[str, np.ndarray],
    out_path: Path,
    model_name: str,
    exporter: str = "torchscript",
) -> dict[str, Any]:
    """Export with dynamic batch and sequence axes.

    ``torchscript`` (the default) traces the eager model: the form ONNX Runtime's fusions
    recognise. ``dynamo`` is torch's newer exporter; its graphs leave Attention unfused, which
    is what the drift gate exists to catch, so it is offered to see exactly that.
    """
    import warnings

    import onnx
    import torch

    names = list(sample_inputs)
    wrapped = named_module(model, names)
    args = tuple(torch.from_numpy(sample_inputs[n]) for n in names)
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    opset = DYNAMO_OPSET if exporter == "dynamo" else OPSET
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # Tracer and deprecation chatter and dynamo's progress prints: not actionable.
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                dim = torch.export.Dim.DYNAMIC
                torch.onnx.export(
                    wrapped, args, str(out_path), input_names=names,
                    output_names=[OUTPUT_NAME], opset_version=opset, dynamo=True,
                    # One entry for the wrapper's *tensors, holding one per input.
                    dynamic_shapes=(tuple({0: dim, 1: dim} for _ in names),),
                )
            else:
                axes = {n: {0: "batch", 1: "sequence"} for n in [*names, OUTPUT_NAME]}
                torch.onnx.export(
                    wrapped, args, str(out_path), input_names=names,
                    output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=opset,
                    do_constant_folding=True, dynamo=False,
                )
        onnx.checker.check_model(str(out_path))
    except Exception as exc:  # noqa: BLE001 - any exporter failure is reported per case
        raise ExportError(export_failure_message(model_name, exporter, opset, exc)) from exc
    return {"opset": opset, "inputs": names, "exporter": exporter}


def export_failure_message(model_name: str, exporter: str, opset: int, exc: BaseException) -> str:
    """Name the operator the exporter choked on (when it says) and the options there are."""
    text = f"{type(exc).__name__}: {exc}"
    found = _UNSUPPORTED_OP.search(text)
    operator = f"The operator that failed: {found.group(1)}. " if found else ""
    other = "dynamo" if exporter == "torchscript" else "torchscript"
    return (
        f"ONNX export of model {model_name!r} failed ({exporter} exporter, opset {opset}): "
        f"{text}\n{operator}Options: set exporter = \"{other}\" in [tool.xfperf] (or "
        f"--xfperf-exporter {other}); make forward() take only tensors named like "
        "make_inputs' keys; avoid data-dependent Python control flow; or register the model "
        "with family='' to skip fusions."
    )
