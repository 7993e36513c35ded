"""Per-case limits: a timeout and a memory guard that fail one case and let the run go on.

Both work by raising pytest's failure in the main thread from a signal handler (SIGALRM):
the timer fires for the timeout; a watchdog thread that samples the resident set sends the
signal when the case's growth passes the limit. A signal handler runs between Python
bytecodes, so a single long call into C (one ONNX Runtime run, one export) finishes before the
case is stopped; the limit still ends the case at its next step instead of the whole job.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType

import pytest

POLL_SECONDS = 0.05


def resident_mb() -> float:
    """Current resident set of this process (Linux /proc; 0 where unreadable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class CaseLimits:
    def __init__(self, case_id: str, timeout_s: float, max_memory_mb: float) -> None:
        self.case_id = case_id
        self.timeout_s = timeout_s
        self.max_memory_mb = max_memory_mb
        self._reason = ""
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._previous: object = None
        self._active = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        reason = self._reason or (f"exceeded its timeout of {self.timeout_s:g} s "
                                  "(--xfperf-timeout)")
        self._disarm()
        pytest.fail(f"xfperf: {self.case_id} {reason}", pytrace=False)

    def _watch(self, start_mb: float, main_thread: int) -> None:
        while not self._stop.wait(POLL_SECONDS):
            grown = resident_mb() - start_mb
            if grown > self.max_memory_mb:
                self._reason = (f"grew its memory by {grown:.0f} MB, over the limit of "
                                f"{self.max_memory_mb:g} MB (--xfperf-max-memory-mb)")
                signal.pthread_kill(main_thread, signal.SIGALRM)
                return

    def __enter__(self) -> CaseLimits:
        wanted = self.timeout_s > 0 or self.max_memory_mb > 0
        # Signals reach only the main thread; elsewhere (an embedding runner) limits are off.
        if not wanted or threading.current_thread() is not threading.main_thread():
            return self
        self._previous = signal.signal(signal.SIGALRM, self._handler)
        self._active = True
        if self.timeout_s > 0:
            signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        if self.max_memory_mb > 0:
            self._watchdog = threading.Thread(
                target=self._watch, args=(resident_mb(), threading.main_thread().ident),
                name="xfperf-memory-guard", daemon=True)
            self._watchdog.start()
        return self

    def _disarm(self) -> None:
        if not self._active:
            return
        self._active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._stop.set()
        signal.signal(signal.SIGALRM, self._previous)  # type: ignore[arg-type]

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._disarm()
        if self._watchdog is not None:
            self._watchdog.join(1.0)
