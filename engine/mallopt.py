"""glibc malloc settings for a long-running engine, so memory freed after a pull or a build goes back to the system.

glibc serves a request above its mmap threshold (128 KiB at first) with a mapping of its own and unmaps it when
freed - but on that free it raises the threshold to the freed size (up to 32 MiB). After the first pull or build
(1 MiB chunks of layers read, deflated, hashed) every such buffer comes from the heaps instead, where it fragments
them and stays resident: the soak benchmark measured +17 MiB of RSS over 150 cycles with it, +3 MiB without it.
Fixing the threshold (which turns that adjustment off) and keeping to two heaps for the worker threads (each
thread otherwise gets a heap of its own, up to 8 per core) keeps the engine's RSS flat, at the cost of an mmap per
large buffer, which the data they carry dwarfs. Environment settings (MALLOC_MMAP_THRESHOLD_, MALLOC_ARENA_MAX)
win: they are left alone.

glibc gives memory back by itself only from the top of a heap; free pages inside it stay resident. After a
container is removed (what it held is garbage then) `trim_soon()` calls malloc_trim(0), which returns every free
page of every arena: a second after a removal, which the removals meanwhile share, so a burst of them costs one
trim (~0.3 ms) and a steady churn one a second. The soak
benchmark's daemon held ~2 MiB of such pages at any time (what a trim gave back, at 30 cycles and at 300 alike):
fragmentation that does not grow, so this lowers the RSS rather than its slope.

The Dockerfile parser (the `dockerfile` package) is BuildKit's Go parser in a cgo extension, with a Go runtime of
its own in the process. Go collects its heap when it doubles, but never below 4 MiB: each parse leaves ~15-20 KiB
of garbage there until the heap reaches that floor, so it is bounded (~4.3 MiB at most). A Dockerfile text is
parsed once (engine/build/dockerfile.py), so rebuilding the same files adds nothing; GOGC=10 in the daemon's
environment lowers the floor to a tenth, at twice the parse time, for a daemon that builds many different files.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import os

log = logging.getLogger("portside.daemon")

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024  # glibc's own initial value
ARENA_MAX = 2


TRIM_DELAY = 1.0  # seconds after a removal


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def tune() -> bool:
    """Applies the settings above; False where the C library is not glibc (nothing changed then)."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and ok
    if "MALLOC_ARENA_MAX" not in os.environ:
        ok = mallopt(M_ARENA_MAX, ARENA_MAX) == 1 and ok
    if not ok:
        log.debug("mallopt refused a setting; glibc's defaults stay")
    return ok


def trim() -> bool:
    """Returns malloc's free pages to the system now; False where there is no malloc_trim (not glibc)."""
    fn = getattr(_libc(), "malloc_trim", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    fn(0)
    return True


class Trimmer:
    """trim() a while after a release of memory: `soon()` schedules one on the running loop `delay` seconds
    from now unless one is scheduled already (which comes soon enough, and is not put off: a steady churn still
    gets one a `delay`)."""

    def __init__(self, delay: float = TRIM_DELAY) -> None:
        self.delay = delay
        self.trims = 0  # how many have run
        self._handle: asyncio.TimerHandle | None = None

    def soon(self) -> None:
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.delay, self._run)

    def due(self) -> float | None:
        """The loop time the scheduled trim runs at; None when none is scheduled."""
        return self._handle.when() if self._handle is not None else None

    def _run(self) -> None:
        self._handle = None
        trim()
        self.trims += 1

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
