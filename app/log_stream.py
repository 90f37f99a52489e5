"""A container's log stream read in big pieces: a few Python operations per read, not per line.

docker-py reads a multiplexed log stream one frame at a time (two urllib3 reads and a struct unpack per line),
and a TTY container's stream one byte at a time; under 10,000 lines a second that reader thread holds the GIL
for much of the time and the UI waits for it. Here the HTTP body is read with `read1(64 KiB)` straight from the
connection's buffered reader; `Dechunker` undoes HTTP/1.1 chunked encoding, `LogDecoder` takes the Engine API's
8-byte frame headers off (non-TTY) and turns whole lines into `str` with one decode per read.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from typing import Any

READ_SIZE = 1 << 16
# How long one request waits for the response's head before `cancelled` is asked again (see LogStream)
HEAD_WAIT = 2.0


class Cancelled(Exception):
    """The log stream was given up on before the engine answered."""
_HEADER = struct.Struct(">BxxxL")  # stream (0 stdin, 1 stdout, 2 stderr), 3 bytes padding, payload length


class Dechunker:
    """HTTP/1.1 chunked transfer coding, undone on pieces cut anywhere."""

    def __init__(self) -> None:
        self._buf = b""
        self._left = 0  # bytes of the current chunk's data still to come
        self._crlf = False  # the CRLF after a chunk's data is due
        self.done = False  # the last (zero-size) chunk was seen

    def feed(self, data: bytes) -> bytes:
        buf = self._buf + data if self._buf else data
        n, pos, out = len(buf), 0, []
        while not self.done:
            if self._left:
                take = min(self._left, n - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if n - pos < 2:
                    break
                pos += 2
                self._crlf = False
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";", 1)[0], 16)  # a chunk extension may follow the size
            pos = eol + 2
            if size == 0:
                self.done = True  # trailers, if any, do not matter here
            self._left = size
        self._buf = buf[pos:]
        return out[0] if len(out) == 1 else b"".join(out)


class LogDecoder:
    """Bytes of a log stream in, complete lines out (without their newline).

    Non-TTY streams are multiplexed: each frame is an 8-byte header (stream id, length) and that many bytes. A
    line is normally one frame, but a long one comes in several; stdout and stderr keep their partial lines apart
    so interleaved frames never mix. A TTY container's stream is the terminal's raw bytes ("\\r\\n" endings).
    """

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self._buf = b""  # an incomplete frame (or, for a TTY, an incomplete line)
        self._partial: dict[int, bytes] = {}

    def feed(self, data: bytes) -> list[str]:
        if self.tty:
            buf = self._buf + data if self._buf else data
            end = buf.rfind(b"\n") + 1
            self._buf = buf[end:]
            return _lines(buf[:end]) if end else []
        buf = self._buf + data if self._buf else data
        n, pos, out = len(buf), 0, []
        partial = self._partial
        unpack = _HEADER.unpack_from
        while pos + 8 <= n:
            stream, length = unpack(buf, pos)
            end = pos + 8 + length
            if end > n:
                break
            payload = buf[pos + 8 : end]
            pos = end
            if payload.endswith(b"\n") and stream not in partial:
                out.append(payload)  # the usual case: one whole line
                continue
            payload = partial.pop(stream, b"") + payload
            cut = payload.rfind(b"\n") + 1
            if cut:
                out.append(payload[:cut])
            if cut < len(payload):
                partial[stream] = payload[cut:]
        self._buf = buf[pos:]
        return _lines(b"".join(out)) if out else []

    def flush(self) -> list[str]:
        """What is left at the end of the stream: partial lines (stdout's first), as lines."""
        rest = [self._buf] if self.tty else [self._partial[s] for s in sorted(self._partial)]
        self._buf, self._partial = b"", {}
        return [line for piece in rest if piece for line in _lines(piece + b"\n")]


def _lines(data: bytes) -> list[str]:
    """Whole lines (`data` ends with a newline) decoded at once; a "\\r" before the newline goes too."""
    text = data.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    lines.pop()  # after the last newline: nothing
    return lines


class LogStream:
    """`GET /containers/{id}/logs?follow=1`: iterate for lists of lines; `close()` from any thread ends it."""

    def __init__(self, api: Any, cid: str, *, tail: int | str = "all", since: float | None = None,
                 timestamps: bool = True, cancelled: Callable[[], bool] | None = None) -> None:
        # here, not at the top: the main screen imports this module for drop_resent before its first frame,
        # and docker-py with requests is a tenth of a second that frame need not wait for
        import requests
        from docker.types.daemon import CancellableStream

        tty = bool(api.inspect_container(cid)["Config"].get("Tty"))  # as docker-py does: the stream's format
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": 1, "timestamps": int(timestamps),
                                  "tail": tail if isinstance(tail, int) and tail >= 0 else "all"}
        if since:
            params["since"] = f"{since:.9f}"
        url = api._url("/containers/{0}/logs", cid)
        # Podman sends the response's head only with a container's first log line: for a silent one the request
        # would block where close() cannot reach it (and the app's exit would wait for it). With `cancelled`,
        # the head is waited for HEAD_WAIT at a time and asked for again unless cancelled. On a socket we can
        # take the timeout off afterwards only (unix, tcp): an ssh host waits as before.
        local = cancelled is not None and not api.base_url.endswith("//ssh")
        while True:
            try:
                res = api._get(url, params=params, stream=True, timeout=HEAD_WAIT if local else None)
                break
            except requests.exceptions.ReadTimeout:
                if cancelled is not None and cancelled():
                    raise Cancelled(cid) from None
        api._raise_for_status(res)
        self._res = res
        self._closer = CancellableStream(iter(()), res)
        self.decoder = LogDecoder(tty)
        with contextlib.suppress(Exception):
            api._disable_socket_timeout(api._get_raw_response_socket(res))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._closer.close()
        with contextlib.suppress(Exception):
            self._res.close()

    def _pieces(self) -> Iterator[bytes]:
        http: Any = getattr(self._res.raw, "_fp", None)  # http.client.HTTPResponse under urllib3
        fp = getattr(http, "fp", None)
        if fp is None or not hasattr(fp, "read1"):  # another transport (ssh): urllib3's own reads
            yield from self._res.raw.stream(READ_SIZE, decode_content=False)
            return
        dechunk = Dechunker() if http.chunked else None
        left = None if http.chunked or http.length is None else http.length
        while left is None or left > 0:
            data = fp.read1(READ_SIZE if left is None else min(READ_SIZE, left))
            if not data:
                return
            if left is not None:
                left -= len(data)
            if dechunk is None:
                yield data
                continue
            body = dechunk.feed(data)
            if body:
                yield body
            if dechunk.done:
                return

    def __iter__(self) -> Iterator[list[str]]:
        decoder = self.decoder
        try:
            for piece in self._pieces():
                lines = decoder.feed(piece)
                if lines:
                    yield lines
        except (OSError, ValueError):
            pass  # closed under us (shutdown from another thread), or the connection broke
        rest = decoder.flush()
        if rest:
            yield rest


def drop_resent(lines: list[str], resent: list[str]) -> list[str]:
    """`lines` without those at its start that are shown already, in order (`resent`, emptied as they are met
    and at the first line that differs: from there on everything is new)."""
    i = 0
    while resent and i < len(lines) and lines[i] == resent[0]:
        resent.pop(0)
        i += 1
    if i < len(lines):
        resent.clear()
    return lines[i:]
