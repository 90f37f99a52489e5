"""`read_entries` with a tail reads the json-file log backwards; it must give what reading it all would."""

from __future__ import annotations

import json
import random
from pathlib import Path

from engine.containers import logs


def _line(i: int, rng: random.Random) -> bytes:
    text = f"line {i} " + "x" * rng.choice([0, 5, 80, 3000, 70000])
    rec = {"log": text + "\n", "stream": rng.choice(["stdout", "stderr"]), "time": f"2026-11-28T06:00:00.{i:09d}Z"}
    return json.dumps(rec).encode() + b"\n"


def _full(path: Path) -> tuple[list[logs.Entry], int]:
    entries: list[logs.Entry] = []
    offset = 0
    for f in logs.log_files(path):
        data = f.read_bytes()
        if f == path:
            data = data[: data.rfind(b"\n") + 1]
            offset = len(data)
        entries += [e for e in map(logs._parse, data.splitlines()) if e is not None]
    return entries, offset


def test_tail_read_backwards_matches_the_whole_log(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "c-json.log"
    n = 0
    for name in ("c-json.log.2", "c-json.log.1", "c-json.log"):
        with open(tmp_path / name, "wb") as f:
            for _ in range(rng.randint(50, 400)):
                f.write(_line(n, rng))
                n += 1
                if rng.random() < 0.02:
                    f.write(b"not json\n")
    with open(path, "ab") as f:
        f.write(b'{"log": "half-writ')  # the writer is in the middle of a line: it is not read yet
    everything, offset = _full(path)
    assert len(everything) == n
    for tail in [0, 1, 2, 3, 17, 49, 50, 51, 200, 399, 400, 401, 700, n - 1, n, n + 1, 10**6]:
        got, got_offset = logs.read_entries(path, tail)
        assert got_offset == offset, tail
        assert got == (everything[-tail:] if tail else []), tail
    assert logs.read_entries(path, None) == (everything, offset)


def test_tail_of_a_log_without_a_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    path.write_bytes(b'{"log": "no newline yet"')
    assert logs.read_entries(path, 10) == ([], 0)
    path.write_bytes(b"")
    assert logs.read_entries(path, 10) == ([], 0)
