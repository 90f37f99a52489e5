"""The network's JSON records: written atomically by engine.store.write_json (a kill -9 at any moment leaves the
old record or the new one, never a torn one), read back here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.store import write_json

__all__ = ["read_all", "read_json", "write_json"]


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
