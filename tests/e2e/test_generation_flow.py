"""Generative cases through real pytest runs of a user-registered causal LM: a recording, an
unchanged run that passes, and the same model with four times the layers failing on its time
per output token; and the usage errors a generative matrix can raise."""

import json
import statistics
import textwrap

import pytest

from .conftest import PERF_TEST

USER_LM = textwrap.dedent('''
    import os
    import numpy as np
    from pytest_xfperf import ModelSpec

    def build():
        import torch
        import transformers
        config = transformers.LlamaConfig(
            hidden_size=512, num_hidden_layers=int(os.environ.get("LM_LAYERS", "2")),
            num_attention_heads=8, num_key_value_heads=2, intermediate_size=1536,
            vocab_size=1000, max_position_embeddings=256)
        torch.manual_seed(0)
        return transformers.AutoModelForCausalLM.from_config(config).eval()

    def not_a_language_model():
        import torch
        return torch.nn.Embedding(1000, 16)

    def prompt(batch, length, seed):
        rng = np.random.default_rng(seed)
        return {"input_ids": rng.integers(1, 1000, size=(batch, length), dtype=np.int64),
                "attention_mask": np.ones((batch, length), dtype=np.int64)}

    def pytest_xfperf_models(config):
        layers = os.environ.get("LM_LAYERS", "2")
        return [
            ModelSpec(name="lm", build=build, make_inputs=prompt, identity=f"lm-{layers}",
                      family="llama", generative=True, max_positions=256),
            ModelSpec(name="embedding", build=not_a_language_model, make_inputs=prompt,
                      identity="embedding", family="", generative=True),
        ]
''')
CASE = "lm/torch-cpu/fp32/b1p16n16"
# The 2-core CI host drifts between runs, and twice the layers (about 1.5x a token there) was
# not always decided past a 30 % line; four times the layers leaves room on both sides.
RUN = ["--xfperf", "-p", "no:cacheprovider", "--xfperf-models", "lm", "--xfperf-backends",
       "torch-cpu", "--xfperf-precisions", "fp32", "--xfperf-shapes", "b1p16n16",
       "--xfperf-min-time", "0.4", "--xfperf-tolerance", "30%"]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(USER_LM)
    pytester.makepyfile(test_perf=PERF_TEST)
    return pytester


def _run(project: pytest.Pytester, *args: str, layers: int = 2) -> pytest.RunResult:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LM_LAYERS", str(layers))
        return project.runpytest_subprocess(*args)


def test_four_times_the_layers_fails_on_time_per_output_token(project: pytest.Pytester):
    recorded = _run(project, *RUN, "--xfperf-update-baselines")
    recorded.assert_outcomes(passed=1)
    entry = json.loads(next((project.path / "baselines").glob("*.json")).read_text())[
        "cases"][CASE]
    assert set(entry["metrics"]) >= {"ttft_ms", "tpot_ms", "tokens_per_s", "kv_cache_mb"}
    assert len(entry["timing"]["case_ms"]) == 12  # the TPOT's blocks
    assert len(entry["more_timing"]["ttft_ms"]["case_ms"]) == 12
    assert entry["generation"]["new_tokens"] == 16

    same = _run(project, *RUN, "--xfperf-report", "same.json")
    same.assert_outcomes(passed=1)
    gate = json.loads((project.path / "same.json").read_text())["cases"][0]["baseline"]
    assert set(gate["decisions"]) == {"tpot_ms", "ttft_ms"}

    deeper = _run(project, *RUN, "--xfperf-report", "deeper.json", layers=8)
    assert deeper.ret == 1
    deeper.stdout.fnmatch_lines([f"{CASE}: REGRESSED", "*time per output token*"])
    case = json.loads((project.path / "deeper.json").read_text())["cases"][0]
    assert case["baseline"]["decisions"]["tpot_ms"]["outcome"] == "regressed"
    assert case["baseline"]["deltas"]["tpot_ms"] > 0.3
    # The deeper model's cache is four times as large, and the table says so.
    assert case["generation_metrics"]["kv_cache_mb"] == pytest.approx(
        4 * entry["metrics"]["kv_cache_mb"], rel=1e-3)


@pytest.mark.parametrize("shape, message", [
    ("1x16", "*model 'lm' is generative*b1p128n32*got 1x16*"),
    ("b1p250n10", "*shape b1p250n10 needs 260 positions; model 'lm' has 256*"),
    ("b1p16", "*malformed shape 'b1p16'*bBATCHpPROMPTnNEW*"),
])
def test_a_shape_a_generative_model_cannot_take_is_a_usage_error(project, shape, message):
    result = _run(project, "--xfperf", "-p", "no:cacheprovider", "--xfperf-models", "lm",
                  "--xfperf-shapes", shape)
    assert result.ret == 4
    result.stderr.fnmatch_lines([message])


def test_a_model_that_cannot_generate_fails_its_case_naming_what_it_needs(project):
    result = _run(project, "--xfperf", "-p", "no:cacheprovider", "--xfperf-models",
                  "embedding", "--xfperf-backends", "torch-cpu", "--xfperf-precisions", "fp32",
                  "--xfperf-shapes", "b1p8n4", "--benchmark-disable")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*embedding/torch-cpu/fp32/b1p8n4*Embedding is not a causal "
                                 "LM*transformers *ForCausalLM*"])


def test_an_onnx_decoder_is_gated_on_its_speedup_over_pytorch_generating_the_same_prompt(
        project: pytest.Pytester):
    run = [*RUN[:6], "torch-cpu,ort-cpu", *RUN[7:]]
    case = "lm/ort-cpu/fp32/b1p16n16"
    recorded = _run(project, *run, "--xfperf-update-baselines")
    recorded.assert_outcomes(passed=2)
    entries = json.loads(next((project.path / "baselines").glob("*.json")).read_text())["cases"]
    # The decoder's entry keeps PyTorch's TPOT blocks beside its own; PyTorch is the reference.
    reference = entries[case]["speedup"]
    assert reference["reference"] == "torch-cpu"
    assert len(reference["case_ms"]) == len(entries[case]["timing"]["case_ms"]) == 12
    assert "speedup" not in entries[CASE]
    # This re-run checks what the speed-up's decision is made of, not the gate's power
    # (benchmarks/gate_power.py measures that): wide between-process spreads keep a host
    # that changed its speed between the two runs from deciding it. On the 2-core CI host,
    # one such move (the yardstick 0.69x) read this unchanged decoder +53 % over it.
    same = _run(project, *run, "--xfperf-report", "same.json", "--xfperf-spreads",
                "wall_normalized=0.3,wall_torch_normalized=0.3")
    same.assert_outcomes(passed=2)
    cases = {c["id"]: c for c in json.loads((project.path / "same.json").read_text())["cases"]}
    decoder = cases[case]
    assert set(decoder["baseline"]["decisions"]) == {"tpot_ms", "ttft_ms", "speedup"}
    # The speed-up is PyTorch's TPOT over the decoder's, block medians of this run.
    eager, own = decoder["reference_timing"]["case_ms"], decoder["timing"]["case_ms"]
    assert decoder["speedup"] == pytest.approx(statistics.median(eager)
                                               / statistics.median(own))
    assert cases[CASE]["speedup"] is None  # the reference has none of its own
    change = decoder["baseline"]["deltas"]["speedup"]
    same.stdout.fnmatch_lines([f"*ort-cpu/fp32*{decoder['speedup']:.2f}x*{change:+.1%} "
                               f"{'gained' if change > 0 else 'lost'}*"])
