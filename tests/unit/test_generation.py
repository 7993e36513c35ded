"""Generative cases without running a model: the shape grammar, which cases a matrix holds,
token-agreement scoring, KV-cache sizing, and the gate on TTFT and TPOT block records."""

import numpy as np
import pytest

from pytest_xfperf.baselines import store
from pytest_xfperf.baselines.gate import Evidence, decided, verdict
from pytest_xfperf.baselines.rule import GatePolicy
from pytest_xfperf.generation.generators import generation_clock
from pytest_xfperf.generation.scoring import (
    TokenScore,
    greedy_agreement,
    kv_cache_bytes,
    kv_geometry,
    logits_agreement,
    margin_resolution,
    token_agreement,
    violations,
)
from pytest_xfperf.matrix import expand, model_shapes
from pytest_xfperf.metrics import Verdict
from pytest_xfperf.settings import GateOptions, Tolerances
from pytest_xfperf.values import Shape, parse_shapes


def test_generative_shapes_parse_with_batch_prompt_and_new_tokens():
    shape = Shape.parse("b4p128n32")
    assert (shape.batch, shape.seq, shape.new_tokens) == (4, 128, 32)
    assert shape.generative and shape.label == "b4p128n32" and str(shape) == "b4p128n32"
    assert Shape.parse(" B1P16N8 ") == Shape(1, 16, 8)
    encoder = Shape.parse("8x256")
    assert not encoder.generative and encoder.label == "b8s256" and str(encoder) == "8x256"
    assert parse_shapes("1x128, b1p64n16") == (Shape(1, 128), Shape(1, 64, 16))


@pytest.mark.parametrize("text, message", [
    ("b1p128", "bBATCHpPROMPTnNEW"),
    ("b1p128n0", "generates no token"),
    ("b0p128n4", "batch size 0"),
    ("b1p128n99999", "new tokens 99999"),
])
def test_malformed_generative_shapes_say_the_valid_form(text, message):
    with pytest.raises(ValueError, match=message):
        Shape.parse(text)


def test_each_model_gets_its_own_kind_of_shape():
    shapes = (Shape(1, 128), Shape(1, 64, 16))
    assert model_shapes("bert-base", shapes, None) == [Shape(1, 128)]
    assert model_shapes("gpt2-tiny", shapes, 512) == [Shape(1, 64, 16)]
    with pytest.raises(ValueError, match="generative.*b1p128n32.*got 1x128"):
        model_shapes("gpt2-tiny", (Shape(1, 128),), 512)
    with pytest.raises(ValueError, match="encoder.*BATCHxSEQ"):
        model_shapes("bert-base", (Shape(1, 64, 16),), None)
    with pytest.raises(ValueError, match="needs 600 positions; model 'gpt2-tiny' has 512"):
        model_shapes("gpt2-tiny", (Shape(1, 500, 100),), 512)
    assert model_shapes("local", (Shape(1, 5000, 100),), 0)  # limit unknown: not checked


def test_generative_cases_skip_where_a_backend_has_no_generation_path():
    cases = expand([("gpt2-tiny", "gpt2-tiny")],
                   ["torch-cpu", "ort-cpu", "tensorrt", "ort-cuda-graph", "torch-compile"],
                   ["fp32", "int8-dynamic", "fp16"], [Shape(1, 16, 4)],
                   generative={"gpt2-tiny": 512})
    reasons = {c.id: c.skip_reason for c in cases}
    assert reasons["gpt2-tiny/torch-cpu/fp32/b1p16n4"] is None
    assert reasons["gpt2-tiny/ort-cpu/fp32/b1p16n4"] is None
    assert reasons["gpt2-tiny/ort-cpu/int8-dynamic/b1p16n4"] is None
    assert "ort-cpu generates in fp32, int8-dynamic, not fp16" in (
        reasons["gpt2-tiny/ort-cpu/fp16/b1p16n4"] or "")
    assert "no generation path" in (reasons["gpt2-tiny/tensorrt/fp16/b1p16n4"] or "")
    # ort-cuda-graph generates in FP32 and FP16 (the fixed-buffer decoder), not INT8.
    assert reasons["gpt2-tiny/ort-cuda-graph/fp16/b1p16n4"] is None
    assert "ort-cuda-graph does not run int8-dynamic" in (
        reasons["gpt2-tiny/ort-cuda-graph/int8-dynamic/b1p16n4"] or "")
    # torch-compile generates at every GPU precision; CUDA itself is checked when it runs.
    assert reasons["gpt2-tiny/torch-compile/int8-dynamic/b1p16n4"] is None
    assert "torch-cpu does not run int8-dynamic" in (
        reasons["gpt2-tiny/torch-cpu/int8-dynamic/b1p16n4"] or "")
    assert all(c.generative for c in cases)
    served = expand([("gpt2-tiny", "gpt2-tiny")], ["torch-cpu"], ["fp32"], [Shape(4, 16, 4)],
                    ["offline"], generative={"gpt2-tiny": 512})
    assert "run single-stream" in (served[0].skip_reason or "")


