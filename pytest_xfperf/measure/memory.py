"""Host memory of a case: how much the process's resident set grew while it ran.

On Linux the peak resident set (VmHWM) can be reset by writing "5" to /proc/self/clear_refs,
which makes a per-case peak measurable; elsewhere the lifetime peak is all there is, and the
figure says so in its mode. With glibc the heap is trimmed (``malloc_trim``) as the window
opens: memory that earlier cases freed goes back to the system instead of being reused
unseen, so a case's growth does not depend on which cases ran before it in the process (a
shard runs other neighbours than the unsharded run its baseline came from).
"""

from __future__ import annotations

import functools
import resource
import sys
from collections.abc import Callable
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once (find_library may run ldconfig); None elsewhere."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def _trim_heap() -> bool:
    """Return the heap's free pages to the system (glibc); False where there is no such
    call."""
    trim = _malloc_trim()
    return trim is not None and trim(0) >= 0


def _reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """``peak_delta_mb``: the peak RSS reached between start() and stop() minus RSS at start.

    Also a context manager, for a window that fits one block.
    """

    def __init__(self) -> None:
        self.start_kb = 0
        self.peak_kb = 0
        self._held_kb = 0  # the peak before the last pause()
        self.mode = "unavailable"

    def start(self) -> None:
        trimmed = _trim_heap()
        per_case = _reset_peak()
        self.mode = ("per-case peak RSS" if per_case else "process lifetime peak RSS") + (
            ", heap trimmed at start" if trimmed else "")
        self.start_kb = _status_kb("VmRSS") or 0

    def pause(self) -> None:
        """Keep the peak so far; what runs until resume() is left out (where the peak can be
        reset per case: elsewhere the lifetime peak includes it)."""
        self._held_kb = max(self._held_kb, self._peak())

    def resume(self) -> None:
        _reset_peak()

    def stop(self) -> None:
        self.peak_kb = max(self._held_kb, self._peak())

    @staticmethod
    def _peak() -> int:
        peak = _status_kb("VmHWM")
        if peak is None:
            scale = 1 if sys.platform != "darwin" else 1 / 1024  # macOS reports bytes
            peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)
        return peak

    def __enter__(self) -> PeakMemory:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def peak_delta_mb(self) -> float:
        return max(0, self.peak_kb - self.start_kb) / 1024.0
