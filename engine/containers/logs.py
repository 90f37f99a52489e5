"""Reading Docker's json-file logs: `{"log": ..., "stream": "stdout", "time": RFC3339Nano}` per line."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO


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
    # a listing, not a glob: each glob pattern (one per container) is compiled and kept in pathlib's and re's caches
    prefix = path.name + "."
    try:
        names = os.listdir(path.parent)
    except OSError:
        names = []
    rotated = sorted(
        (path.parent / n for n in names if n.startswith(prefix) and n[len(prefix):].isdigit()),
        key=lambda p: -int(p.suffix[1:]),
    )
    return [*rotated, path] if path.exists() else rotated


def read_entries(path: Path, tail: int | None) -> tuple[list[Entry], int]:
    """All entries now in the log (the last `tail` when given) and the live file's size read so far."""
    if tail is not None and tail >= 0:
        return _read_tail(path, tail)
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
    return entries, offset


def _read_tail(path: Path, tail: int) -> tuple[list[Entry], int]:
    """The last `tail` entries, read backwards from the end of the newest file: a flooding container's log may
    hold millions of lines, and parsing them all to keep a thousand held the daemon for seconds."""
    newest_first: list[list[Entry]] = []
    have = offset = 0
    for f in reversed(log_files(path)):
        try:
            fh = open(f, "rb")
        except OSError:
            continue
        with fh:
            end = fh.seek(0, os.SEEK_END)
            if f == path:  # only whole lines; a half-written last line is read on the next follow round
                end = offset = _whole_lines_end(fh, end)
            if have < tail:
                found = _last_entries(fh, end, tail - have)
                newest_first.append(found)
                have += len(found)
        if have >= tail:
            break
    return [e for entries in reversed(newest_first) for e in entries], offset


def _whole_lines_end(fh: BinaryIO, end: int, block: int = 1 << 12) -> int:
    """The offset just after the last newline before `end` (0 if there is none)."""
    while end > 0:
        start = max(0, end - block)
        fh.seek(start)
        data = fh.read(end - start)
        i = data.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        end = start
    return 0


def _last_entries(fh: BinaryIO, end: int, want: int, block: int = 1 << 16) -> list[Entry]:
    """Up to `want` entries ending at `end`, reading blocks backwards (each twice the last) until enough whole
    lines parse."""
    start, buf = end, b""
    while True:
        if start == 0:
            return [e for e in map(_parse, buf.splitlines()) if e is not None][-want:]
        cut = buf.find(b"\n") + 1  # what comes before the first newline may be the end of a longer line
        if cut and buf.count(b"\n", cut) >= want:
            found = [e for e in map(_parse, buf[cut:].splitlines()) if e is not None]
            if len(found) >= want:
                return found[-want:]
        n = min(block, start)
        block *= 2
        start -= n
        fh.seek(start)
        buf = fh.read(n) + buf


async def follow(path: Path, offset: int, done: Callable[[], bool], interval: float = 0.05) -> AsyncIterator[Entry]:
    """Entries appended after `offset` until `done()` and the file is drained; survives rotation.

    The file is read through a descriptor kept open, so what a container wrote before it was removed (docker-py's
    run() removes the container before it reads the follow stream it opened) is still read after the unlink."""
    buf = b""
    f: BinaryIO | None = None
    try:
        try:
            f = open(path, "rb")
            f.seek(offset)
        except OSError:
            f = None
        while True:
            finished = done()
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if f is None and st is not None:
                f = open(path, "rb")
                f.seek(offset)
            elif f is not None and st is not None and st.st_ino != os.fstat(f.fileno()).st_ino:
                # rotated: what is left of the old file first, then the new live file from its start
                rest = f.read()
                if rest:
                    buf += rest
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        e = _parse(line)
                        if e is not None:
                            yield e
                f.close()
                f = open(path, "rb")
                buf = b""
            chunk = f.read() if f is not None else b""
            if chunk:
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
    finally:
        if f is not None:
            f.close()