def test_token_agreement_counts_each_row_up_to_its_first_divergence():
    reference = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert token_agreement(reference.copy(), reference) == (1.0, 4)
    # Row 0 diverges at position 2 (later matches do not count), row 1 at 0.
    tokens = np.array([[1, 2, 9, 4], [0, 6, 7, 8]])
    assert token_agreement(tokens, reference) == (pytest.approx((2 / 4 + 0 / 4) / 2), 0)
    with pytest.raises(ValueError, match="generated"):
        token_agreement(tokens[:, :3], reference)


def test_margin_resolution_is_the_largest_move_of_the_top_two_margin_on_the_prompt():
    reference = np.zeros((2, 3, 5))
    reference[..., 0], reference[..., 1] = 2.0, 1.0  # top two everywhere: tokens 0 and 1
    assert margin_resolution(reference.copy(), reference) == 0.0
    moved = reference.copy()
    moved[1, 2, 1] += 0.3  # one position's runner-up gains 0.3: the margin shrinks by 0.3
    moved[0, 0, 4] += 0.9  # a token outside the reference's top two does not count
    assert margin_resolution(moved, reference) == pytest.approx(0.3)
    moved[0, 1, 0] = float("nan")
    assert margin_resolution(moved, reference) == float("inf")


def test_greedy_agreement_excuses_near_ties_and_stops_at_the_first_error():
    reference = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    tokens = np.array([[1, 9, 9, 9], [5, 6, 0, 8]])
    # Row 0 leaves FP32's path at step 1 on a near-tie (gap 0.01) and keeps to FP32's choices
    # on its own path after it; row 1's step 2 is a token FP32 ranks 0.5 below its top.
    gaps = np.array([[0.0, 0.01, 0.0, 0.0], [0.0, 0.0, 0.5, 0.0]])
    score = greedy_agreement(tokens, reference, gaps, resolution=0.05)
    assert score == TokenScore(agreement=pytest.approx((4 / 4 + 2 / 4) / 2), first_error=2,
                               first_divergence=1, ties=1)
    # With no resolution it is the plain share up to the first divergence.
    exact = greedy_agreement(tokens, reference, gaps, resolution=0.0)
    assert (exact.agreement, exact.first_error) == token_agreement(tokens, reference)
    # A NaN gap (a non-finite reference logit) is an error, never a tie.
    gaps[0, 1] = float("nan")
    assert greedy_agreement(tokens, reference, gaps, resolution=1e9).first_error == 1
    with pytest.raises(ValueError, match="gaps"):
        greedy_agreement(tokens, reference, gaps[:, :3], resolution=0.0)


def test_prompt_logit_agreement_and_thresholds():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((1, 6, 50)).astype(np.float32)
    same = logits_agreement(reference, reference)
    assert same["cosine"] == pytest.approx(1.0) and same["top1"] == 1.0
    swapped = reference.copy()
    swapped[0, 0] = -swapped[0, 0]  # one position's argmax moves
    assert logits_agreement(swapped, reference)["top1"] == pytest.approx(5 / 6)
    assert violations({"cosine": 1.0, "top1": 1.0, "token_agreement": 1.0}, "fp32") == []
    problems = violations({"cosine": 0.98, "top1": 0.5, "token_agreement": 0.1}, "int8-dynamic")
    assert len(problems) == 3 and "greedy tokens FP32 would choose 0.1000 < 0.9" in problems[2]
    assert violations({"cosine": float("nan")}, "fp16")  # NaN fails
    # INT8's bars: tokens as FP16's; prompt top-1 0.75 (llama-small read 0.797 on AVX2).
    assert violations({"cosine": 0.996, "top1": 0.797, "token_agreement": 1.0},
                      "int8-dynamic") == []
    # FP8's: llama-small's captured FP8 decode on an H200 read cosine 0.98904, top-1 0.680.
    assert violations({"cosine": 0.98904, "top1": 0.680, "token_agreement": 1.0}, "fp8") == []
    assert len(violations({"cosine": 0.97, "top1": 0.5, "token_agreement": 0.8}, "fp8")) == 3


