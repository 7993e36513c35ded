"""The dynamic batcher: requests queue up, and a batch leaves when it is full or its oldest
request has waited the maximum queue delay (or no more requests will come).

Padding policies:
- ``longest``: a batch is padded to its longest request (FIFO order);
- ``buckets``: requests queue per length bucket, a batch takes one bucket and is padded to the
  bucket's upper edge (few distinct shapes, which engines with fixed profiles like, and less
  padding than one length for all);
- ``fixed``: every batch is padded to the case's sequence length (what a fixed-tensor loop does).

Pure logic on timestamps passed in: no clock, no model, no numpy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

PADDINGS = ("longest", "buckets", "fixed")


@dataclass(frozen=True)
class Request:
    id: int
    length: int  # tokens
    arrival: float  # seconds since the scenario started


@dataclass(frozen=True)
class Batch:
    requests: tuple[Request, ...]
    padded_length: int

    @property
    def size(self) -> int:
        return len(self.requests)

    @property
    def real_tokens(self) -> int:
        return sum(r.length for r in self.requests)

    @property
    def padded_tokens(self) -> int:
        return self.size * self.padded_length


def default_buckets(max_length: int) -> tuple[int, ...]:
    """Powers of two from 16 up to the case's sequence length (which is always the last)."""
    edges, edge = [], 16
    while edge < max_length:
        edges.append(edge)
        edge *= 2
    return (*edges, max_length)


def parse_buckets(value: str | Sequence[int | str]) -> tuple[int, ...]:
    """``"auto"`` (empty tuple: see default_buckets) or increasing lengths like 32,64,128."""
    if isinstance(value, str):
        if value.strip().lower() in ("", "auto"):
            return ()
        parts: Sequence[int | str] = [p for p in value.replace(" ", ",").split(",") if p]
    else:
        parts = value
    try:
        edges = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"buckets: write increasing sequence lengths like 32,64,128 or "
                         f"'auto', got {value!r}") from None
    if not edges or any(e < 1 for e in edges) or list(edges) != sorted(set(edges)):
        raise ValueError(f"buckets: lengths must be positive and strictly increasing, "
                         f"got {value!r}")
    return edges


class DynamicBatcher:
    def __init__(self, max_batch: int, max_delay: float, padding: str, max_length: int,
                 buckets: Sequence[int] = ()) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_delay < 0:
            raise ValueError("max_delay must not be negative")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.max_batch, self.max_delay, self.padding = max_batch, max_delay, padding
        self.max_length = max_length
        if padding == "buckets":
            edges = [e for e in (buckets or default_buckets(max_length)) if e < max_length]
            self.edges: tuple[int, ...] = (*edges, max_length)
        else:
            self.edges = (max_length,)
        self._queues: list[deque[Request]] = [deque() for _ in self.edges]
        self.pending = 0

    def _bucket(self, length: int) -> int:
        if length > self.max_length:
            raise ValueError(f"request of {length} tokens is longer than the batcher's "
                             f"maximum {self.max_length}")
        for index, edge in enumerate(self.edges):
            if length <= edge:
                return index
        raise AssertionError("unreachable: the last edge is max_length")

    @property
    def queues(self) -> tuple[deque[Request], ...]:
        """The queues, one per bucket, each in arrival order (read-only use)."""
        return tuple(self._queues)

    def add(self, request: Request) -> None:
        self._queues[self._bucket(request.length)].append(request)
        self.pending += 1

    def deadline(self) -> float | None:
        """When the oldest queued request reaches its maximum delay (None: queue empty)."""
        oldest = [q[0].arrival for q in self._queues if q]
        return min(oldest) + self.max_delay if oldest else None

    def pop(self, now: float, more_coming: bool = True) -> Batch | None:
        """The batch to run now, or None to keep waiting.

        A queue goes when it holds a full batch, when its oldest request's delay is up, or,
        with no more requests coming, at once. Among ready queues the one whose oldest request
        arrived first goes (no bucket starves).
        """
        ready = [(q[0].arrival, index) for index, q in enumerate(self._queues)
                 if q and (len(q) >= self.max_batch or not more_coming
                           or now >= q[0].arrival + self.max_delay)]
        if not ready:
            return None
        index = min(ready)[1]
        queue = self._queues[index]
        taken = tuple(queue.popleft() for _ in range(min(self.max_batch, len(queue))))
        self.pending -= len(taken)
        if self.padding == "longest":
            padded = max(r.length for r in taken)
        else:  # buckets: the bucket's edge; fixed: the one edge, max_length
            padded = self.edges[index]
        return Batch(taken, padded)


def unbatch(batch: Batch, outputs: object) -> list[tuple[int, object]]:
    """Each request's own rows of a batch output, in batch order: ``outputs[i, :length]`` for
    (batch, seq, ...) outputs, ``outputs[i]`` for pooled (batch, hidden) ones."""
    shape = getattr(outputs, "shape", None)
    if shape is None or len(shape) < 1 or shape[0] != batch.size:
        raise ValueError(f"batch of {batch.size} requests returned an output of shape {shape}")
    per_token = len(shape) >= 3 and shape[1] == batch.padded_length
    out = []
    for row, request in enumerate(batch.requests):
        item = outputs[row, : request.length] if per_token else outputs[row]  # type: ignore[index]
        out.append((request.id, item))
    return out
