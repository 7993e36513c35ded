"""Library versions, read from package metadata so that nothing heavy is imported."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

from pytest_xfperf.backends.catalog import BACKENDS

# Every backend's libraries (its catalog row), and what every run uses.
TRACKED = tuple(dict.fromkeys(
    [lib for info in BACKENDS.values() for lib in info.tracked] + ["numpy", "pytest-xfperf"]))


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def version_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Readable differences, e.g. ["onnxruntime 1.31.1 -> 1.32.0"]."""
    return [f"{k} {old.get(k, '-')} -> {new.get(k, '-')}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
