"""A causal LM exported to ONNX with its KV cache as inputs and outputs, and its INT8 and FP16
forms, built once per model and kept in the artifact cache.

Two forms. PAST_PRESENT (ort-cpu, ort-cuda): one graph serves prefill and decode (prefill
starts from a past of length 0), like the merged decoders of Hugging Face Optimum. Its inputs:
``input_ids``, ``attention_mask`` (past plus new positions), ``position_ids`` and
``past.<layer>.key|value``; its outputs: ``logits``, ``next_token`` (the greedy pick at the
last position, so that only it crosses to the host between steps) and
``present.<layer>.key|value``, one position longer than the past. FIXED_BUFFERS
(ort-cuda-graph): the keys and values stay in buffers of a fixed number of positions, in and
out, and the graph takes the new tokens' first position (``start``) and returns the next one
(``next_start``), so that nothing changes shape from step to step.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_xfperf.artifacts.cache import ArtifactCache, cache_key
from pytest_xfperf.artifacts.export import ExportError
from pytest_xfperf.versions import library_versions

if TYPE_CHECKING:
    import torch

MODEL_FILE = "decoder.onnx"
OPSET = 17
# Past length the export is traced with: not 0, so that nothing specializes on an empty past.
TRACE_PAST = 3
# The decoder forms: past and present tensors that grow by a position a step (one graph for
# prefill and decode), or keys and values in buffers of fixed size (for a CUDA graph).
PAST_PRESENT = "past-present"
FIXED_BUFFERS = "fixed-buffers"


def _flat_cache(returned: Any) -> list[torch.Tensor]:
    """A returned cache's keys and values, layer by layer: key 0, value 0, key 1, ..."""
    if hasattr(returned, "layers"):
        return [t for layer in returned.layers for t in (layer.keys, layer.values)]
    return [t for pair in returned.to_legacy_cache() for t in pair]  # transformers 4.x


def _export(wrapper: torch.nn.Module, example: tuple[Any, ...], out_path: Path,
            names: tuple[list[str], list[str]], axes: dict[str, dict[int, str]],
            failure: str) -> None:
    """``torch.onnx.export`` (TorchScript) of a decoder wrapper, checked; ``names``: its
    input and output names; any failure an ExportError that starts with ``failure``."""
    import onnx
    import torch

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, example, str(out_path), input_names=names[0],
                              output_names=names[1], dynamic_axes=axes,
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
        onnx.checker.check_model(str(out_path))
    except Exception as exc:  # noqa: BLE001 - any exporter failure fails this case only
        raise ExportError(f"{failure}: {type(exc).__name__}: {exc}") from exc


def _cache_wrapper(model: torch.nn.Module, layers: int) -> torch.nn.Module:
    import torch
    from transformers import DynamicCache

    from pytest_xfperf.generation.generators import cache_keyword, returned_cache

    keyword = cache_keyword(model)

    class WithFlatCache(torch.nn.Module):
        """Flat past tensors in, a DynamicCache for the model, flat presents out."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    position_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
            cache = DynamicCache()
            for layer in range(layers):
                cache.update(past[2 * layer], past[2 * layer + 1], layer)
            output = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                position_ids=position_ids, use_cache=True,
                                **{keyword: cache})
            next_token = output.logits[:, -1].argmax(-1)
            return (output.logits, next_token, *_flat_cache(returned_cache(output)))

    return WithFlatCache().eval()


def _fixed_buffer_wrapper(model: torch.nn.Module, layers: int) -> torch.nn.Module:
    import torch
    from transformers import DynamicCache

    from pytest_xfperf.generation.generators import cache_keyword, returned_cache

    keyword = cache_keyword(model)

    class WithFixedBuffers(torch.nn.Module):
        """Keys and values in buffers of a fixed number of positions, in and out: ``count``
        new tokens at positions ``start`` .. ``start + count - 1`` attend to the buffer's
        positions before ``start`` and to each other, and their keys and values are written
        there; every other position passes through. Shapes never change from step to step,
        which a CUDA graph needs."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, start: torch.Tensor,
                    *buffers: torch.Tensor) -> tuple[torch.Tensor, ...]:
            batch, count = input_ids.shape
            positions = buffers[0].shape[2]
            slots = torch.arange(positions, device=input_ids.device)
            filled = (slots < start).to(torch.int64)[None].expand(batch, positions)
            mask = torch.cat([filled, torch.ones_like(input_ids)], dim=1)
            position_ids = (start + torch.arange(count, device=input_ids.device))[None]
            cache = DynamicCache()
            for layer in range(layers):
                cache.update(buffers[2 * layer], buffers[2 * layer + 1], layer)
            output = self.model(input_ids=input_ids, attention_mask=mask,
                                position_ids=position_ids.expand(batch, count),
                                use_cache=True, **{keyword: cache})
            grown = _flat_cache(returned_cache(output))
            # Slot j takes the new token j - start where start <= j < start + count.
            offset = slots - start
            written = ((offset >= 0) & (offset < count))[None, None, :, None]
            source = offset.clamp(0, count - 1)
            out = [torch.where(written, t[:, :, positions:].index_select(2, source), old)
                   for t, old in zip(grown, buffers, strict=True)]
            next_token = output.logits[:, -1].argmax(-1, keepdim=True)
            return (output.logits, next_token, start + count, *out)

    return WithFixedBuffers().eval()


