"""Issue-3 figures: precisions and fusions of the pipelines, on this machine.

    python benchmarks/pipeline_figures.py speed     # BERT-base b1s128, one process, interleaved
    python benchmarks/pipeline_figures.py fusions   # fused counts + build times, five models

``speed`` times PyTorch FP32 eager and ORT CPU FP32 / INT8 dynamic / INT8 static (QDQ)
block by block in one process (drift on a shared host hits all of them alike), then checks the
accuracy of both INT8 modes: token cosine vs FP32 for BERT-base and retrieval agreement over
the bundled corpus for the real-weight MiniLM. ``fusions`` builds each builtin's FP32, INT8
dynamic and INT8 static artifacts and prints the fingerprint the drift gate stores.
Each prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from pytest_xfperf.accuracy import compare, mean_pooled, retrieval_agreement, token_mask
from pytest_xfperf.artifacts.cache import ArtifactCache
from pytest_xfperf.artifacts.fusion import expected_fusions
from pytest_xfperf.artifacts.options import BuildOptions
from pytest_xfperf.artifacts.pipeline import ArtifactPipeline
from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner
from pytest_xfperf.backends.pytorch import TorchCpuRunner
from pytest_xfperf.baselines.machine import machine_key
from pytest_xfperf.measure.stats import summarize
from pytest_xfperf.measure.timing import TimingPolicy, time_calls
from pytest_xfperf.models.builtin import BUILTIN
from pytest_xfperf.models.corpus import sentences
from pytest_xfperf.values import Shape
from pytest_xfperf.versions import library_versions

SHAPE = Shape(1, 128)
INT8 = ("int8-dynamic", "int8-static")


def corpus_embeddings(spec: Any, runner: Any, seq: int = 128) -> Any:
    import numpy as np

    texts, chunks = sentences(), []
    for start in range(0, len(texts), 32):
        inputs = spec.tokenize(texts[start:start + 32], seq)
        chunks.append(mean_pooled(runner.run(inputs), inputs["attention_mask"]))
    return np.concatenate(chunks)


def speed(pipeline: ArtifactPipeline, blocks: int, rounds: int) -> dict[str, Any]:
    spec = BUILTIN["bert-base"](0)
    model = spec.build()
    runners: dict[str, Any] = {"torch-cpu/fp32": TorchCpuRunner(model)}
    graphs = {}
    for precision in ("fp32", *INT8):
        artifact = pipeline.build(spec, precision, lambda: model, SHAPE)
        runners[f"ort-cpu/{precision}"] = OrtCpuRunner(artifact.path)
        graphs[precision] = {"fused": artifact.graph["fused"],
                             "quantization": artifact.graph.get("quantization"),
                             "build_seconds": artifact.build_seconds}
    # The static QDQ file with per-tensor weight scales too (the default is per-channel).
    per_tensor = ArtifactPipeline(pipeline.cache, 0, BuildOptions(per_channel=False)).build(
        spec, "int8-static", lambda: model, SHAPE)
    runners["ort-cpu/int8-static-per-tensor"] = OrtCpuRunner(per_tensor.path)
    inputs = spec.make_inputs(SHAPE.batch, SHAPE.seq, 0)
    reference = runners["torch-cpu/fp32"].run(inputs)
    cosine = {}
    for name, runner in runners.items():
        out = runner.run(inputs)
        cosine[name] = round(compare(out, reference, token_mask(
            inputs["attention_mask"], out))["cosine"], 5)
    policy = TimingPolicy(warmup_rounds=1, min_rounds=rounds, min_time=0, max_time=60)
    calls = {name: r.prepare(inputs) for name, r in runners.items()}
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(blocks):
        for name, runner in runners.items():
            samples[name] += time_calls(calls[name], runner.synchronize, policy)
    p50 = {k: summarize(v, 1).p50_ms for k, v in samples.items()}
    torch_p50 = p50["torch-cpu/fp32"]

    minilm = BUILTIN["minilm-l6"](0)
    minilm_model = minilm.build()
    ref_emb = corpus_embeddings(minilm, TorchCpuRunner(minilm_model))
    retrieval = {}
    for precision in INT8:
        artifact = pipeline.build(minilm, precision, lambda: minilm_model, SHAPE)
        retrieval[precision] = round(retrieval_agreement(
            corpus_embeddings(minilm, OrtCpuRunner(artifact.path)), ref_emb), 4)
    return {
        "machine": machine_key(), "model": "bert-base b1s128",
        "p50_ms": {k: round(v, 2) for k, v in p50.items()},
        "speedup_vs_torch_fp32": {k: round(torch_p50 / v, 2) for k, v in p50.items()},
        "cv": {k: round(statistics.stdev(v) / statistics.fmean(v), 3)
               for k, v in samples.items()},
        "cosine_vs_fp32": cosine, "minilm_retrieval_agreement": retrieval,
        "graphs": graphs, "versions": library_versions(),
    }


def fusions(pipeline: ArtifactPipeline) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine_key(), "versions": library_versions(),
                           "models": {}}
    for name in ("bert-base", "bert-large", "roberta-base", "distilbert-base", "minilm-l6"):
        spec = BUILTIN[name](0)
        loaded: list[Any] = []

        def load(spec: Any = spec, loaded: list[Any] = loaded) -> Any:
            if not loaded:
                loaded.append(spec.build())
            return loaded[0]

        row: dict[str, Any] = {"family": spec.family, "layers": spec.num_layers,
                               "expected": expected_fusions(spec.family, spec.num_layers)}
        for precision in ("fp32", *INT8):
            artifact = pipeline.build(spec, precision, load, SHAPE)
            row[precision] = {"fused": artifact.graph["fused"],
                              "quantization": artifact.graph.get("quantization"),
                              "build_seconds": artifact.build_seconds}
        row["full_fusion"] = row["fp32"]["fused"] == row["expected"]
        out["models"][name] = row
        print(json.dumps({name: row}), flush=True)
        loaded.clear()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("speed", "fusions"))
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--cache-dir", type=Path, default=Path(".xfperf-cache"))
    args = parser.parse_args()
    pipeline = ArtifactPipeline(ArtifactCache(args.cache_dir), seed=0, options=BuildOptions())
    result = (speed(pipeline, args.blocks, args.rounds) if args.what == "speed"
              else fusions(pipeline))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
