"""The supervisor's control socket protocol, shared by the supervisor and the engine's client.

Every message is a frame: an 8-byte header `[kind, 0, 0, 0, size uint32 big-endian]` then `size` bytes (the
stdout/stderr kinds are Docker's own stream ids, so attach output can be relayed as-is). Requests, replies and
exit notices are `marshal`ed dicts (no json import in the supervisor: its memory is a benchmark figure).
"""

from __future__ import annotations

STDIN = 0
STDOUT = 1
STDERR = 2
CONTROL = 3  # a marshalled dict: request, reply
CLOSE_STDIN = 4
RESIZE = 5  # a marshalled (height, width)
EXIT = 6  # a marshalled dict: {"exit_code": int}

HEADER = 8


def header(kind: int, size: int) -> bytes:
    return bytes((kind, 0, 0, 0)) + size.to_bytes(4, "big")


def frame(kind: int, payload: bytes) -> bytes:
    return header(kind, len(payload)) + payload


def parse_header(head: bytes) -> tuple[int, int]:
    return head[0], int.from_bytes(head[4:8], "big")