def test_a_quantized_precisions_cache_keeps_the_dtype_its_model_runs_in():
    from pytest_xfperf.generation.check import kv_element_bytes

    assert kv_element_bytes("int8-dynamic", "cpu") == 4  # ONNX Runtime's INT8 graph: FP32
    assert kv_element_bytes("int8-dynamic", "cuda") == 2  # FP16 around INT8 linear layers
    assert kv_element_bytes("fp8", "cuda") == 2  # BF16 around FP8 linear layers
    assert kv_element_bytes("bf16", "cuda") == kv_element_bytes("fp16", "cpu") == 2


def test_kv_cache_size_follows_the_configs_geometry():
    transformers = pytest.importorskip("transformers")
    gpt2 = transformers.GPT2Config(n_embd=768, n_layer=12, n_head=12)
    assert kv_geometry(gpt2) == (12, 12, 64)
    llama = transformers.LlamaConfig(hidden_size=768, num_hidden_layers=12,
                                     num_attention_heads=12, num_key_value_heads=3)
    assert kv_geometry(llama) == (12, 3, 64)  # grouped-query attention: 3 KV heads
    # GPT-2 small, b1, 128 + 32 positions, FP32: 2 x 12 x 12 x 160 x 64 x 4 bytes = 11.25 MiB.
    assert kv_cache_bytes(12, 12, 64, 1, 160, 4) == 11_796_480
    assert kv_cache_bytes(12, 3, 64, 32, 192, 2) == 2 * 12 * 32 * 3 * 192 * 64 * 2


def _record(values, yardstick=None):
    out = {"clock": "wall", "case_ms": list(values)}
    if yardstick is not None:
        out.update(yardstick="y", yardstick_ms=list(yardstick))
    return out


def _entry(tpot, ttft):
    return {"metrics": {"tpot_ms": 10.0, "ttft_ms": 50.0, "tokens_per_s": 100.0,
                        "kv_cache_mb": 1.0},
            "timing": _record(tpot), "more_timing": {"ttft_ms": _record(ttft)}}


# Blocks of one synthetic process: the policy's between-process spreads are left out here
# (tests/unit/test_gate.py tests them).
WITHIN = GatePolicy(spread_wall_own=0.0, spread_wall_normalized=0.0, spread_wall_torch_own=0.0,
                    spread_wall_torch_normalized=0.0)
STEADY_TPOT = [10.0, 10.1, 9.9, 10.05, 9.95, 10.02, 9.98, 10.0, 10.03, 9.97, 10.01, 9.99]
STEADY_TTFT = [50 * v / 10 for v in STEADY_TPOT]


def _evidence(tpot_scale, ttft_scale):
    tpot = [v * tpot_scale for v in STEADY_TPOT[:8]]
    ttft = [v * ttft_scale for v in STEADY_TTFT[:8]]
    metrics = {"tpot_ms": 10.0 * tpot_scale, "ttft_ms": 50.0 * ttft_scale,
               "tokens_per_s": 100.0 / tpot_scale, "kv_cache_mb": 1.0}
    return Evidence(metrics=metrics, timing=_record(tpot), timing_metric="tpot_ms",
                    more_timing={"ttft_ms": _record(ttft)})


@pytest.mark.parametrize("tpot_scale, ttft_scale, expected, failing", [
    (1.0, 1.0, Verdict.PASS, None),
    (1.3, 1.0, Verdict.REGRESSED, "time per output token"),
    (1.0, 1.3, Verdict.REGRESSED, "time to first token"),
])
def test_the_gate_decides_tpot_and_ttft_with_the_block_rule(tpot_scale, ttft_scale,
                                                              expected, failing):
    baseline = _entry(STEADY_TPOT, STEADY_TTFT)
    outcome = verdict(_evidence(tpot_scale, ttft_scale), baseline,
                      GateOptions(tolerances=Tolerances(), policy=WITHIN))
    assert outcome.verdict == expected
    assert set(outcome.decisions) == {"tpot_ms", "ttft_ms"}
    assert outcome.deltas["tpot_ms"] == pytest.approx(tpot_scale - 1, abs=0.01)
    assert outcome.deltas["tokens_per_s"] == pytest.approx(1 / tpot_scale - 1, abs=0.01)
    if failing:
        assert len(outcome.regressions) == 1 and failing in outcome.regressions[0]
    # tokens/s is the TPOT's inverse: decided with it, never again by a threshold.
    assert not any("tokens_per_s" in r for r in outcome.regressions)


