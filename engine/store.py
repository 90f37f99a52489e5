"""Atomic JSON records on disk: a kill -9 at any moment leaves either the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any, durable: bool = True) -> None:
    """Write `data` as JSON to `path` atomically: temp file, fsync, rename, fsync of the directory. durable=False
    skips the fsyncs: still atomic against a crash of the engine (the page cache survives it), not against a power
    loss; for records that can be rebuilt from durable ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # dumps, not dump: json.dump (or any indent) encodes in Python, chunk by chunk; dumps uses the C encoder (a
    # container's record, saved on `docker run`'s path, encodes ~10x faster), and fails before the file is written
    text = json.dumps(data, separators=(",", ":"))
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if not durable:
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path) -> Any | None:
    """The JSON in `path`, or None when it does not exist or is unreadable (a record never finished)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def remove_stale_temps(directory: Path) -> None:
    """Drop temp files a killed writer left behind (they never replaced a record)."""
    for p in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()
