"""Cases: the model x backend x precision x shape matrix, and their test ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_xfperf.backends.catalog import (
    BACKENDS,
    PRECISIONS,
    generation_unsupported_reason,
    speedup_reference,
)
from pytest_xfperf.settings import Tolerances
from pytest_xfperf.values import (
    GENERATION_FORM,
    Shape,
    check_known,
    parse_shapes,
    parse_tolerance,
    split_list,
)

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
    def generative(self) -> bool:
        """Prefill and greedy decode of a causal LM (its shape says how many new tokens)."""
        return self.shape.generative

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


def model_shapes(name: str, shapes: Sequence[Shape], positions: int | None) -> list[Shape]:
    """The shapes of ``shapes`` that fit the model: generative ones (bBpPnN) for a generative
    model, whose ``positions`` (0: unknown) bound prompt plus new tokens; BATCHxSEQ for an
    encoder (``positions`` None). A model left with none is a usage error naming the form."""
    if positions is None:
        fitting = [s for s in shapes if not s.generative]
        if not fitting:
            raise ValueError(f"model {name!r} is an encoder: give it a shape BATCHxSEQ, for "
                             f"example 1x128 (got {', '.join(map(str, shapes))})")
        return fitting
    fitting = [s for s in shapes if s.generative]
    if not fitting:
        raise ValueError(f"model {name!r} is generative: its shapes say the batch, the prompt "
                         f"and the new tokens as {GENERATION_FORM} (got "
                         f"{', '.join(map(str, shapes))})")
    for shape in fitting:
        if positions and shape.seq + shape.new_tokens > positions:
            raise ValueError(f"shape {shape} needs {shape.seq + shape.new_tokens} positions; "
                             f"model {name!r} has {positions}: shorten the prompt or the new "
                             "tokens")
    return fitting


def expand(
    models: Sequence[tuple[str, str]],
    backends: Sequence[str],
    precisions: Sequence[str],
    shapes: Sequence[Shape],
    scenarios: Sequence[str] = (SINGLE_STREAM,),
    generative: Mapping[str, int] | None = None,
) -> list[Case]:
    """All combinations; those a backend cannot run carry a skip reason instead of vanishing.

    ``generative`` maps the names of generative models to their position limit (0: unknown);
    every other model is an encoder. A mixed matrix pairs each model with its kind of shape.
    """
    check_known("backend", backends, BACKENDS)
    check_known("precision", precisions, PRECISIONS)
    generative = generative or {}
    cases = []
    for model_ref, model_name in models:
        fitting = model_shapes(model_name, shapes, generative.get(model_name))
        for scenario in scenarios:
            for shape in fitting:
                for backend in backends:
                    for precision in precisions:
                        info = BACKENDS[backend]
                        reason = info.unsupported_reason(precision)
                        if reason is None and shape.generative:
                            reason = generation_unsupported_reason(backend, precision,
                                                                   scenario)
                        elif reason is None and scenario != SINGLE_STREAM:
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