def test_the_stopping_rule_waits_until_both_generation_metrics_are_decided():
    baseline = _entry(STEADY_TPOT, STEADY_TTFT)
    policy, tolerances = WITHIN, Tolerances()
    clear = _evidence(1.0, 1.0)
    assert decided(clear.timing, None, baseline, tolerances, policy, final=False,
                   metric="tpot_ms", more=clear.more_timing)
    # The TTFT sits on the 10 % line with noisy blocks: another round is needed.
    noisy = [v * 1.1 * (1.15 if i % 2 else 0.87) for i, v in enumerate(STEADY_TTFT[:8])]
    assert not decided(clear.timing, None, baseline, tolerances, policy, final=False,
                       metric="tpot_ms", more={"ttft_ms": _record(noisy)})


def test_device_clock_generation_records_say_what_paces_the_backend():
    """A captured decode step (torch-cuda-graph, torch-compile) keeps the device's narrow
    spread in the gate, and its prefill (TTFT) the prefill's (it moved up to 10 % between
    unchanged processes, the decode steps within 3 %); eager generation on a GPU, and a
    record that does not say, the host's wide one."""
    from pytest_xfperf.generation.timing import GenerationSeries

    def series(clock: str, backend: str) -> GenerationSeries:
        out = GenerationSeries(clock=clock, backend=backend)
        out.tpot_ms, out.ttft_ms = [10.0, 10.1], [50.0, 50.5]
        return out

    for backend in ("torch-cuda-graph", "torch-compile"):
        records = series("device", backend).records(None)
        assert records["tpot_ms"]["pacing"] == "captured"
        assert records["ttft_ms"]["pacing"] == "prefill"
    # torch-compile's encoder calls replay a hand capture: the captured spread.
    from pytest_xfperf.backends.catalog import pace_fields
    assert pace_fields("device", "torch-compile") == {"pacing": "captured"}
    # ort-cuda-graph's encoder calls are captured; its generation steps are host-paced runs.
    assert pace_fields("device", "ort-cuda-graph") == {"pacing": "captured"}
    ort_graph = series("device", "ort-cuda-graph").records(None)
    assert ort_graph["tpot_ms"]["pacing"] == ort_graph["ttft_ms"]["pacing"] == "launched"
    eager = series("device", "torch-cuda").records(None)
    assert eager["tpot_ms"]["pacing"] == eager["ttft_ms"]["pacing"] == "launched"
    # On the CPU, the library whose threads run it (PyTorch's have spreads of their own).
    assert series("wall", "torch-cpu").records(None)["tpot_ms"]["pacing"] == "torch"
    baseline = {**_entry(STEADY_TPOT, STEADY_TTFT)}
    device = {"clock": "device", "case_ms": STEADY_TPOT}
    baseline["timing"] = device
    baseline["more_timing"] = {"ttft_ms": {**device, "case_ms": STEADY_TTFT}}
    slower = [v * 1.3 for v in STEADY_TPOT[:8]]
    ttft = STEADY_TTFT[:8]
    verdicts = {}
    for pacing in ("captured", "launched"):
        now = {"clock": "device", "case_ms": slower, "pacing": pacing}
        evidence = Evidence(metrics={"tpot_ms": 13.0, "ttft_ms": 50.0, "kv_cache_mb": 1.0},
                            timing=now, timing_metric="tpot_ms",
                            more_timing={"ttft_ms": {**now, "case_ms": ttft}})
        verdicts[pacing] = verdict(evidence, baseline, GateOptions()).verdict
    assert verdicts == {"captured": Verdict.REGRESSED, "launched": Verdict.UNSTABLE}


