"""The Runner contract every backend implements.

A runner owns a loaded model on its device and returns outputs; it never times anything
(measure/ does, so that every backend is timed by the same code). ``prepare`` does all
per-input work (host-to-device copies, IO binding) once, outside the timed region.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np


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
