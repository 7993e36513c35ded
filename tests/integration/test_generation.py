"""Every CPU generation path on the tiny configs: PyTorch's dynamic cache, and the ONNX decoder
(FP32 and INT8 dynamic) with its past and present tensors, against FP32 PyTorch; and the
block loop that times them."""

import copy

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")

from pytest_xfperf.artifacts.cache import ArtifactCache  # noqa: E402
from pytest_xfperf.baselines.rule import GatePolicy  # noqa: E402
from pytest_xfperf.generation.check import reference_gaps, run_untimed  # noqa: E402
from pytest_xfperf.generation.export import (  # noqa: E402
    FIXED_BUFFERS,
    DecoderTarget,
    decoder_artifact,
)
from pytest_xfperf.generation.generators import (  # noqa: E402
    OrtGenerator,
    OrtGraphGenerator,
    TorchGenerator,
)
from pytest_xfperf.generation.scoring import logits_agreement, token_agreement  # noqa: E402
from pytest_xfperf.generation.timing import GenerationMeasurement  # noqa: E402
from pytest_xfperf.measure.blocks import BlockPlan  # noqa: E402
from pytest_xfperf.measure.timing import TimingPolicy  # noqa: E402
from pytest_xfperf.models.builtin import BUILTIN  # noqa: E402

MODELS = ("gpt2-tiny", "llama-tiny")
NEW_TOKENS = 8


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    spec = BUILTIN[request.param](0)
    return spec, spec.build()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return ArtifactCache(tmp_path_factory.mktemp("cache"))


def _full_fusion(family, layers):
    """What ORT's GPT-2 fusions make of each tiny decoder: every norm but the first follows a
    residual add and takes it in (Skip...), GPT-2's GELU becomes FastGelu."""
    if family == "gpt2":
        return {"SkipLayerNormalization": 2 * layers, "LayerNormalization": 1,
                "FastGelu": layers}
    return {"SimplifiedLayerNormalization": 1, "SkipSimplifiedLayerNormalization": 2 * layers}


def _reference(model):
    spec, module = model
    ids = spec.make_inputs(2, 12, 0)["input_ids"]
    generator = TorchGenerator("torch-cpu", copy.deepcopy(module), "cpu", "fp32")
    return ids, run_untimed(generator, ids, NEW_TOKENS)


@pytest.mark.parametrize("precision, min_cosine, min_tokens", [
    ("fp32", 0.99999, 1.0),
    ("int8-dynamic", 0.99, 0.25),
])
def test_the_onnx_decoder_generates_what_pytorch_does(model, cache, precision, min_cosine,
                                                        min_tokens):
    spec, module = model
    ids, (reference_logits, reference_tokens) = _reference(model)
    target = DecoderTarget("cpu", spec.family, spec.num_heads, spec.hidden_size)
    path, built = decoder_artifact(cache, spec.name, spec.identity, precision,
                                   lambda: module, reduce_range=False, target=target)
    # ORT fuses both decoders for the CPU: GPT-2's LayerNorms, Llama's RMS norms.
    assert built["optimize"]["fused"] == _full_fusion(spec.family, built["export"]["layers"])
    generator = OrtGenerator("ort-cpu", path, "cpu", {})
    logits, tokens = run_untimed(generator, ids, NEW_TOKENS)
    assert tokens.shape == (2, NEW_TOKENS)
    assert logits_agreement(logits, reference_logits)["cosine"] >= min_cosine
    assert token_agreement(tokens, reference_tokens)[0] >= min_tokens
    # Built once: another process (a new cache object on the same directory) reads it back.
    _, again = decoder_artifact(ArtifactCache(cache.root), spec.name, spec.identity,
                                precision, lambda: module, reduce_range=False, target=target)
    assert again["built_now"] == []


