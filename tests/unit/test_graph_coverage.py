"""Quantization coverage read off hand-built ONNX graphs of each quantizer's form."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pytest_xfperf.artifacts.graph import quantization_coverage


def _save(tmp_path, nodes, initializers):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializers)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def _weight(name, dtype=np.float32):
    return numpy_helper.from_array(np.ones((4, 4), dtype=dtype), name)


def test_qdq_matmul_is_quantized_and_activation_products_are_left_out(tmp_path):
    scale = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s")
    zero_w = numpy_helper.from_array(np.array(0, dtype=np.int8), "zw")
    zero_a = numpy_helper.from_array(np.array(0, dtype=np.uint8), "za")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "za"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "za"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w1", "s", "zw"], ["w1d"]),
        helper.make_node("MatMul", ["xd", "w1d"], ["h"]),   # quantized weight product
        helper.make_node("MatMul", ["h", "w2"], ["h2"]),    # float weight product
        helper.make_node("MatMul", ["h2", "h2"], ["y"]),    # activation x activation
    ]
    path = _save(tmp_path, nodes, [_weight("w1", np.int8), _weight("w2"), scale, zero_w,
                                   zero_a])
    assert quantization_coverage(path) == {"quantized_matmuls": 1, "float_matmuls": 1,
                                           "quantized_share": 0.5, "qdq_pairs": 1}


def test_integer_ops_count_as_quantized(tmp_path):
    nodes = [helper.make_node("DynamicQuantizeMatMul", ["x", "w1", "s"], ["h"],
                              domain="com.microsoft"),
             helper.make_node("MatMul", ["h", "w2"], ["y"])]
    path = _save(tmp_path, nodes, [_weight("w1", np.int8), _weight("w2"),
                                   numpy_helper.from_array(np.array(0.1, np.float32), "s")])
    coverage = quantization_coverage(path)
    assert coverage["quantized_matmuls"] == 1 and coverage["float_matmuls"] == 1