def export_fixed_buffer_decoder(model: torch.nn.Module, out_path: Path,
                                model_name: str) -> dict[str, Any]:
    """The decoder for a CUDA graph (ort-cuda-graph): ``_fixed_buffer_wrapper`` exported with
    the batch, the new tokens' count and the buffers' positions as named free dimensions
    (``batch``, ``new``, ``positions``), which a session fixes for its case (ONNX Runtime
    then folds every shape computation into constants)."""
    import torch

    from pytest_xfperf.generation.scoring import kv_geometry

    config: Any = model.config
    layers, kv_heads, head_dim = kv_geometry(config)
    names = [f"past.{layer}.{part}" for layer in range(layers) for part in ("key", "value")]
    presents = [n.replace("past.", "present.", 1) for n in names]
    batch, count, positions = 2, 3, 8
    ids = torch.randint(1, int(config.vocab_size), (batch, count))
    start = torch.tensor([TRACE_PAST], dtype=torch.int64)
    buffers = [torch.randn(batch, kv_heads, positions, head_dim) for _ in names]
    axes: dict[str, dict[int, str]] = {
        "input_ids": {0: "batch", 1: "new"}, "logits": {0: "batch", 1: "new"},
        "next_token": {0: "batch"},
        **{n: {0: "batch", 2: "positions"} for n in (*names, *presents)}}
    _export(_fixed_buffer_wrapper(model, layers), (ids, start, *buffers), out_path,
            (["input_ids", "start", *names], ["logits", "next_token", "next_start", *presents]),
            axes, f"model {model_name!r}: exporting the fixed-buffer decoder failed")
    return {"opset": OPSET, "layers": layers, "kv_heads": kv_heads, "head_dim": head_dim,
            "form": FIXED_BUFFERS}


def export_decoder(model: torch.nn.Module, out_path: Path, model_name: str) -> dict[str, Any]:
    import torch

    from pytest_xfperf.generation.scoring import kv_geometry

    config: Any = model.config
    layers, kv_heads, head_dim = kv_geometry(config)
    names = [f"{kind}.{layer}.{part}" for kind in ("past",) for layer in range(layers)
             for part in ("key", "value")]
    presents = [n.replace("past.", "present.", 1) for n in names]
    batch, count = 2, 5
    vocab = int(config.vocab_size)
    ids = torch.randint(1, vocab, (batch, count))
    mask = torch.ones(batch, TRACE_PAST + count, dtype=torch.int64)
    positions = torch.arange(TRACE_PAST, TRACE_PAST + count)[None].expand(batch, count)
    past = [torch.randn(batch, kv_heads, TRACE_PAST, head_dim) for _ in names]
    axes: dict[str, dict[int, str]] = {
        "input_ids": {0: "batch", 1: "new"}, "position_ids": {0: "batch", 1: "new"},
        "attention_mask": {0: "batch", 1: "total"}, "logits": {0: "batch", 1: "new"},
        "next_token": {0: "batch"},
        **{n: {0: "batch", 2: "past"} for n in names},
        **{n: {0: "batch", 2: "total"} for n in presents}}
    _export(_cache_wrapper(model, layers), (ids, mask, positions, *past), out_path,
            (["input_ids", "attention_mask", "position_ids", *names],
             ["logits", "next_token", *presents]),
            axes, f"model {model_name!r}: exporting the decoder with its KV cache failed")
    return {"opset": OPSET, "layers": layers, "kv_heads": kv_heads, "head_dim": head_dim}


def rms_statistics_nodes(graph: Any) -> list[str]:
    """The nodes of each RMS norm's statistics: Pow(x, 2) -> ReduceMean, then the Add of
    epsilon, Sqrt and Reciprocal (or Div) up to the Mul that applies them. In FP16 the squares
    of hidden states past 256 overflow; PyTorch computes this part in FP32, and so must ORT."""
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    names: list[str] = []
    for node in graph.node:
        source = producers.get(node.input[0]) if node.input else None
        if node.op_type != "ReduceMean" or source is None or source.op_type != "Pow":
            continue
        names += [source.name, node.name]
        frontier = node
        while True:
            following = [n for n in consumers.get(frontier.output[0], [])
                         if n.op_type in ("Add", "Sqrt", "Reciprocal", "Div")]
            if len(following) != 1:
                break
            frontier = following[0]
            names.append(frontier.name)
    return names