def test_the_gpu_decoder_is_fused_for_the_cuda_provider_and_its_fp16_form_too(model, cache):
    """ORT's transformer optimizer fuses the GPU decoder as well (use_gpu): a file of its own,
    whose FP32 form the CPU provider also runs (the fused norms and FastGelu have CPU
    kernels), so here it is checked against PyTorch; the FP16 form converts the fused file
    (running it needs the CUDA provider)."""
    onnx = pytest.importorskip("onnx")
    spec, module = model
    ids, (reference_logits, reference_tokens) = _reference(model)
    target = DecoderTarget("cuda", spec.family, spec.num_heads, spec.hidden_size)
    path, built = decoder_artifact(cache, spec.name, spec.identity, "fp32",
                                   lambda: module, reduce_range=False, target=target)
    assert built["optimize"]["optimizer"].endswith("model_type=gpt2 use_gpu")
    fused = built["optimize"]["fused"]
    cpu_path, _ = decoder_artifact(cache, spec.name, spec.identity, "fp32", lambda: module,
                                   reduce_range=False,
                                   target=DecoderTarget("cpu", spec.family, spec.num_heads,
                                                        spec.hidden_size))
    assert fused == _full_fusion(spec.family, built["export"]["layers"])
    assert path != cpu_path  # the CPU's and the GPU's fusions are cached apart
    generator = OrtGenerator("ort-cpu", path, "cpu", {})
    logits, tokens = run_untimed(generator, ids, NEW_TOKENS)
    assert logits_agreement(logits, reference_logits)["cosine"] >= 0.99999
    assert token_agreement(tokens, reference_tokens)[0] == 1.0
    half, _ = decoder_artifact(cache, spec.name, spec.identity, "fp16", lambda: module,
                               reduce_range=False, target=target)
    ops = {node.op_type for node in onnx.load(str(half)).graph.node}
    assert set(fused) <= ops


