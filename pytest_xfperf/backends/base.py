"""The Runner contract every backend implements.

A runner owns a loaded model on its device and returns outputs; it never times anything
(measure/ does, so that every backend is timed by the same code). ``prepare`` does all
per-input work (host-to-device copies, IO binding) once, outside the timed region.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import torch

    from pytest_xfperf.matrix import Case


@runtime_checkable
class Runner(Protocol):
    name: str

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        """Bind inputs; return the zero-argument call that measure/ times."""
        ...

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One inference, returning the primary output (batch, seq, hidden) on the host."""
        ...

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on CPU)."""
        ...

    def settings(self) -> dict[str, Any]:
        """What a reader needs to reproduce the number: threads, providers, modes."""
        ...

    def close(self) -> None:
        ...


class BackendUnavailable(Exception):
    """A backend's libraries or device are missing: the case is skipped with this message."""


@dataclass(frozen=True)
class RunnerContext:
    """What a backend's ``create(context)`` factory gets: the case, its model (built on
    first use), its ONNX artifact (backends that run one), its [tool.xfperf.<backend>]
    settings, for backends that build more artifacts (TensorRT engines) the session, and the
    case's seeded calibration batches (made on call), for precisions that calibrate."""

    case: Case
    model: Callable[[], torch.nn.Module]
    artifact_path: Path | None
    options: Mapping[str, Any]
    session: Any = None
    calibration: Callable[[], list[Mapping[str, np.ndarray]]] | None = None