def _fp16(in_path: Path, out_path: Path) -> dict[str, Any]:
    """Everything in FP16, the cache and logits included (keeping FP32 inputs would cast the
    whole cache at every step), except the statistics of RMS norms left unfused
    (``rms_statistics_nodes``; a fused norm computes them in FP32 itself); token ids stay
    int64."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(in_path)))
    kept = rms_statistics_nodes(model.model.graph)
    model.convert_float_to_float16(keep_io_types=False, node_block_list=kept,
                                   op_block_list=list(DEFAULT_OP_BLOCK_LIST))
    model.save_model_to_file(str(out_path))
    return {"conversion": "fp16", "keep_io_types": False, "fp32_nodes": len(kept)}


@dataclass(frozen=True)
class DecoderTarget:
    """Where the decoder runs, and what ONNX Runtime's transformer optimizer needs to know.
    The export is fused first, for the device it runs on, by ORT's GPT-2 fusions (GPT-2's
    LayerNorms and a Llama-style model's RMS norms, each with the residual add before it;
    GPT-2's FastGelu), which the CPU and CUDA providers both run; a family without an ORT
    optimizer is left as exported. FP16 and INT8 convert the fused file."""

    device: str = "cpu"
    family: str = ""
    num_heads: int = 0
    hidden_size: int = 0


def decoder_artifact(cache: ArtifactCache, model_name: str, identity: str, precision: str,
                     load_model: Any, reduce_range: bool,
                     target: DecoderTarget | None = None,
                     form: str = PAST_PRESENT) -> tuple[Path, dict[str, Any]]:
    """The cached ONNX decoder in ``form`` (PAST_PRESENT or FIXED_BUFFERS) at ``precision``
    (fp32, fp16 or int8-dynamic) for ``target``: its path, and what was built (the stages'
    facts and build seconds)."""
    from pytest_xfperf.artifacts.optimize import optimize_onnx, optimizer_key
    from pytest_xfperf.artifacts.quantize import quantize_dynamic_int8

    target = target or DecoderTarget()

    versions = library_versions()
    if form not in (PAST_PRESENT, FIXED_BUFFERS):
        raise ValueError(f"no ONNX decoder form {form!r}")
    export_parts = {"stage": "decoder-export", "model": model_name, "identity": identity,
                    "opset": OPSET, **{k: versions.get(k, "") for k in
                                       ("torch", "transformers", "onnx")}}
    if form == FIXED_BUFFERS:  # the past-present form's key is left as it was
        export_parts["form"] = form
    export = export_fixed_buffer_decoder if form == FIXED_BUFFERS else export_decoder
    built: dict[str, Any] = {"build_seconds": {}, "built_now": []}

    def stage(parts: dict[str, Any], make: Any, name: str) -> Path:
        def build(directory: Path) -> dict[str, Any]:
            started = time.perf_counter()
            info = dict(make(directory))
            info["seconds"] = round(time.perf_counter() - started, 3)
            return info

        entry = cache.get_or_build(parts, build)
        built["build_seconds"][name] = entry.info.get("seconds", entry.build_seconds)
        if entry.built_now:
            built["built_now"].append(name)
        built[name] = {k: v for k, v in entry.info.items() if k != "seconds"}
        return entry.file(MODEL_FILE)

    exported = stage(export_parts, lambda d: export(load_model(), d / MODEL_FILE, model_name),
                     "export")
    onnxruntime = versions.get("onnxruntime", versions.get("onnxruntime-gpu", ""))
    source, parent = exported, cache_key(export_parts)
    use_gpu = target.device == "cuda"
    optimize_parts: dict[str, Any] = {
        "stage": "decoder-optimize", "parent": parent, "family": target.family,
        "num_heads": target.num_heads, "hidden_size": target.hidden_size,
        "onnxruntime": onnxruntime, **optimizer_key(target.family, use_gpu)}
    source = stage(optimize_parts, lambda d: optimize_onnx(
        exported, d / MODEL_FILE, target.family, target.num_heads, target.hidden_size,
        use_gpu), "optimize")
    parent = cache_key(optimize_parts)
    if precision == "fp32":
        return source, built
    if precision == "fp16":
        parts: dict[str, Any] = {"stage": "decoder-fp16", "parent": parent,
                                 "onnxruntime": onnxruntime, "fp32": "rms-statistics"}
        return stage(parts, lambda d: _fp16(source, d / MODEL_FILE), "fp16"), built
    if precision == "int8-dynamic":
        parts = {"stage": "decoder-int8-dynamic", "parent": parent,
                 "onnxruntime": onnxruntime, "reduce_range": reduce_range}
        return stage(parts, lambda d: quantize_dynamic_int8(source, d / MODEL_FILE,
                                                            reduce_range=reduce_range),
                     "quantize"), built
    raise ValueError(f"no ONNX decoder for precision {precision!r}")