def test_a_prefill_that_moved_like_an_unchanged_one_is_no_regression_at_5_percent():
    """Unchanged captured generations moved up to +10.3 % in TTFT between processes while
    their decode steps stayed within 3 %: a +6 % TTFT with steady blocks is within what the
    prefill's spread allows at a 5 % line (not REGRESSED), where a decode step, a captured
    replay, +10 % slower is one."""

    def device(values, pacing):
        return {"clock": "device", "case_ms": list(values), "pacing": pacing}

    baseline = _entry(STEADY_TPOT, STEADY_TTFT)
    baseline["timing"] = device(STEADY_TPOT, "captured")
    baseline["more_timing"] = {"ttft_ms": device(STEADY_TTFT, "prefill")}
    options = GateOptions(tolerances=Tolerances(p50=0.05))

    def gated(tpot_scale: float, ttft_scale: float):
        tpot = [v * tpot_scale for v in STEADY_TPOT[:8]]
        ttft = [v * ttft_scale for v in STEADY_TTFT[:8]]
        evidence = Evidence(metrics={"tpot_ms": 10 * tpot_scale, "ttft_ms": 50 * ttft_scale,
                                     "kv_cache_mb": 1.0},
                            timing=device(tpot, "captured"), timing_metric="tpot_ms",
                            more_timing={"ttft_ms": device(ttft, "prefill")})
        return verdict(evidence, baseline, options)

    prefill_moved = gated(1.0, 1.06)
    assert prefill_moved.verdict != Verdict.REGRESSED
    assert prefill_moved.decisions["ttft_ms"]["outcome"] != "regressed"
    step_slower = gated(1.10, 1.0)
    assert step_slower.verdict == Verdict.REGRESSED
    assert step_slower.decisions["tpot_ms"]["outcome"] == "regressed"
    # A prefill slower by far more than its spread still fails.
    assert gated(1.0, 1.3).verdict == Verdict.REGRESSED


def test_a_baseline_entry_keeps_and_validates_the_ttft_record():
    store.validate_entry("g/torch-cpu/fp32/b1p8n4", _entry(STEADY_TPOT, STEADY_TTFT))
    bad = _entry(STEADY_TPOT, STEADY_TTFT)
    bad["more_timing"] = {"latency": _record(STEADY_TTFT)}
    with pytest.raises(ValueError, match="more_timing.latency must be a block record"):
        store.validate_entry("g/torch-cpu/fp32/b1p8n4", bad)
    zero = _entry(STEADY_TPOT, [0.0, *STEADY_TTFT[1:]])
    with pytest.raises(ValueError, match=r"more_timing.ttft_ms.case_ms\[0\]"):
        store.validate_entry("g/torch-cpu/fp32/b1p8n4", zero)


def test_a_generative_result_survives_the_xdist_round_trip_with_its_table_row():
    from pytest_xfperf.baselines.gate import GateOutcome
    from pytest_xfperf.matrix import Case
    from pytest_xfperf.measure.stats import summarize
    from pytest_xfperf.report.tables import GENERATION, build_groups, generation_cells
    from pytest_xfperf.result import Result

    case = Case("g", "ort-cpu", "int8-dynamic", Shape(1, 16, 8))
    result = Result(
        case=case, timing_metric="tpot_ms", verdict=Verdict.REGRESSED, speedup=2.5,
        stats=summarize([0.012, 0.013], 1),
        generation_metrics={"ttft_ms": 5.0, "tpot_ms": 1.0, "tokens_per_s": 1000.0,
                            "kv_cache_mb": 0.5},
        generation={"tpot_ms": {"p50": 1.0, "p99": 1.5}},
        accuracy={"cosine": 0.999, "top1": 1.0, "token_agreement": 0.75},
        gate=GateOutcome(verdict=Verdict.REGRESSED,
                         deltas={"tpot_ms": 0.25, "ttft_ms": 0.02, "tokens_per_s": -0.2,
                                 "speedup": -0.2}))
    # What an xdist worker sends and the controller rebuilds for the reports.
    back = Result.from_json(result.as_json())
    assert back.case == case and back.case.id == "g/ort-cpu/int8-dynamic/b1p16n8"
    assert back.metrics() == {"ttft_ms": 5.0, "tpot_ms": 1.0, "tokens_per_s": 1000.0,
                              "kv_cache_mb": 0.5, "cosine": 0.999, "top1": 1.0,
                              "token_agreement": 0.75, "speedup": 2.5}
    [group] = build_groups([back], None)
    assert group.scenario == GENERATION
    cells = generation_cells(group.rows[0])
    assert cells[:6] == ["ort-cpu/int8-dynamic", "5.00", "1.000", "1.500", "1000", "2.50x"]
    assert cells[-4:] == ["+25.0% slower", "+2.0% slower", "-20.0% lost", "REGRESSED"]


def test_the_generators_whose_steps_queue_on_torchs_stream_are_timed_by_cuda_events():
    """A step that ends with its token on the host (ort-cuda) is timed on the wall clock; the
    captured ORT decoder queues on torch's stream as PyTorch's GPU generators do."""
    assert generation_clock("ort-cuda-graph") == "device"
    assert generation_clock("torch-cuda-graph") == "device"
    assert generation_clock("ort-cuda") == "wall"
    assert generation_clock("ort-cpu") == "wall"
    assert generation_clock("torch-cpu") == "wall"
