"""The setup, measure and accuracy steps of a generative case (the harness judges it).

TTFT and TPOT are block-decided by the gate's one rule (``timing`` is the TPOT's record,
``more_timing`` the TTFT's); tokens/s is the batch over the TPOT; the KV cache's size, prompt
logits and greedy tokens are gated by thresholds.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest

from pytest_xfperf.backends.base import BackendUnavailable
from pytest_xfperf.backends.catalog import BACKENDS, fp32_in_tf32, weight_bytes
from pytest_xfperf.generation import scoring
from pytest_xfperf.measure import machine_state
from pytest_xfperf.measure.stats import percentile, summarize

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pytest_xfperf.generation.generators import Generator
    from pytest_xfperf.harness import CaseHarness
    from pytest_xfperf.models.spec import ModelSpec
    from pytest_xfperf.result import Result
    from pytest_xfperf.session import XfperfSession

# Bytes of a KV-cache element: the float width the model runs in. INT8 and FP8 quantize
# weights and the activations entering linear layers only: the cache keeps the base dtype,
# FP32 on the CPU (ONNX Runtime's INT8 graph), FP16 or BF16 on a GPU.
KV_ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
QUANTIZED_KV_ELEMENT_BYTES = {"cpu": 4, "cuda": 2}


def kv_element_bytes(precision: str, device: str) -> int:
    return KV_ELEMENT_BYTES.get(precision, QUANTIZED_KV_ELEMENT_BYTES[device])


def primary_metric(new_tokens: int) -> str:
    """The figure a generative case's block record times: its TPOT, or its TTFT where it
    generates a single token (no decode step)."""
    return "tpot_ms" if new_tokens > 1 else "ttft_ms"


def make_generator(harness: CaseHarness) -> Generator:
    """The case's generator: PyTorch's dynamic or static-cache path, or an ONNX decoder."""
    from pytest_xfperf.generation import generators

    case, session = harness.case, harness.session
    spec = harness.spec
    options = session.settings.backend_options.get(case.backend, {})
    device = BACKENDS[case.backend].device
    if case.backend.startswith("ort-"):
        from pytest_xfperf.artifacts.export import ExportError
        from pytest_xfperf.generation.export import (
            FIXED_BUFFERS,
            PAST_PRESENT,
            DecoderTarget,
            decoder_artifact,
        )

        identity = spec.identity or ""
        if not identity:
            from pytest_xfperf.artifacts.pipeline import weights_digest

            identity = weights_digest(session.model(spec))
        reduce_range = session.settings.build.resolved_reduce_range()
        graph = case.backend == "ort-cuda-graph"
        try:
            target = DecoderTarget(device, spec.family, spec.num_heads, spec.hidden_size)
            path, built = decoder_artifact(session.cache, spec.name, identity, case.precision,
                                           lambda: session.model(spec), reduce_range, target,
                                           FIXED_BUFFERS if graph else PAST_PRESENT)
        except ExportError as exc:
            raise RuntimeError(str(exc)) from None
        harness.generation_build = built
        if graph:
            return generators.OrtGraphGenerator(case.backend, path, options)
        return generators.OrtGenerator(case.backend, path, device, options)
    return torch_generator(session, spec, case.backend, case.precision)


def torch_generator(session: XfperfSession, spec: ModelSpec, backend: str, precision: str
                    ) -> Generator:
    """A PyTorch backend's generator, on a copy of the model (the session's stays FP32 on the
    CPU for the accuracy reference and other cases)."""
    import copy

    from pytest_xfperf.backends.torch_cuda import choose_quantizer
    from pytest_xfperf.generation import generators

    options = session.settings.backend_options.get(backend, {})
    model = copy.deepcopy(session.model(spec))
    quantizer = choose_quantizer(str(options.get("quantizer", "auto")))
    if backend == "torch-cuda-graph":
        return generators.TorchGraphGenerator(backend, model, precision, quantizer)
    if backend == "torch-compile":
        return generators.TorchCompiledGenerator(
            backend, model, precision, str(options.get("compile_mode", "default")),
            quantizer)
    if backend in ("torch-cpu", "torch-cuda"):
        threads = int(options.get("threads", 0) or 0)
        return generators.TorchGenerator(backend, model, BACKENDS[backend].device, precision,
                                         threads, quantizer)
    raise BackendUnavailable(f"{backend} has no generation path")


def reference_generation(session: XfperfSession, spec: ModelSpec, input_ids: np.ndarray,
                         new_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """FP32 PyTorch eager on the CPU: prompt logits and greedy tokens, once per prompt."""
    from pytest_xfperf.generation.generators import TorchGenerator

    key = ("generation", spec.name, input_ids.shape, new_tokens, input_ids.tobytes())
    cached = session.generation_references.get(key)
    if cached is None:
        generator = TorchGenerator("torch-cpu", session.model(spec), "cpu", "fp32")
        try:
            cached = run_untimed(generator, input_ids, new_tokens)
        finally:
            generator.close()
        session.generation_references[key] = cached
    return cached


def run_untimed(generator: Generator, input_ids: np.ndarray, new_tokens: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """(prompt logits, generated tokens) of one generation."""
    generator.load(input_ids, new_tokens)
    generator.prefill()
    logits = generator.prompt_logits()
    for _ in range(new_tokens - 1):
        generator.decode()
    generator.synchronize()
    return logits, generator.tokens()


def generate_case(harness: CaseHarness, result: Result) -> None:
    case, session = harness.case, harness.session
    generator = harness.generator
    assert generator is not None
    ids = harness.inputs["input_ids"]
    new_tokens = case.shape.new_tokens
    try:
        logits, tokens = run_untimed(generator, ids, new_tokens)
    except TypeError as exc:  # the torch-cpu FP32 case runs the model first here
        pytest.fail(f"{case.id}: {exc}", pytrace=False)
    if not session.settings.timing_disabled:
        _measure(harness, result, generator)
    else:
        harness.finish_memory(result)
    stages = {k: v for k, v in harness.generation_build.items()
              if k not in ("build_seconds", "built_now")}
    if stages:
        result.generation["artifact"] = stages
    _accuracy(harness, result, logits, tokens)


def _measure(harness: CaseHarness, result: Result, generator: Generator) -> None:
    from pytest_xfperf.baselines.gate import decided
    from pytest_xfperf.generation.timing import GenerationMeasurement
    from pytest_xfperf.measure.blocks import BlockPlan
    from pytest_xfperf.measure.case import make_yardstick

    case, session = harness.case, harness.session
    settings = session.settings
    policy = settings.gate.policy
    result.machine_state = machine_state.snapshot()
    session.notes.extend(machine_state.warnings(result.machine_state))
    baseline = session.baseline_for(case)
    primary = primary_metric(case.shape.new_tokens)

    def stop(records: Mapping[str, dict[str, Any]], eager: Mapping[str, Any] | None,
             final: bool) -> bool:
        more = {k: v for k, v in records.items() if k != primary}
        return decided(records[primary], eager, baseline, harness.tolerances, policy, final,
                       metric=primary, more=more)

    def reference(blocks: int) -> dict[str, Any] | None:
        with harness.memory_paused():  # another model's work: not the case's memory
            return session.generation_reference_record(case, harness.spec, ids, blocks)

    ids = harness.inputs["input_ids"]

    yardstick = make_yardstick(case.backend, settings.backend_options.get(case.backend, {}))
    measurement = GenerationMeasurement(generator, ids, case.shape.new_tokens, yardstick,
                                        BlockPlan.of(settings.timing, policy), policy,
                                        lambda: session.device_lock(case.backend))
    try:
        records, eager, result.rounds = measurement.run(
            stop, settings.gate.update_baselines,
            None if case.is_speedup_reference else reference)
    finally:
        if yardstick is not None:
            yardstick.close()
    harness.finish_memory(result)
    series = measurement.series
    result.timing_metric = primary
    result.timing = records[primary]
    result.more_timing = {k: v for k, v in records.items() if k != primary}
    if case.is_speedup_reference:
        session.remember_reference(case, records[primary])
    elif eager is not None and eager.get("clock") == records[primary]["clock"]:
        result.reference_timing = eager
        result.speedup = (statistics.median(eager["case_ms"])
                          / statistics.median(records[primary]["case_ms"]))
    result.samples_ms = [g.wall_ms for g in series.generations]
    result.stats = summarize([s / 1000 for s in result.samples_ms], case.shape.batch)
    result.measure_seconds = {"case": round(series.case_seconds, 3),
                              "yardstick": round(series.yardstick_seconds, 3)}
    _figures(harness, result, series)


def _figures(harness: CaseHarness, result: Result, series: Any) -> None:
    case, session = harness.case, harness.session
    batch, prompt, new = case.shape.batch, case.shape.seq, case.shape.new_tokens
    ttfts = sorted(g.ttft_ms for g in series.generations)
    steps = sorted(s for g in series.generations for s in g.steps_ms)
    tpots = [g.tpot_ms for g in series.generations if g.tpot_ms is not None]
    model_config = session.model(harness.spec).config
    layers, kv_heads, head_dim = scoring.kv_geometry(model_config)
    element = kv_element_bytes(case.precision, BACKENDS[case.backend].device)
    kv_bytes = scoring.kv_cache_bytes(layers, kv_heads, head_dim, batch, prompt + new, element)
    metrics: dict[str, float] = {"ttft_ms": statistics.median(ttfts),
                                 "kv_cache_mb": kv_bytes / 2**20}
    details: dict[str, Any] = {
        "prompt": prompt, "new_tokens": new, "generations": len(series.generations),
        "clock": series.clock,
        "ttft_ms": {"p50": percentile(ttfts, 50), "p99": percentile(ttfts, 99)},
        "e2e_ms": {"p50": result.stats.p50_ms if result.stats else None},
        "kv_cache_bytes": kv_bytes, "kv_element_bytes": element}
    if tpots:
        tpot = statistics.median(tpots)
        metrics.update(tpot_ms=tpot, tokens_per_s=batch * 1000 / tpot)
        details["tpot_ms"] = {"p50": percentile(steps, 50), "p99": percentile(steps, 99),
                              "median_of_generations": tpot}
        details["tokens_per_s"] = batch * 1000 / tpot
    result.generation_metrics = metrics
    result.generation = details
    _compute(harness, result, layers, kv_heads, head_dim, element)


def _linear_weights(model: torch.nn.Module) -> tuple[int, int]:
    """(weights of the matrix products run per token, all weights): linear layers (GPT-2's
    Conv1D too) and the LM head; embeddings are looked up, not multiplied."""
    import torch

    in_products = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (isinstance(weight, torch.Tensor) and weight.dim() == 2
                and not isinstance(module, torch.nn.Embedding)):
            in_products += weight.numel()
    total = sum(p.numel() for p in model.parameters())
    return in_products, total


def _compute(harness: CaseHarness, result: Result, layers: int, kv_heads: int, head_dim: int,
             element: int) -> None:
    """Prefill and decode FLOP/s, their share of the measured GEMM peak, and the decode's
    bytes per step against the measured copy bandwidth (decode reads every weight and the
    cache once a step: it is bound by memory, not arithmetic)."""
    from pytest_xfperf.measure.peak import arithmetic
    from pytest_xfperf.measure.yardstick import case_threads

    case, session = harness.case, harness.session
    details = result.generation
    batch, prompt, new = case.shape.batch, case.shape.seq, case.shape.new_tokens
    model = session.model(harness.spec)
    per_token, weights = _linear_weights(model)
    config: Any = model.config
    text = config.get_text_config(decoder=True)
    heads = int(getattr(text, "num_attention_heads", 0) or getattr(text, "n_head", 0))
    width = heads * head_dim
    # Attention's two products: 2 x 2 x width FLOPs per (query, key) pair, per layer.
    prefill = batch * (2 * per_token * prompt + 2 * layers * width * prompt * (prompt + 1))
    middle = prompt + new / 2  # the mean context length of a decode step
    decode = batch * (2 * per_token + 4 * layers * width * middle)
    compute: dict[str, Any] = {"prefill_flops": prefill, "decode_flops_per_step": decode,
                               "prefill_flops_per_s": prefill / (details["ttft_ms"]["p50"]
                                                                 / 1000)}
    read = weights * weight_bytes(case.precision)
    kv_step = 2 * layers * batch * kv_heads * head_dim * middle * element
    if "tpot_ms" in details:
        seconds = details["tpot_ms"]["median_of_generations"] / 1000
        compute.update(decode_flops_per_s=decode / seconds,
                       decode_bytes_per_step=read + kv_step,
                       decode_bytes_per_s=(read + kv_step) / seconds)
    device = BACKENDS[case.backend].device
    threads = case_threads(session.settings.backend_options.get(case.backend, {}))
    kind = arithmetic(case.precision, device, tf32=fp32_in_tf32(case.backend))
    compute["arithmetic"] = kind
    try:
        fastest = max(compute["prefill_flops_per_s"], compute.get("decode_flops_per_s", 0.0))
        peak, identity = session.peaks.get(device, kind, threads, fastest)
        copy, copy_identity = session.peaks.get(device, "copy", threads,
                                                compute.get("decode_bytes_per_s", 0.0))
    except ModuleNotFoundError as exc:
        session.notes.add(f"no % of peak on the CPU: its peak is measured with {exc.name} "
                          "(pip install 'pytest-xfperf[cpu]')")
        result.compute = compute
        return
    compute.update(peak_flops_per_s=peak, peak=identity,
                   prefill_peak_percent=compute["prefill_flops_per_s"] / peak,
                   copy_bytes_per_s=copy, copy=copy_identity)
    if "decode_flops_per_s" in compute:
        compute.update(decode_peak_percent=compute["decode_flops_per_s"] / peak,
                       decode_bandwidth_percent=compute["decode_bytes_per_s"] / copy)
    result.compute = compute


def reference_gaps(model: torch.nn.Module, input_ids: np.ndarray, tokens: np.ndarray,
                   reference_tokens: np.ndarray) -> np.ndarray:
    """At each generated step, FP32's top logit minus its logit for the token the case chose,
    FP32 (``model``, eager on the CPU) being fed the prompt and the case's own tokens before
    it. Rows equal to FP32's own generation are FP32's choices throughout (0); the others
    take one forward each."""
    import numpy as np
    import torch

    gaps = np.zeros(tokens.shape, dtype=np.float64)
    prompt = input_ids.shape[1]
    for row in np.flatnonzero((tokens != reference_tokens).any(axis=1)):
        sequence = np.concatenate([input_ids[row], tokens[row, :-1]])[None]
        with torch.inference_mode():
            output = model(input_ids=torch.from_numpy(sequence).long())
            logits = output.logits[0, prompt - 1:].double()
            chosen = torch.from_numpy(tokens[row]).long()[:, None]
            gaps[row] = (logits.max(dim=1).values - logits.gather(1, chosen)[:, 0]).numpy()
    return gaps


def _accuracy(harness: CaseHarness, result: Result, logits: np.ndarray, tokens: np.ndarray
              ) -> None:
    case, session = harness.case, harness.session
    if case.is_fp32_reference:
        return  # it is the reference
    input_ids = harness.inputs["input_ids"]
    reference_logits, reference_tokens = reference_generation(
        session, harness.spec, input_ids, case.shape.new_tokens)
    accuracy = scoring.logits_agreement(logits, reference_logits)
    resolution = scoring.margin_resolution(logits, reference_logits)
    gaps = reference_gaps(session.model(harness.spec), input_ids, tokens, reference_tokens)
    score = scoring.greedy_agreement(tokens, reference_tokens, gaps, resolution)
    accuracy["token_agreement"] = score.agreement
    result.accuracy = accuracy
    result.generation.update(
        first_divergence=score.first_divergence, first_error=score.first_error,
        near_ties=score.ties, margin_resolution=resolution,
        accuracy_versus="FP32 PyTorch eager on the CPU, same prompt")
    result.accuracy_problems = scoring.violations(accuracy, case.precision)
