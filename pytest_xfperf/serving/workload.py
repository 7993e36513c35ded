"""Seeded request workloads: sequence lengths from a configurable distribution, Poisson
arrival times, and the token rows the requests carry."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_DISTRIBUTION = re.compile(r"^(lognormal|uniform|fixed):([0-9.]+)(?::([0-9.]+))?$")


@dataclass(frozen=True)
class LengthDistribution:
    """Request lengths in tokens, clipped to [``MIN_LENGTH``, the case's sequence length].

    ``lognormal:MEDIAN:SIGMA`` (text lengths are roughly log-normal), ``uniform:LOW:HIGH``,
    ``fixed:N``.
    """

    kind: str
    a: float
    b: float = 0.0

    MIN_LENGTH = 2  # [CLS] and [SEP]

    @classmethod
    def parse(cls, text: str) -> LengthDistribution:
        match = _DISTRIBUTION.match(str(text).strip())
        if match is None:
            raise ValueError(
                f"malformed length distribution {text!r}: write lognormal:MEDIAN:SIGMA "
                "(e.g. lognormal:48:0.6), uniform:LOW:HIGH (e.g. uniform:16:128) or fixed:N")
        kind, a, b = match.group(1), float(match.group(2)), match.group(3)
        if kind == "fixed":
            if b is not None or a < 1 or a != int(a):
                raise ValueError(f"{text!r}: fixed:N takes one whole number of tokens >= 1")
            return cls(kind, a)
        if b is None:
            raise ValueError(f"{text!r}: {kind} takes two numbers, e.g. "
                             f"{'lognormal:48:0.6' if kind == 'lognormal' else 'uniform:16:128'}")
        second = float(b)
        if kind == "lognormal" and (a < 1 or not 0 < second <= 3):
            raise ValueError(f"{text!r}: lognormal needs a median >= 1 token and 0 < sigma <= 3")
        if kind == "uniform" and not 1 <= a <= second:
            raise ValueError(f"{text!r}: uniform needs 1 <= LOW <= HIGH")
        return cls(kind, a, second)

    def sample(self, count: int, max_length: int, seed: int) -> list[int]:
        rng = random.Random(f"lengths-{seed}-{self}")
        low = min(self.MIN_LENGTH, max_length)
        out = []
        for _ in range(count):
            if self.kind == "fixed":
                value = self.a
            elif self.kind == "uniform":
                value = rng.uniform(self.a, self.b + 1)
            else:
                value = self.a * math.exp(rng.gauss(0.0, self.b))
            out.append(max(low, min(max_length, int(value))))
        return out

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{int(self.a)}"
        return f"{self.kind}:{self.a:g}:{self.b:g}"


def poisson_arrivals(count: int, rate: float, seed: int) -> list[float]:
    """Arrival times in seconds from 0: exponential gaps of mean 1/rate (a Poisson process)."""
    if rate <= 0:
        raise ValueError("the arrival rate must be positive")
    rng = random.Random(f"arrivals-{seed}-{count}-{rate!r}")
    times, now = [], 0.0
    for _ in range(count):
        now += rng.expovariate(rate)
        times.append(now)
    return times


class TokenPool:
    """The token rows requests draw from: request ``i`` of length L carries row ``i mod rows``
    cut to L, so a workload of thousands of requests needs one small seeded matrix."""

    def __init__(self, inputs: Mapping[str, np.ndarray]) -> None:
        self.inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
        first = next(iter(self.inputs.values()))
        self.rows, self.max_length = int(first.shape[0]), int(first.shape[1])

    def pad(self, request_ids: Sequence[int], lengths: Sequence[int],
            padded_length: int) -> dict[str, np.ndarray]:
        """The batch tensors: each request's tokens, zeros after them, and the mask."""
        import numpy as np

        batch = len(request_ids)
        out = {name: np.zeros((batch, padded_length), dtype=values.dtype)
               for name, values in self.inputs.items()}
        mask = np.zeros((batch, padded_length), dtype=np.int64)
        for row, (rid, length) in enumerate(zip(request_ids, lengths, strict=True)):
            source = rid % self.rows
            for name, values in self.inputs.items():
                out[name][row, :length] = values[source, :length]
            mask[row, :length] = 1
        out["attention_mask"] = mask
        return out
