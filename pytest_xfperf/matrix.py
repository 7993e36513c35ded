"""Cases: the model x backend x precision x shape matrix, and their test ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_xfperf.backends.catalog import BACKENDS, PRECISIONS, REFERENCE_BACKEND
from pytest_xfperf.values import Shape, check_known, parse_shapes, parse_tolerance, split_list

MARKER_KEYS = ("models", "backends", "precisions", "shapes", "tolerance", "tolerances")


@dataclass(frozen=True)
class Case:
    """One perf test: a model on a backend at a precision and an input shape."""

    model: str  # the model's name in ids and baselines
    backend: str
    precision: str
    shape: Shape
    model_ref: str = ""  # what the user wrote (a name or a directory); defaults to model
    skip_reason: str | None = None

    @property
    def id(self) -> str:
        return f"{self.model}/{self.backend}/{self.precision}/{self.shape.label}"

    @property
    def ref(self) -> str:
        return self.model_ref or self.model

    @property
    def is_reference(self) -> bool:
        return self.backend == REFERENCE_BACKEND and self.precision == "fp32"


def expand(
    models: Sequence[tuple[str, str]],
    backends: Sequence[str],
    precisions: Sequence[str],
    shapes: Sequence[Shape],
) -> list[Case]:
    """All combinations; those a backend cannot run carry a skip reason instead of vanishing."""
    check_known("backend", backends, BACKENDS)
    check_known("precision", precisions, PRECISIONS)
    cases = []
    for model_ref, model_name in models:
        for shape in shapes:
            for backend in backends:
                for precision in precisions:
                    reason = BACKENDS[backend].unsupported_reason(precision)
                    cases.append(
                        Case(model_name, backend, precision, shape, model_ref, reason)
                    )
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
        for key in ("models", "backends", "precisions"):
            if key in kwargs:
                parsed[key] = tuple(split_list(kwargs[key]))
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
