"""A content-addressed artifact cache: one directory per key, published by an atomic rename.

An entry is ``<root>/<key[:2]>/<key>/`` holding the artifact files and ``meta.json`` with each
file's sha256 and size. Entries are built in a private temporary directory and renamed into
place, so a killed build leaves no half entry under the key; an entry whose files no longer
match their recorded digests (truncated, bit-flipped) is moved aside and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_xfperf.fileio import fsync_dir, locked, sha256_file

META = "meta.json"


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path  # the entry's directory
    info: dict[str, Any]  # what the builder returned (fused counts, ...)
    build_seconds: float
    built_now: bool

    def file(self, name: str) -> Path:
        return self.path / name


def cache_key(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# Damaged entries moved aside are kept for a look, the newest few only: each can be a
# model-sized ONNX file.
KEEP_CORRUPT = 3


def sweep(graveyard: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest entries moved aside (named ``<key>-<ns>``)."""
    entries = sorted(graveyard.iterdir(), key=lambda p: int(p.name.rsplit("-", 1)[-1])
                     if p.name.rsplit("-", 1)[-1].isdigit() else 0)
    for old in entries[:-keep] if keep else entries:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


class ArtifactCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._verified: dict[str, Entry] = {}
        self.rebuilt_corrupt: list[str] = []

    def clear(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        self._verified.clear()

    def _dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def _load(self, key: str) -> Entry | None:
        """The entry if present and intact; a damaged one is moved aside and reported."""
        directory = self._dir(key)
        if not directory.exists():
            return None
        problem = None
        try:
            meta = json.loads((directory / META).read_text(encoding="utf-8"))
            for name, record in meta["files"].items():
                file = directory / name
                if file.stat().st_size != record["size"]:
                    problem = f"{name} is {file.stat().st_size} bytes, expected {record['size']}"
                elif sha256_file(file) != record["sha256"]:
                    problem = f"{name} does not match its recorded sha256"
                if problem:
                    break
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"unreadable metadata ({exc})"
        if problem:
            self.rebuilt_corrupt.append(f"{key[:12]}: {problem}")
            graveyard = self.root / "corrupt"
            graveyard.mkdir(parents=True, exist_ok=True)
            os.replace(directory, graveyard / f"{key}-{time.time_ns()}")
            sweep(graveyard, KEEP_CORRUPT)
            return None
        return Entry(key, directory, meta["info"], meta["build_seconds"], built_now=False)

    def get_or_build(
        self, parts: Mapping[str, Any], build: Callable[[Path], dict[str, Any]]
    ) -> Entry:
        """Return the intact entry for ``parts``, building it with ``build(dir)`` if needed.

        ``build`` writes its files into the directory it is given and returns JSON-able info.
        A per-key lock makes concurrent processes build once and share the result.
        """
        key = cache_key(parts)
        if key in self._verified:
            return self._verified[key]
        with locked(self.root / "locks" / f"{key}.lock"):
            entry = self._load(key)
            if entry is None:
                entry = self._build(key, parts, build)
        self._verified[key] = entry
        return entry

    def _build(
        self, key: str, parts: Mapping[str, Any], build: Callable[[Path], dict[str, Any]]
    ) -> Entry:
        staging_root = self.root / "tmp"
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=key[:12] + "-", dir=staging_root))
        try:
            started = time.perf_counter()
            info = build(staging)
            seconds = time.perf_counter() - started
            files = {
                p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
                for p in sorted(staging.iterdir())
                if p.is_file()
            }
            meta = {"key": key, "parts": parts, "files": files, "info": info,
                    "build_seconds": seconds, "created": time.time()}
            with open(staging / META, "w", encoding="utf-8") as handle:
                json.dump(meta, handle, indent=1, sort_keys=True, default=str)
                handle.flush()
                os.fsync(handle.fileno())
            for name in files:
                with open(staging / name, "rb") as handle:
                    os.fsync(handle.fileno())
            final = self._dir(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, final)
            fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Entry(key, final, info, seconds, built_now=True)
