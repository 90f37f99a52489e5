"""Reading Docker's json-file logs: `{"log": ..., "stream": "stdout", "time": RFC3339Nano}` per line."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path


def parse_time_ns(value: str) -> int:
    """RFC 3339 with up to nanoseconds (Python's fromisoformat takes at most microseconds)."""
    if not value:
        return 0
    main, _, rest = value.partition(".")
    frac = ""
    tz = "+00:00"
    if rest:
        digits = ""
        for i, ch in enumerate(rest):
            if ch.isdigit():
                digits += ch
            else:
                tz = rest[i:]
                break
        frac = digits
    elif value.endswith("Z"):
        main = value[:-1]
    elif "+" in value[10:] or "-" in value[10:]:
        idx = max(value.rfind("+"), value.rfind("-"))
        main, tz = value[:idx], value[idx:]
    tz = "+00:00" if tz in ("Z", "") else tz
    t = dt.datetime.fromisoformat(main + tz)
    return int(t.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9])


def format_time_ns(ns: int) -> str:
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


Entry = tuple[str, bytes, int]  # stream, bytes, time ns


def _parse(line: bytes) -> Entry | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    try:
        return rec.get("stream", "stdout"), rec.get("log", "").encode("utf-8", "surrogateescape"), parse_time_ns(
            rec.get("time", "")
        )
    except (ValueError, AttributeError):
        return None


def log_files(path: Path) -> list[Path]:
    """The rotated files oldest first (`x.log.2`, `x.log.1`) then the live file."""
    rotated = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: -int(p.suffix[1:]),
    )
    return [*rotated, path] if path.exists() else rotated


def read_entries(path: Path, tail: int | None) -> tuple[list[Entry], int]:
    """All entries now in the log (the last `tail` when given) and the live file's size read so far."""
    entries: list[Entry] = []
    offset = 0
    for f in log_files(path):
        try:
            data = f.read_bytes()
        except OSError:
            continue
        if f == path:
            # Only whole lines; a half-written last line is read on the next follow round.
            end = data.rfind(b"\n") + 1
            data, offset = data[:end], end
        for line in data.splitlines():
            e = _parse(line)
            if e is not None:
                entries.append(e)
    if tail is not None and tail >= 0:
        entries = entries[-tail:] if tail else []
    return entries, offset


async def follow(path: Path, offset: int, done: Callable[[], bool], interval: float = 0.05) -> AsyncIterator[Entry]:
    """Entries appended after `offset` until `done()` and the file is drained; survives rotation."""
    buf = b""
    try:
        ino = os.stat(path).st_ino
    except OSError:
        ino = 0
    while True:
        finished = done()
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None and st.st_ino != ino:
            ino, offset, buf = st.st_ino, 0, b""  # rotated: the new live file starts over
        if st is not None and st.st_size > offset:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read(st.st_size - offset)
            offset += len(chunk)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                e = _parse(line)
                if e is not None:
                    yield e
            continue
        if finished:
            return
        await asyncio.sleep(interval)
