"""Cases: the model x backend x precision x shape matrix, and their test ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_xfperf.backends.catalog import BACKENDS, PRECISIONS, speedup_reference
from pytest_xfperf.settings import Tolerances
from pytest_xfperf.values import Shape, check_known, parse_shapes, parse_tolerance, split_list

MARKER_KEYS = ("models", "backends", "precisions", "shapes", "scenarios", "tolerance",
               "tolerances")
SINGLE_STREAM = "single-stream"


@dataclass(frozen=True)
class Case:
    """One perf test: a model on a backend at a precision and an input shape."""

    model: str  # the model's name in ids and baselines
    backend: str
    precision: str
    shape: Shape
    model_ref: str = ""  # what the user wrote (a name or a directory); defaults to model
    skip_reason: str | None = None
    # single-stream: one request at a time (shape = the batch of each call); offline/server:
    # serving scenarios (shape = the batcher's maximum batch and sequence length).
    scenario: str = SINGLE_STREAM
    # The run's tolerances with the test's marker applied (marker > run), parsed once at
    # collection; None: the run's own.
    tolerances: Tolerances | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        # Single-stream ids carry no suffix: baselines recorded before scenarios existed
        # keep matching.
        suffix = "" if self.scenario == SINGLE_STREAM else f"/{self.scenario}"
        return f"{self.model}/{self.backend}/{self.precision}/{self.shape.label}{suffix}"

    @property
    def serving(self) -> bool:
        return self.scenario != SINGLE_STREAM

    @property
    def ref(self) -> str:
        return self.model_ref or self.model

    @property
    def is_fp32_reference(self) -> bool:
        """PyTorch FP32 eager on the CPU: what every case's accuracy is measured against."""
        return self.backend == "torch-cpu" and self.precision == "fp32"

    @property
    def is_speedup_reference(self) -> bool:
        """PyTorch on its device, the other side of that device's speed-ups (eager on the
        CPU, CUDA-graph replay on a GPU: backends/catalog.py says why)."""
        return (self.backend, self.precision) == speedup_reference(self.backend, self.precision)


def expand(
    models: Sequence[tuple[str, str]],
    backends: Sequence[str],
    precisions: Sequence[str],
    shapes: Sequence[Shape],
    scenarios: Sequence[str] = (SINGLE_STREAM,),
) -> list[Case]:
    """All combinations; those a backend cannot run carry a skip reason instead of vanishing."""
    check_known("backend", backends, BACKENDS)
    check_known("precision", precisions, PRECISIONS)
    cases = []
    for model_ref, model_name in models:
        for scenario in scenarios:
            for shape in shapes:
                for backend in backends:
                    for precision in precisions:
                        info = BACKENDS[backend]
                        reason = info.unsupported_reason(precision)
                        if reason is None and scenario != SINGLE_STREAM:
                            reason = info.serving_unsupported_reason()
                        cases.append(Case(model_name, backend, precision, shape, model_ref,
                                          reason, scenario))
    return cases


def parse_marker(kwargs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate ``@pytest.mark.xfperf(...)`` arguments; raise ValueError naming the test."""
    unknown = sorted(set(kwargs) - set(MARKER_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: unknown xfperf marker argument(s) {', '.join(unknown)}; "
            f"valid: {', '.join(MARKER_KEYS)}"
        )
    parsed: dict[str, Any] = {}
    try:
        for key in ("models", "backends", "precisions", "scenarios"):
            if key in kwargs:
                parsed[key] = tuple(split_list(kwargs[key]))
                if not parsed[key]:
                    raise ValueError(f"{key}=[] is empty: give at least one name, or drop "
                                     "the argument to use the run's matrix")
        if "scenarios" in kwargs:
            from pytest_xfperf.settings import OPTIONS_BY_KEY

            parsed["scenarios"] = OPTIONS_BY_KEY["scenarios"].parse(kwargs["scenarios"])
        if "shapes" in kwargs:
            parsed["shapes"] = parse_shapes(kwargs["shapes"])
        if "tolerance" in kwargs:
            parsed["tolerance"] = parse_tolerance(kwargs["tolerance"])
        if "tolerances" in kwargs:
            from pytest_xfperf.settings import parse_tolerance_table

            parsed["tolerances"] = parse_tolerance_table(kwargs["tolerances"])
    except ValueError as exc:
        raise ValueError(f"{where}: xfperf marker: {exc}") from None
    return parsed


def with_marker_tolerances(cases: Sequence[Case], run: Tolerances,
                           overrides: Mapping[str, Any]) -> list[Case]:
    """The cases carrying the tolerances they are judged with: the marker's table taken over
    the run's, then its one-number ``tolerance`` on top (as on the command line)."""
    tolerances = run
    if "tolerances" in overrides:
        tolerances = replace(tolerances, **overrides["tolerances"])
    if "tolerance" in overrides:
        tolerances = tolerances.with_timing(overrides["tolerance"])
    return [replace(case, tolerances=tolerances) for case in cases]
