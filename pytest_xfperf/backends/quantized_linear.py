"""INT8 and FP8 linear layers for the PyTorch GPU backends, on the tensor cores' own GEMMs.

The dynamic ones quantize activations at each call, one scale per row (token), and weights
once, one scale per output channel (symmetric), then call PyTorch's low-precision GEMM:

- ``int8-dynamic``: ``torch._int_mm`` (INT8 x INT8 -> INT32), rescaled to FP16;
- ``fp8``: ``torch._scaled_mm`` on float8 e4m3 with row-wise scales, output BF16, the bias
  added in the GEMM's epilogue.

``fp8-static`` takes each layer's activation scale from calibration batches instead (the
largest absolute input seen, one scale per tensor) and its weight scale per tensor too, the
FP8 recipe of TensorRT's and ModelOpt's defaults: quantizing an input is then one multiply,
clamp and cast, which torch.compile fuses into the kernel that produced the input, with no
reduction over the row. Inputs beyond the calibrated range saturate at FP8's largest value.

This is the recipe of torchao's ``Int8DynamicActivationInt8WeightConfig`` and
``Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())``; ``quantize_model`` uses
torchao itself when it imports and is asked for, and these layers otherwise (they need
nothing beyond torch, and both GEMMs also run on the CPU, where the tests check them).
Only layers whose sizes the GEMMs accept are replaced; the others stay in floating point and
are counted in the result's settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_xfperf.backends.base import BackendUnavailable

if TYPE_CHECKING:
    import torch

# Quantized precision -> the floating-point dtype the rest of the model runs in. FP8's
# row-wise scaled GEMM returns BF16 only.
BASE_DTYPE = {"int8-dynamic": "float16", "fp8": "bfloat16", "fp8-static": "bfloat16"}
FP8_PRECISIONS = ("fp8", "fp8-static")
INT8_MAX, FP8_MAX = 127.0, 448.0
# torch._int_mm on CUDA needs more than 16 rows and sizes that are multiples of 8;
# torch._scaled_mm needs multiples of 16.
MIN_INT_MM_ROWS = 17
MULTIPLE = {"int8-dynamic": 8, "fp8": 16, "fp8-static": 16}
FP8_CAPABILITY = (8, 9)  # Ada and Hopper (and later) have FP8 tensor cores


def fp8_unsupported_reason(capability: tuple[int, int], name: str) -> str | None:
    """Why this GPU cannot run the FP8 precision, or None when it can."""
    if capability >= FP8_CAPABILITY:
        return None
    return (f"fp8 needs FP8 tensor cores (compute capability 8.9 or later: Ada, Hopper); "
            f"{name} is {capability[0]}.{capability[1]}")


def require_fp8_tensor_cores() -> None:
    """Raise BackendUnavailable (a skip with the reason) unless this process's CUDA device
    has FP8 tensor cores."""
    import torch

    reason = fp8_unsupported_reason(torch.cuda.get_device_capability(),
                                    torch.cuda.get_device_name())
    if reason:
        raise BackendUnavailable(reason)


def _row_scale(x: torch.Tensor, limit: float) -> torch.Tensor:
    return x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / limit


def _fp8_product(quantized: torch.Tensor, input_scale: torch.Tensor, layer: Any,
                 x: torch.Tensor) -> torch.Tensor:
    """``layer``'s FP8 GEMM of the quantized rows of ``x``, in ``x``'s dtype and shape. The
    bias goes into the GEMM's epilogue (BF16, the output's type): one pass over the output
    fewer than adding it after."""
    import torch

    bias = layer.bias
    fused_bias = bias if bias is not None and bias.dtype == torch.bfloat16 else None
    out = torch._scaled_mm(quantized, layer.weight.t(), scale_a=input_scale,
                           scale_b=layer.weight_scale, bias=fused_bias,
                           out_dtype=torch.bfloat16).to(x.dtype)
    if bias is not None and fused_bias is None:
        out = out + bias
    return out.reshape(*x.shape[:-1], out.shape[-1])


def _module_classes() -> tuple[type, type, type]:
    """The three layer classes, defined on first use so that importing this module needs no
    torch."""
    import torch

    class Int8Linear(torch.nn.Module):
        weight: torch.Tensor
        weight_scale: torch.Tensor

        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            weight = linear.weight.detach().float()
            scale = _row_scale(weight, INT8_MAX)  # (out, 1)
            self.register_buffer("weight", (weight / scale).round().clamp(
                -INT8_MAX, INT8_MAX).to(torch.int8))
            self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out)
            self.bias = (None if linear.bias is None
                         else torch.nn.Parameter(linear.bias.detach(), requires_grad=False))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shape = x.shape
            rows = x.reshape(-1, shape[-1])
            count = rows.shape[0]
            if count < MIN_INT_MM_ROWS:  # pad: the GEMM needs more rows than this
                rows = torch.nn.functional.pad(rows, (0, 0, 0, MIN_INT_MM_ROWS - count))
            scale = _row_scale(rows, INT8_MAX)
            quantized = (rows.float() / scale).round().clamp(-INT8_MAX, INT8_MAX).to(
                torch.int8)
            product = torch._int_mm(quantized, self.weight.t())
            out = (product.float() * scale * self.weight_scale)[:count].to(x.dtype)
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*shape[:-1], out.shape[-1])

    class Fp8Linear(torch.nn.Module):
        weight: torch.Tensor
        weight_scale: torch.Tensor

        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            weight = linear.weight.detach().float()
            scale = _row_scale(weight, FP8_MAX)
            self.register_buffer("weight", (weight / scale).to(torch.float8_e4m3fn))
            self.register_buffer("weight_scale", scale.t().contiguous())
            self.bias = (None if linear.bias is None
                         else torch.nn.Parameter(linear.bias.detach(), requires_grad=False))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shape = x.shape
            rows = x.reshape(-1, shape[-1])
            scale = _row_scale(rows, FP8_MAX)
            quantized = (rows.float() / scale).to(torch.float8_e4m3fn)
            return _fp8_product(quantized, scale, self, x)

    class Fp8StaticLinear(torch.nn.Module):
        weight: torch.Tensor
        weight_scale: torch.Tensor
        input_scale: torch.Tensor
        input_inverse: torch.Tensor

        def __init__(self, linear: torch.nn.Linear, input_amax: float) -> None:
            super().__init__()
            weight = linear.weight.detach().float()
            scale = weight.abs().amax().clamp(min=1e-12) / FP8_MAX
            self.register_buffer("weight", (weight / scale).to(torch.float8_e4m3fn))
            self.register_buffer("weight_scale", scale.reshape(()))
            input_scale = max(input_amax, 1e-12) / FP8_MAX
            device = weight.device
            self.register_buffer("input_scale", torch.tensor(input_scale, device=device))
            self.register_buffer("input_inverse",
                                 torch.tensor(1.0 / input_scale, device=device))
            self.bias = (None if linear.bias is None
                         else torch.nn.Parameter(linear.bias.detach(), requires_grad=False))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shape = x.shape
            rows = x.reshape(-1, shape[-1])
            # In the input's own dtype (BF16; the 0-d FP32 scale does not promote it): an FP32
            # copy first was one more pass over the input where kernels are not fused
            # (CUDA-graph replay of eager kernels).
            quantized = (rows * self.input_inverse).clamp_(
                -FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
            return _fp8_product(quantized, self.input_scale, self, x)

    return Int8Linear, Fp8Linear, Fp8StaticLinear


@dataclass(frozen=True)
class Quantized:
    """What ``quantize_model`` did, for the result's settings."""

    method: str
    replaced: int
    kept: int

    def settings(self) -> dict[str, Any]:
        return {"quantizer": self.method, "quantized_linears": self.replaced,
                "float_linears": self.kept}


