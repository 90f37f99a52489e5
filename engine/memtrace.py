"""Memory snapshots of a running daemon, for finding what grows (the soak benchmark's `--tracemalloc`).

A daemon started with `PORTSIDE_TRACEMALLOC=<dir>` in its environment traces its Python allocations
(tracemalloc, 16 frames) and writes a snapshot to `<dir>/<n>.snap` (and a count of live objects by type to
`<dir>/<n>.types.json`, and glibc's own figures to `<dir>/<n>.malloc.json`) each time it gets SIGUSR2, as dockerd
dumps its goroutines on SIGUSR1. Tracing slows the daemon down, so nothing else turns it on.

Garbage is collected first, so a snapshot holds what is alive, not cycles the collector has not reached yet. The
malloc figures tell the Python heap's growth from the allocator's: `in_use` is what malloc has handed out (the
Python heap's large blocks, C extensions, the tracing itself), `free` what it holds unused inside its heaps
(fragmentation: resident until trimmed), `mmapped` the large buffers mapped on their own.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import signal
import tracemalloc
from pathlib import Path

ENV = "PORTSIDE_TRACEMALLOC"

log = logging.getLogger("portside.memtrace")


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Starts tracing and the SIGUSR2 handler when the environment asks for them; a no-op otherwise."""
    target = os.environ.pop(ENV, "")  # not inherited by the supervisors the daemon starts
    if not target:
        return
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(16)
    count = [0]

    def dump() -> None:
        count[0] += 1
        path = out / f"{count[0]}.snap"
        gc.collect()
        (out / f"{count[0]}.malloc.json").write_text(json.dumps(mallinfo()))
        # live objects by type beside the allocation sites: what a growing site's blocks are
        types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        (out / f"{count[0]}.types.json").write_text(json.dumps(dict(types)))
        tracemalloc.take_snapshot().dump(str(path))
        log.info("memtrace: snapshot %s", path)

    loop.add_signal_handler(signal.SIGUSR2, dump)
    log.info("memtrace: tracing allocations, SIGUSR2 writes a snapshot under %s", out)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def mallinfo() -> dict[str, int]:
    """glibc's totals over all its arenas (mallinfo2, glibc 2.33+), in bytes; empty where there is none."""
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _Mallinfo2
    m = fn()
    return {"heaps": m.arena, "in_use": m.uordblks, "free": m.fordblks, "mmapped": m.hblkhd,
            "trimmable_top": m.keepcost}