@pytest.mark.parametrize("precision, min_cosine", [("fp32", 0.99999), ("fp16", 0.999)])
def test_the_fixed_buffer_decoder_generates_what_pytorch_does(model, cache, tmp_path,
                                                                precision, min_cosine):
    """ort-cuda-graph's decoder: keys and values in fixed buffers, two sets taking turns, bound
    by address. Its CUDA graph cannot run here (no GPU in CI): the same sessions, buffers and
    bindings run on the CPU provider, which checks the export, the turn-taking and the token
    bookkeeping against PyTorch, over repeated generations and a second shape."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    spec, module = model
    ids, (reference_logits, reference_tokens) = _reference(model)
    target = DecoderTarget("cuda", spec.family, spec.num_heads, spec.hidden_size)
    path, built = decoder_artifact(cache, spec.name, spec.identity, precision,
                                   lambda: module, reduce_range=False, target=target,
                                   form=FIXED_BUFFERS)
    growing, _ = decoder_artifact(cache, spec.name, spec.identity, precision, lambda: module,
                                  reduce_range=False, target=target)
    assert path != growing and built["export"]["form"] == FIXED_BUFFERS
    assert built["optimize"]["fused"] == _full_fusion(spec.family, built["export"]["layers"])
    generator = OrtGraphGenerator("ort-cuda-graph", path, {}, device="cpu")
    for _ in range(2):  # the second generation reuses the buffers the first one filled
        logits, tokens = run_untimed(generator, ids, NEW_TOKENS)
        assert logits_agreement(logits, reference_logits)["cosine"] >= min_cosine
        assert token_agreement(tokens, reference_tokens)[0] == 1.0
    other = spec.make_inputs(1, 5, 1)["input_ids"]
    torch_generator = TorchGenerator("torch-cpu", copy.deepcopy(module), "cpu", "fp32")
    _, other_reference = run_untimed(torch_generator, other, 3)
    assert token_agreement(run_untimed(generator, other, 3)[1], other_reference)[0] == 1.0
    generator.close()  # the result's settings are read after the generator is released
    settings = generator.settings()
    assert settings["kv_dtype"] == ("float16" if precision == "fp16" else "float32")
    assert settings["providers"] == ["CPUExecutionProvider"]
    # With its case's dimensions fixed, ORT folds every shape computation: no Shape node is
    # left to run on the CPU, which the CUDA provider's graph capture would refuse.
    options = ort.SessionOptions()
    for dimension, size in (("batch", 2), ("new", 1), ("positions", 20)):
        options.add_free_dimension_override_by_name(dimension, size)
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert "Shape" not in ops and "ConstantOfShape" not in ops


def test_a_family_without_an_ort_optimizer_keeps_one_export_for_both_devices(cache):
    """A decoder whose family ORT's optimizer does not know (a user's directory of another
    architecture) runs as exported: nothing fused, and the CPU and the GPU share the file."""
    spec = BUILTIN["llama-tiny"](0)
    paths, facts = [], []
    for device in ("cpu", "cuda"):
        path, built = decoder_artifact(cache, spec.name, spec.identity, "fp32", spec.build,
                                       reduce_range=False,
                                       target=DecoderTarget(device, "", spec.num_heads,
                                                            spec.hidden_size))
        paths.append(path)
        facts.append(built["optimize"])
    assert paths[0] == paths[1]
    assert facts[0]["fused"] == {} and "fusions skipped" in facts[0]["optimizer"]


def test_pytorch_generation_is_greedy_decoding_of_the_model(model):
    torch = pytest.importorskip("torch")
    spec, module = model
    ids, (_, tokens) = _reference(model)
    plain = copy.deepcopy(module)
    plain.generation_config.eos_token_id = None  # no early stop: exactly NEW_TOKENS tokens
    plain.generation_config.pad_token_id = 0
    with torch.inference_mode():
        expected = plain.generate(torch.from_numpy(ids), max_new_tokens=NEW_TOKENS,
                                  do_sample=False,
                                  attention_mask=torch.ones_like(torch.from_numpy(ids)))
    assert (tokens == expected[:, ids.shape[1]:].numpy()).all()


def test_reference_gaps_feed_fp32_the_cases_own_tokens(model):
    torch = pytest.importorskip("torch")
    np = pytest.importorskip("numpy")
    spec, module = model
    ids, (_, reference) = _reference(model)
    assert not reference_gaps(module, ids, reference, reference).any()  # FP32's own choices
    # Row 1 takes FP32's runner-up at step 3, then FP32's own choices on that new path.
    step = 3
    with torch.inference_mode():
        prefix = np.concatenate([ids[1], reference[1, :step]])[None]
        logits = module(input_ids=torch.from_numpy(prefix)).logits[0, -1].double()
    top_two = torch.topk(logits, 2)
    tokens = reference.copy()
    tokens[1, step] = int(top_two.indices[1])
    run = copy.deepcopy(module)
    for position in range(step + 1, NEW_TOKENS):
        sequence = np.concatenate([ids[1], tokens[1, :position]])[None]
        with torch.inference_mode():
            tokens[1, position] = int(run(input_ids=torch.from_numpy(sequence)).logits[0, -1]
                                      .argmax())
    gaps = reference_gaps(module, ids, tokens, reference)
    assert not gaps[0].any()
    margin = float(top_two.values[0] - top_two.values[1])
    assert gaps[1, step] == pytest.approx(margin, rel=1e-3, abs=1e-5) and margin > 0
    assert np.delete(gaps[1], step) == pytest.approx(0.0, abs=1e-4)


def test_the_block_loop_times_prefill_and_each_decode_step(model):
    from contextlib import nullcontext

    spec, module = model
    ids = spec.make_inputs(1, 12, 0)["input_ids"]
    generator = TorchGenerator("torch-cpu", copy.deepcopy(module), "cpu", "fp32")
    policy = GatePolicy()
    plan = BlockPlan.of(TimingPolicy(min_time=0.2, warmup_rounds=1), policy)
    measurement = GenerationMeasurement(generator, ids, NEW_TOKENS, None, plan, policy,
                                        nullcontext)
    records, eager, rounds = measurement.run(lambda records, eager, final: True,
                                             recording=False)
    assert rounds == 1 and eager is None  # no speed-up reference asked for
    assert set(records) == {"tpot_ms", "ttft_ms"}
    assert len(records["tpot_ms"]["case_ms"]) == policy.first_blocks
    generations = measurement.series.generations
    assert len(generations) >= policy.first_blocks * plan.case_calls
    assert all(len(g.steps_ms) == NEW_TOKENS - 1 for g in generations)
    # The wall clock of a generation covers its prefill and every step.
    assert all(g.wall_ms >= g.ttft_ms + sum(g.steps_ms) * 0.99 for g in generations)


def test_the_fp16_decoder_keeps_the_rms_norm_statistics_in_fp32(cache):
    """Squares of hidden states past 256 overflow FP16: PyTorch computes an RMS norm's mean
    square in FP32, and the ort-cuda FP16 decoder must too. Fused, each norm is one ORT
    operator that computes its statistics in FP32 (stash_type 1, and Skip... has no other
    mode); left unfused (a family ORT's optimizer does not know), the statistics' nodes stay
    in FP32. The conversion runs on any machine; running the FP16 graph needs the CUDA
    provider."""
    onnx = pytest.importorskip("onnx")
    from pytest_xfperf.generation.export import rms_statistics_nodes

    spec = BUILTIN["llama-tiny"](0)
    fused_path, built = decoder_artifact(
        cache, spec.name, spec.identity, "fp16", spec.build, reduce_range=False,
        target=DecoderTarget("cuda", spec.family, spec.num_heads, spec.hidden_size))
    graph = onnx.load(str(fused_path)).graph
    assert rms_statistics_nodes(graph) == []  # nothing of the norms left outside the fused ops
    norms = [n for n in graph.node if n.op_type == "SimplifiedLayerNormalization"]
    assert len(norms) == 1
    assert [a.i for a in norms[0].attribute if a.name == "stash_type"] == [1]

    unfused_path, built = decoder_artifact(
        cache, spec.name, spec.identity, "fp16", spec.build, reduce_range=False,
        target=DecoderTarget("cuda", "", spec.num_heads, spec.hidden_size))
    graph = onnx.load(str(unfused_path)).graph
    kept = set(rms_statistics_nodes(graph))
    # Two norms per layer and the final one; Pow, ReduceMean, Add, Sqrt, Reciprocal each.
    assert len(kept) == 5 * (2 * built["export"]["layers"] + 1)
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.op_type == "Pow" and node.name in kept:
            cast = producers[node.input[0]]
            assert cast.op_type == "Cast"
            assert next(a.i for a in cast.attribute if a.name == "to") == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("precision", ["int8-dynamic", "fp8"])
def test_gpu_quantized_generation_replaces_the_projections_and_keeps_fp32s_tokens(
        model, precision):
    """The torch-cuda generators' INT8 and FP8 path (a GPU's precisions), run here on the
    CPU, where torch's INT8 and FP8 GEMMs also run: GPT-2's Conv1D projections and Llama's
    linear layers are quantized, the vocabulary projection (2048, a multiple of 16) too."""
    torch = pytest.importorskip("torch")
    from pytest_xfperf.generation.scoring import GENERATION_THRESHOLDS

    spec, module = model
    ids, (reference_logits, reference_tokens) = _reference(model)
    generator = TorchGenerator("torch-cpu", copy.deepcopy(module), "cpu", precision)
    try:
        logits, tokens = run_untimed(generator, ids, NEW_TOKENS)
        settings = generator.settings()
    finally:
        generator.close()
    projections = 2 * (4 if spec.family == "gpt2" else 7) + 1  # per layer, and the LM head
    assert (settings["quantized_linears"], settings["float_linears"]) == (projections, 0)
    weight = {"int8-dynamic": torch.int8, "fp8": torch.float8_e4m3fn}[precision]
    assert any(b.dtype == weight for b in generator._model.buffers())
    bars = GENERATION_THRESHOLDS[precision]
    assert logits_agreement(logits, reference_logits)["cosine"] >= bars.min_cosine
    assert token_agreement(tokens, reference_tokens)[0] >= bars.min_tokens
    assert not (logits == reference_logits).all()  # it did quantize
