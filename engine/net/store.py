"""Atomic JSON records: write a temporary file, fsync, rename, fsync the directory. A kill -9 at any moment
leaves either the old record or the new one, never a torn one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any, durable: bool = True) -> None:
    """durable=False skips the fsyncs: still atomic against a crash of the engine (the page cache survives it), not
    against a power loss; for records that can be rebuilt from durable ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # json.dumps without indent is the C encoder; json.dump (or any indent) runs the Python one, ~3.5x slower: a
    # network's record lists every container on it and is written at each container's start and exit
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    with open(tmp, "w") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if not durable:
        return
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def read_all(directory: Path, pattern: str = "*.json") -> dict[str, Any]:
    """Every record in a directory by file stem; leftovers of interrupted writes (.tmp) are dropped."""
    out: dict[str, Any] = {}
    if not directory.is_dir():
        return out
    for p in directory.glob(".*.tmp"):
        p.unlink(missing_ok=True)
    for p in sorted(directory.glob(pattern)):
        try:
            out[p.stem] = read_json(p)
        except (OSError, ValueError):
            continue
    return out
