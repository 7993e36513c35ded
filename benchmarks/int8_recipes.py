"""MiniLM's dynamic INT8 recipes on this CPU: accuracy as the plugin measures it, and p50.

    python benchmarks/int8_recipes.py OPTIMIZED.onnx

OPTIMIZED.onnx is MiniLM's fused FP32 graph (the `optimize` stage in the artifact cache; its
meta.json says so). Each recipe is `quantize_dynamic` of it with per-channel weights; the
accuracy is the plugin's: token cosine and relative L2 error against FP32 PyTorch on the
1x128 input of seed 0, and retrieval agreement over the bundled corpus. The p50 is of 60
calls on 2 threads after 5 warm-up calls, one recipe after another (not interleaved: a
rough figure; the plugin's own timing is the one to compare).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from pytest_xfperf.accuracy import compare, mean_pooled, retrieval_agreement, token_mask
from pytest_xfperf.models.builtin import BUILTIN
from pytest_xfperf.models.corpus import sentences
from pytest_xfperf.models.module import primary_output


def matmuls(model: Any, role: str) -> list[str]:
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and role in n.name and "attention/output" not in n.name]


def main(optimized: Path, workdir: Path) -> None:
    spec = BUILTIN["minilm-l6"](0)
    model = spec.build()
    graph = onnx.load(str(optimized), load_external_data=False)
    ffn_out = matmuls(graph, "/output/dense/MatMul")
    ffn_in = matmuls(graph, "/intermediate/dense/MatMul")
    attention_out = [n.name for n in graph.graph.node if "attention/output/dense/MatMul" in n.name]
    s8, u8 = QuantType.QInt8, QuantType.QUInt8
    recipes: dict[str, dict[str, Any]] = {
        "S8 weights": dict(weight_type=s8),
        "S8, reduce_range": dict(weight_type=s8, reduce_range=True),
        "U8 weights (U8U8 kernels)": dict(weight_type=u8),
        "S8, Attention left FP32": dict(weight_type=s8, op_types_to_quantize=["MatMul"]),
        "S8, reduce_range, Attention FP32": dict(weight_type=s8, reduce_range=True,
                                                 op_types_to_quantize=["MatMul"]),
        "S8, attention output FP32": dict(weight_type=s8, nodes_to_exclude=attention_out),
        "S8, FFN input FP32": dict(weight_type=s8, nodes_to_exclude=ffn_in),
        "S8, FFN output FP32": dict(weight_type=s8, nodes_to_exclude=ffn_out),
        "S8, reduce_range, FFN output FP32": dict(weight_type=s8, reduce_range=True,
                                                  nodes_to_exclude=ffn_out),
        "U8, FFN output FP32": dict(weight_type=u8, nodes_to_exclude=ffn_out),
    }

    def reference(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
            return primary_output(model(**tensors)).float().numpy()

    texts = sentences()
    batches = [spec.tokenize(texts[i:i + 32], 128) for i in range(0, len(texts), 32)]
    corpus_reference = np.concatenate([mean_pooled(reference(b), b["attention_mask"])
                                       for b in batches])
    inputs = spec.make_inputs(1, 128, 0)
    expected = reference(inputs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    print(f"{'recipe':36s} cosine   rel L2  retrieval  p50 ms")
    for name, settings in recipes.items():
        target = workdir / "recipe.onnx"
        quantize_dynamic(str(optimized), str(target), per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                         **settings)
        session = ort.InferenceSession(str(target), options,
                                       providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}

        def run(feeds: dict[str, np.ndarray], session: Any = session,
                names: set[str] = names) -> np.ndarray:
            return np.asarray(session.run(None, {k: v for k, v in feeds.items()
                                                 if k in names})[0])

        output = run(inputs)
        accuracy = compare(output, expected, token_mask(inputs.get("attention_mask"), output))
        corpus = np.concatenate([mean_pooled(run(b), b["attention_mask"]) for b in batches])
        retrieval = retrieval_agreement(corpus, corpus_reference)
        for _ in range(5):
            run(inputs)
        times = []
        for _ in range(60):
            started = time.perf_counter()
            run(inputs)
            times.append(time.perf_counter() - started)
        print(f"{name:36s} {accuracy['cosine']:.5f}  {accuracy['rel_l2']:.4f}  "
              f"{retrieval:.3f}      {np.median(times) * 1e3:.2f}", flush=True)
    (workdir / "recipe.onnx").unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        main(Path(sys.argv[1]), Path(tmp))
