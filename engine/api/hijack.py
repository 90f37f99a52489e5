"""The hijacked connections of attach and exec start, and Docker's stdout/stderr multiplexing.

`docker attach`/`docker exec` send `Upgrade: tcp`; the daemon answers `HTTP/1.1 101 UPGRADED` and the socket
becomes a raw two-way stream. The client half-closes its write side when stdin ends (the docker CLI does so at
once when it sends no stdin), and the daemon must keep writing after that: aiohttp's protocol would close the
transport on EOF, so the server uses `HijackableHandler`, which keeps the socket open for a hijacked request
and hands the EOF to the stream's reader instead.

Detach keys (`DetachKeys`, `?detachKeys=`): on a TTY's stdin a key sequence (ctrl-p,ctrl-q by default) ends
the client's stream and leaves the process running; without a TTY stdin is copied as it comes, as dockerd does.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from aiohttp import web
from aiohttp.http_writer import StreamWriter
from aiohttp.web_protocol import RequestHandler

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p,ctrl-q
# moby/term's ASCII table: "ctrl-@" is 0, "ctrl-a" 1, ... "ctrl-z" 26, then ctrl-[ ctrl-\\ ctrl-] ctrl-^ ctrl-_
_CTRL = {name: code for code, name in enumerate(
    ["ctrl-@", *(f"ctrl-{chr(c)}" for c in range(ord("a"), ord("z") + 1)), "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^",
     "ctrl-_"])}


def detach_keys(spec: str) -> bytes | None:
    """The bytes of a detach-keys spec, parsed as moby/term's ToBytes does (comma-separated: one byte as is, a
    lower-case `ctrl-<x>` name or `DEL`; nothing else, no spaces trimmed); None when it does not parse. An empty
    spec is the default, ctrl-p,ctrl-q."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        raw = key.encode()
        if len(raw) == 1:
            out += raw
        elif key in _CTRL:
            out.append(_CTRL[key])
        elif key == "DEL":
            out.append(127)
        else:
            return None
    return bytes(out)


class DetachFilter:
    """Watches a TTY's stdin for the detach sequence, holding a partial match back until it completes (detach)
    or breaks: then the held bytes and the breaking one go on, and matching starts again after it, as moby/term's
    escape proxy does (which dockerd's copyEscapable uses). Unlike the proxy, a match may span or share reads."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = 0  # how many bytes of keys matched so far
        self.detached = False

    def feed(self, data: bytes) -> bytes:
        """The bytes to pass on; once the sequence completes, `detached` is set and the rest is dropped."""
        keys = self.keys
        if not self._held and keys[0] not in data:
            return data  # the common case (typing, a paste): nothing to look at byte by byte
        out = bytearray()
        for byte in data:
            if byte == keys[self._held]:
                self._held += 1
                if self._held == len(keys):
                    self.detached = True
                    return bytes(out)
                continue
            out += keys[: self._held]
            out.append(byte)
            self._held = 0
        return bytes(out)


def frame(stream: int, data: bytes) -> bytes:
    """One multiplexed frame: [stream, 0, 0, 0, len uint32 BE] + payload (Docker's stdcopy)."""
    return struct.pack(">BxxxL", stream, len(data)) + data


class RawStreamParser:
    """Receives the client's bytes after the upgrade (aiohttp's `set_parser` protocol) into an asyncio queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()  # b"" marks EOF (the client half-closed)
        self.eof = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data and not self.eof:
            self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        if not self.eof:
            self.eof = True
            self.queue.put_nowait(b"")


class HijackableHandler(RequestHandler):
    """aiohttp's protocol, except that a half-close on a hijacked stream is EOF of stdin, not a hang-up."""

    __slots__ = ()

    def eof_received(self) -> bool | None:  # type: ignore[override]
        parser: Any = self._payload_parser
        if isinstance(parser, RawStreamParser):
            parser.feed_eof()
            return True  # keep the transport open for writing
        return None


class Hijacked:
    """A hijacked connection: `read()` client bytes (b"" at EOF), `write()` raw bytes, `close()` the socket."""

    def __init__(self, request: web.Request, parser: RawStreamParser, writer: StreamWriter,
                 response: web.StreamResponse) -> None:
        self.request = request
        self.response = response  # what the handler returns (already sent)
        self._parser = parser
        self._writer = writer
        self.closed = False

    async def read(self) -> bytes:
        if self._parser.eof and self._parser.queue.empty():
            return b""
        return await self._parser.queue.get()

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("hijacked connection closed")
        transport = self.request.transport
        if transport is None or transport.is_closing():
            self.closed = True
            raise ConnectionResetError("client went away")
        await self._writer.write(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.request.protocol.force_close()
        transport = self.request.transport
        if transport is not None:
            transport.close()


async def hijack(request: web.Request, content_type: str) -> Hijacked:
    """Answer 101 UPGRADED (or 200 for a client that did not ask to upgrade) and take the raw stream over."""
    upgrade = "upgrade" in request.headers.get("Connection", "").lower() and "Upgrade" in request.headers
    if upgrade:
        resp = web.StreamResponse(status=101, reason="UPGRADED")
        resp.headers["Connection"] = "Upgrade"
        resp.headers["Upgrade"] = request.headers.get("Upgrade", "tcp")
    else:
        resp = web.StreamResponse(status=200)
        resp.force_close()
    resp.headers["Content-Type"] = content_type
    # No chunking, no length: the body is the raw stream until the daemon closes the socket.
    resp._length_check = False  # what aiohttp's WebSocketResponse does too
    await resp.prepare(request)
    parser = RawStreamParser()
    if upgrade:
        request.protocol.set_parser(parser)  # type: ignore[arg-type]
    else:
        parser.feed_eof()
    writer = StreamWriter(request.protocol, asyncio.get_running_loop())
    return Hijacked(request, parser, writer, resp)