def _eligible(linear: Any, precision: str) -> bool:
    multiple = MULTIPLE[precision]
    return bool(linear.in_features % multiple == 0 and linear.out_features % multiple == 0)


def _linear_from_conv1d(module: Any) -> Any:
    """transformers' ``Conv1D`` (GPT-2's projections: ``x @ weight + bias``, weight stored as
    (in, out)) as the equivalent ``nn.Linear``, or None for any other module."""
    import torch

    weight = getattr(module, "weight", None)
    if (type(module).__name__ != "Conv1D" or not isinstance(weight, torch.Tensor)
            or weight.dim() != 2):
        return None
    bias = getattr(module, "bias", None)
    linear = torch.nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None,
                             device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


def _replace(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def input_amax(model: torch.nn.Module, names: Sequence[str],
               calibration: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, float]:
    """The largest absolute input each named layer sees over the calibration batches (the
    model run as it is, in inference mode)."""
    import torch

    seen = dict.fromkeys(names, 0.0)
    hooks = []
    for name in names:
        def record(module: Any, args: tuple[Any, ...], name: str = name) -> None:
            seen[name] = max(seen[name], float(args[0].detach().abs().amax()))

        hooks.append(model.get_submodule(name).register_forward_pre_hook(record))
    try:
        with torch.inference_mode():
            for batch in calibration:
                model(**batch)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def quantize_model(model: torch.nn.Module, precision: str, quantizer: str = "builtin",
                   calibration: Sequence[Mapping[str, torch.Tensor]] = ()) -> Quantized:
    """Replace the model's eligible ``nn.Linear`` layers in place (the model is on its device
    at its base dtype); GPT-2's ``Conv1D`` projections become ``nn.Linear`` first.
    ``quantizer`` is "builtin" (the layers above) or "torchao"; fp8-static is the builtin
    layers' alone and needs ``calibration``, batches of the model's inputs on its device."""
    import torch

    if precision not in BASE_DTYPE:
        raise ValueError(f"{precision} is not a quantized GPU precision")
    for name, module in list(model.named_modules()):
        linear = _linear_from_conv1d(module)
        if linear is not None:
            _replace(model, name, linear)
    linears = [(name, m) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear)]
    eligible = {name for name, m in linears if _eligible(m, precision)}
    int8_class, fp8_class, fp8_static_class = _module_classes()
    device = next(model.parameters()).device
    if precision == "fp8-static":
        if not calibration:
            raise ValueError("fp8-static needs calibration batches: set calibration_batches "
                             "to 1 or more")
        amax = input_amax(model, sorted(eligible), calibration)
        for name in eligible:
            _replace(model, name, fp8_static_class(model.get_submodule(name), amax[name]))
        return Quantized(f"builtin (torch._scaled_mm, float8 e4m3, static per-tensor "
                         f"activation scales from {len(calibration)} calibration batch(es), "
                         f"per-tensor weights)", len(eligible), len(linears) - len(eligible))
    if quantizer == "torchao":
        return _torchao(model, precision, eligible, len(linears))
    layer = int8_class if precision == "int8-dynamic" else fp8_class
    for name in eligible:
        _replace(model, name, layer(model.get_submodule(name)).to(device))
    method = ("torch._int_mm, per-token INT8 activations, per-channel INT8 weights"
              if precision == "int8-dynamic" else
              "torch._scaled_mm, per-row float8 e4m3 activations and weights")
    return Quantized(f"builtin ({method})", len(eligible), len(linears) - len(eligible))


def _torchao(model: torch.nn.Module, precision: str, eligible: set[str], total: int
             ) -> Quantized:
    import torchao  # type: ignore[import-not-found,unused-ignore]
    from torchao.quantization import (  # type: ignore[import-not-found,unused-ignore]
        Float8DynamicActivationFloat8WeightConfig,
        Int8DynamicActivationInt8WeightConfig,
        PerRow,
        quantize_,
    )

    config = (Int8DynamicActivationInt8WeightConfig() if precision == "int8-dynamic"
              else Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    names = {id(m): n for n, m in model.named_modules()}
    quantize_(model, config, filter_fn=lambda m, *_: names.get(id(m), "") in eligible)
    return Quantized(f"torchao {torchao.__version__} ({type(config).__name__})",
                     len(eligible), total - len(eligible))
