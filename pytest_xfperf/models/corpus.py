"""The bundled sentence corpus used for task-level (retrieval) accuracy."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def sentences() -> tuple[str, ...]:
    text = resources.files("pytest_xfperf").joinpath("data/sentences.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())
