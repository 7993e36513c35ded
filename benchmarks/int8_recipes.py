"""MiniLM's dynamic INT8 recipes on this CPU: accuracy as the plugin measures it, and p50.

    python benchmarks/int8_recipes.py OPTIMIZED.onnx [PLUGIN_INT8.onnx]

OPTIMIZED.onnx is MiniLM's fused FP32 graph (the `optimize` stage in the artifact cache; its
meta.json says so). Each recipe is `quantize_dynamic` of it with per-channel weights; the
accuracy is the plugin's: token cosine and relative L2 error against FP32 PyTorch on the
1x128 input of seed 0, and retrieval agreement over the bundled corpus. The p50 is of 60
calls on 2 threads after 5 warm-up calls, one recipe after another (not interleaved: a
rough figure; the plugin's own timing is the one to compare).

Then S8 weights with ONNX Runtime's U8S8 kernels, the same weights with its U8U8 kernels, and
PLUGIN_INT8.onnx (the plugin's `quantize` stage, if given) are timed in interleaved blocks:
30 rounds of one 10-call block each, on 2 threads; the p50 of the block means.
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
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from pytest_xfperf.accuracy import compare, mean_pooled, retrieval_agreement, token_mask
from pytest_xfperf.models.builtin import BUILTIN
from pytest_xfperf.models.corpus import sentences
from pytest_xfperf.models.module import primary_output


def matmuls(model: Any, role: str) -> list[str]:
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and role in n.name and "attention/output" not in n.name]


# Where each integer product takes its weight and the weight's zero point.
WEIGHT_INPUTS = {"MatMulInteger": (1, 3), "QAttention": (1, 7)}


def s8_weights_as_u8(path: Path) -> None:
    """Rewrite a file of S8 weights (zero point 0) as U8 weights with zero point 128, in place.
    (w + 128) - 128 = w, so every product is the same integer as before; but ONNX Runtime now
    runs it with its U8U8 kernels, which do not saturate, where U8S8 on AVX2 sums pairs of
    8-bit products in 16 bits and can (its dynamic quantization documentation says so)."""
    model = onnx.load(str(path))
    initializers = {t.name: t for t in model.graph.initializer}
    done: set[str] = set()
    for node in model.graph.node:
        for index in WEIGHT_INPUTS.get(node.op_type, ()):
            name = node.input[index] if index < len(node.input) else ""
            if name in done:
                continue
            tensor = initializers.get(name)
            # A missing zero point means 0 for the shifted weight: the products would change.
            if tensor is None or tensor.data_type != onnx.TensorProto.INT8:
                raise ValueError(f"{node.name}: input {index} ({name!r}) is not an INT8 "
                                 "initializer: not a file of S8 weights with zero points")
            values = numpy_helper.to_array(tensor).astype(np.int16) + 128
            tensor.CopyFrom(numpy_helper.from_array(values.astype(np.uint8), name))
            done.add(name)
    onnx.save(model, str(path))


# The two S8 files whose kernels are timed against each other after the table.
TIMED = {"S8 weights": "S8 weights, U8S8 kernels",
         "S8 weights run as U8 (+128)": "the same S8 weights, U8U8 kernels"}


def main(optimized: Path, workdir: Path) -> dict[str, Path]:
    """Print the recipes' table; return the files of TIMED, kept in ``workdir``."""
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
        # run_as_u8: quantized with S8 weights, then shifted to U8 (not a quantizer option).
        "S8 weights run as U8 (+128)": dict(weight_type=s8, run_as_u8=True),
        "S8, reduce_range, run as U8 (+128)": dict(weight_type=s8, reduce_range=True,
                                                   run_as_u8=True),
    }
    kept: dict[str, Path] = {}

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
    for name, recipe in recipes.items():
        settings = dict(recipe)
        as_u8 = settings.pop("run_as_u8", False)
        target = workdir / "recipe.onnx"
        quantize_dynamic(str(optimized), str(target), per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                         **settings)
        if as_u8:
            s8_weights_as_u8(target)
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
        if name in TIMED:
            kept[TIMED[name]] = target.rename(workdir / f"timed{len(kept)}.onnx")
    (workdir / "recipe.onnx").unlink(missing_ok=True)
    return kept


def interleaved(files: dict[str, Path], rounds: int = 30, calls: int = 10) -> None:
    """p50 of block means, the files' blocks taking turns so the host's drift hits them alike."""
    inputs = BUILTIN["minilm-l6"](0).make_inputs(1, 128, 0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    runs = {}
    for name, path in files.items():
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {i.name: inputs[i.name] for i in session.get_inputs()}
        for _ in range(10):
            session.run(None, feeds)
        runs[name] = (session, feeds)
    blocks: dict[str, list[float]] = {name: [] for name in files}
    for _ in range(rounds):
        for name, (session, feeds) in runs.items():
            started = time.perf_counter()
            for _ in range(calls):
                session.run(None, feeds)
            blocks[name].append((time.perf_counter() - started) / calls * 1e3)
    print(f"\ninterleaved, {rounds} rounds of {calls}-call blocks: p50 ms (q1, q3)")
    for name, means in blocks.items():
        q1, p50, q3 = np.percentile(means, [25, 50, 75])
        print(f"{name:44s} {p50:.2f} ({q1:.2f}, {q3:.2f})")




if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        timed = main(Path(sys.argv[1]), Path(tmp))
        if len(sys.argv) == 3:
            plugin_file = Path(sys.argv[2])
            timed[f"the plugin's file ({plugin_file.parent.name[:12]})"] = plugin_file
        interleaved(timed)
