"""The supervisor's control socket protocol, shared by the supervisor and the engine's client.

Every message is a frame: an 8-byte header `[kind, 0, 0, 0, size uint32 big-endian]` then `size` bytes (the
stdout/stderr kinds are Docker's own stream ids, so attach output can be relayed as-is). Requests, replies and
exit notices are `marshal`ed dicts (no json import in the supervisor: its memory is a benchmark figure).
"""

from __future__ import annotations

import os

# No typing at run time (annotations only): what the zygote imports is shared by every supervisor, each
# paying its share of those pages in PSS (see lean.py); mypy reads the block below as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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


def recv_frame(sock: Any) -> tuple[int, bytes] | None:
    """One whole frame from a blocking socket; None at EOF."""
    buf = b""
    need = HEADER
    while len(buf) < need:
        chunk = sock.recv(need - len(buf))  # never past this frame: the caller may read the next one
        if not chunk:
            return None
        buf += chunk
        if len(buf) >= HEADER:
            need = HEADER + parse_header(buf[:HEADER])[1]
    kind, size = parse_header(buf[:HEADER])
    return kind, buf[HEADER : HEADER + size]


# sockaddr_un.sun_path holds 108 bytes with the terminating NUL
SUN_PATH_MAX = 107


class socket_path:
    """A name for bind/connect of the unix socket `path` that fits AF_UNIX whatever the exec-root's length.

    A path too long is reached through a descriptor of its directory (`/proc/self/fd/N/ctl.sock`): the socket
    still lives at `path`, so anything that knows the path finds it, and no process-wide chdir is involved (the
    engine connects from several threads). Use the name inside the `with` block only. A class rather than
    contextlib.contextmanager: the supervisor's zygote does not import contextlib (see lean.py)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> str:
        if len(os.fsencode(self.path)) <= SUN_PATH_MAX:
            return self.path
        parent, _, name = self.path.rpartition("/")
        self.fd = os.open(parent or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self.fd}/{name}"

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
