"""The container list, fetched while the TUI is still importing Textual, so the first frame already shows it.

Importing Textual and docker-py takes most of a second; the engine answers `GET /containers/json` in tens of
milliseconds in its own process. A thread started before those imports asks it over the endpoint the TUI will
choose, and the main screen fills its list from the answer instead of painting an empty list first and the rows one
frame later. The regular docker-py load that follows the connection (after the /events subscription) still
refreshes the list, so nothing that changed in between is lost.

The request is written on a bare socket and its answer read by hand (Content-Length, chunked, or up to the close):
http.client would pull email's parser and ssl onto the first frame's path (~20 ms of imports). Only plain endpoints
are fetched: `-H`/$DOCKER_HOST over a unix socket or plain TCP with a port, or the portside daemon's socket. A
docker CLI context, TLS, or the embedded engine (not started yet) give no prefetch.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

from app.endpoint import PORTSIDE_SOCKET
from app.log_stream import Dechunker

TIMEOUT = 2.0
REQUEST = b"GET /containers/json?all=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
MAX_BODY = 64 << 20  # a list bigger than this is not worth a first frame: the regular load shows it


class BadResponse(ValueError):
    """The engine's answer was not a 200 with a JSON body this module can read."""


def read_response(sock: socket.socket) -> bytes:
    """The body of a 200 answer to REQUEST on `sock`, undone of chunked coding; BadResponse for anything else."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(1 << 16)
        if not data or len(buf) > 1 << 16:
            raise BadResponse("no complete response head")
        buf += data
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or status[1] != "200":
        raise BadResponse(f"status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length = headers.get("content-length")
    want = None if chunked or length is None or not length.isdigit() else int(length)
    if want is not None and want > MAX_BODY:
        raise BadResponse("body too big")
    dechunk = Dechunker() if chunked else None
    out: list[bytes] = []
    size = 0
    piece = body
    while True:  # the body read so far, then what the socket gives until the answer is complete or the close
        if dechunk is not None:
            piece = dechunk.feed(piece)
        out.append(piece)
        size += len(piece)
        if size > MAX_BODY:
            raise BadResponse("body too big")
        if (dechunk is not None and dechunk.done) or (want is not None and size >= want):
            return b"".join(out)[:want]
        piece = sock.recv(1 << 16)
        if not piece:
            if dechunk is not None or want is not None:
                raise BadResponse("body cut short")
            return b"".join(out)  # no length given: the body ends with the connection


def _uses_context(env: dict[str, str]) -> bool:
    """Whether endpoint.choose would look at a docker CLI context (read through docker-py: not done here)."""
    if env.get("DOCKER_CONTEXT"):
        return True
    config = Path(env.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        current = json.loads(config.read_text()).get("currentContext")
    except (OSError, ValueError, AttributeError):
        return False
    return bool(current) and current != "default"


def plain_url(host: str | None, env: dict[str, str]) -> str | None:
    """The URL endpoint.choose will pick when it is one this module can fetch from, else None."""
    url = host or env.get("DOCKER_HOST")
    if not url:
        if _uses_context(env) or not Path(PORTSIDE_SOCKET).exists():
            return None
        url = f"unix://{PORTSIDE_SOCKET}"
    if url.startswith("/"):
        url = f"unix://{url}"
    if url.startswith("unix://"):
        return url
    if url.startswith("tcp://") and not env.get("DOCKER_TLS_VERIFY"):
        return url
    return None


class ContainerPrefetch:
    """`GET /containers/json?all=1` on a thread; `result()` gives the list docker-py's containers(all=True) gives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._done = threading.Event()
        self._containers: list[dict[str, Any]] | None = None
        threading.Thread(target=self._fetch, name="portside-prefetch", daemon=True).start()

    def _connect(self) -> socket.socket:
        if self.url.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = self.url.removeprefix("unix://")
        else:
            hostport = self.url.removeprefix("tcp://").split("/", 1)[0]
            host, _, port = hostport.rpartition(":")
            if not host or not port.isdigit():  # docker's default port for tcp:// is left to docker-py
                raise BadResponse(f"no port in {self.url}")
            return socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT)
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock

    def _fetch(self) -> None:
        try:
            with self._connect() as sock:
                sock.sendall(REQUEST)
                body = read_response(sock)
            data = json.loads(body)
            if isinstance(data, list):
                self._containers = data
        except (OSError, ValueError):
            pass  # the regular load after connecting reports what is wrong
        finally:
            self._done.set()

    def result(self, timeout: float) -> list[dict[str, Any]] | None:
        """The containers, or None when the fetch failed or is not done within `timeout` seconds."""
        self._done.wait(timeout)
        return self._containers


def start(host: str | None, env: dict[str, str] | None = None) -> ContainerPrefetch | None:
    url = plain_url(host, dict(os.environ) if env is None else env)
    return ContainerPrefetch(url) if url else None
