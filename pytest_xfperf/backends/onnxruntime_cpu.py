"""ONNX Runtime with the CPU execution provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from pytest_xfperf.backends.base import RunnerContext


def create(context: RunnerContext) -> OrtCpuRunner:
    assert context.artifact_path is not None
    return OrtCpuRunner(context.artifact_path, context.options)


DEFAULTS: dict[str, Any] = {"graph_optimization_level": "all", "intra_op_threads": 0,
                            "inter_op_threads": 0, "execution_mode": "sequential",
                            "spin_between_calls": False}


def session_options(options: Mapping[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """ONNX Runtime session options from the [tool.xfperf.ort-cpu] settings (see
    catalog.ORT_CPU_OPTIONS), and the settings in full with their defaults (what a result
    records; 0 threads means ORT's default, one per physical core)."""
    import onnxruntime as ort

    chosen = {**DEFAULTS, **(options or {})}
    out = ort.SessionOptions()
    out.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[chosen["graph_optimization_level"]]
    out.intra_op_num_threads = chosen["intra_op_threads"]
    out.inter_op_num_threads = chosen["inter_op_threads"]
    out.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if chosen["execution_mode"] == "parallel"
                          else ort.ExecutionMode.ORT_SEQUENTIAL)
    if not chosen["spin_between_calls"]:
        # The workers spin within a call and stop when it returns. Left spinning (ONNX
        # Runtime's default), they held one of a 2-core host's cores for tens of milliseconds
        # after the case's block, through the yardstick's block that follows it, and made
        # the yardstick's blocks up to 1.8x slower at random (docs/measurements.md, "The case's
        # threads and the yardstick").
        out.add_session_config_entry("session.force_spinning_stop", "1")
    return out, chosen


class OrtCpuRunner:
    name = "ort-cpu"

    def __init__(self, model_path: Path, options: Mapping[str, Any] | None = None) -> None:
        """``options``: the [tool.xfperf.ort-cpu] settings (see catalog.ORT_CPU_OPTIONS)."""
        import onnxruntime as ort

        chosen_options, chosen = session_options(options)
        self._session = ort.InferenceSession(
            str(model_path), chosen_options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name
        self._settings = {"provider": "CPUExecutionProvider", **chosen,
                          "onnxruntime": ort.__version__}

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
