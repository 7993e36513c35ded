"""Value objects parsed from user strings (CLI, ini, env, markers).

Parsing happens at the boundary so that everything past it holds typed, validated values.
Every parser raises ``ValueError`` with a message that names the problem and the fix; the
plugin turns that into a pytest usage error (exit code 4).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_SHAPE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
_GENERATION_SHAPE = re.compile(r"^\s*b(\d+)p(\d+)n(\d+)\s*$", re.IGNORECASE)
MAX_BATCH = 4096
MAX_SEQ = 8192
MAX_NEW_TOKENS = 4096
GENERATION_FORM = "bBATCHpPROMPTnNEW, for example b1p128n32"


@dataclass(frozen=True, order=True)
class Shape:
    """One input geometry: batch size and sequence length; for a generative model also the
    number of new tokens (``seq`` is then the prompt's length)."""

    batch: int
    seq: int
    new_tokens: int = 0  # 0: an encoder shape (BATCHxSEQ)

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= MAX_BATCH:
            raise ValueError(f"batch size {self.batch} is outside 1..{MAX_BATCH}")
        if not 1 <= self.seq <= MAX_SEQ:
            raise ValueError(f"sequence length {self.seq} is outside 1..{MAX_SEQ}")
        if not 0 <= self.new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"new tokens {self.new_tokens} is outside 1..{MAX_NEW_TOKENS}")

    @classmethod
    def parse(cls, text: str) -> Shape:
        match = _SHAPE.match(text)
        if match is not None:
            return cls(int(match.group(1)), int(match.group(2)))
        match = _GENERATION_SHAPE.match(text)
        if match is not None:
            if int(match.group(3)) == 0:
                raise ValueError(f"shape {text!r} generates no token: n must be at least 1")
            return cls(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        raise ValueError(
            f"malformed shape {text!r}: write BATCHxSEQ for an encoder (for example 1x128 or "
            f"8x256) or {GENERATION_FORM} for a generative model"
        )

    @property
    def generative(self) -> bool:
        return self.new_tokens > 0

    @property
    def label(self) -> str:
        if self.generative:
            return f"b{self.batch}p{self.seq}n{self.new_tokens}"
        return f"b{self.batch}s{self.seq}"

    def __str__(self) -> str:
        return self.label if self.generative else f"{self.batch}x{self.seq}"


def split_list(value: str | Sequence[str]) -> list[str]:
    """Accept "a,b c" from a flag or env var, or a list from TOML/markers."""
    items: Iterable[str]
    if isinstance(value, str):
        items = re.split(r"[,\s]+", value)
    else:
        items = value
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected a string, got {item!r}")
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


def parse_shapes(value: str | Sequence[str]) -> tuple[Shape, ...]:
    shapes = tuple(Shape.parse(s) for s in split_list(value))
    if not shapes:
        raise ValueError("no shape given: write at least one, for example 1x128")
    return shapes


def parse_tolerance(value: str | float) -> float:
    """A relative tolerance such as 0.10 (10 %); "10%" is accepted too."""
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(
            f"malformed tolerance {value!r}: write a fraction like 0.1 or 10%"
        ) from None
    if not math.isfinite(number) or not 0 < number < 10:
        raise ValueError(f"tolerance {value!r} is outside (0, 10): write e.g. 0.1 for 10 %")
    return number


def parse_positive_float(value: str | float, what: str, strict: bool = False) -> float:
    """A finite number >= 0 (``strict``: > 0)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or strict and number == 0:
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{what} must be a finite number {bound}, got {value!r}")
    return number


def parse_count(value: str | int, what: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise ValueError(f"{what} must be a whole number, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value!r}")
    return number


def check_known(kind: str, names: Sequence[str], known: Iterable[str]) -> None:
    """Fail with the list of valid names, which is what a user needs to fix a typo."""
    valid = sorted(known)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(
            f"unknown {kind} {', '.join(repr(u) for u in unknown)}; "
            f"valid {kind}s: {', '.join(valid)}"
        )


def parse_choice(value: str, what: str, choices: Sequence[str]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return text



def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")
