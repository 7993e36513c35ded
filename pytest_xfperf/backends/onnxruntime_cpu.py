"""ONNX Runtime with the CPU execution provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


class OrtCpuRunner:
    name = "ort-cpu"

    def __init__(self, model_path: Path, intra_op_threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        self._session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name
        self._settings = {
            "provider": "CPUExecutionProvider",
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "intra_op_threads": intra_op_threads or "default",
            "onnxruntime": ort.__version__,
        }

    def _feeds(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # An exported graph may have pruned an input it never reads (token_type_ids of a
        # model with one type): feed only what the session declares.
        return {k: v for k, v in inputs.items() if k in self._input_names}

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        feeds = self._feeds(inputs)
        session, outputs = self._session, [self._output]
        return lambda: session.run(outputs, feeds)

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        result: np.ndarray = self._session.run([self._output], self._feeds(inputs))[0]
        return result

    def synchronize(self) -> None:
        pass

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def close(self) -> None:
        del self._session
