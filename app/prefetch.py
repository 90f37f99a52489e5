"""The container list, fetched while the TUI is still importing Textual, so the first frame already shows it.

Importing Textual and docker-py takes most of a second; the engine answers `GET /containers/json` in tens of
milliseconds in its own process. A thread started before those imports asks it with http.client (light to
import, no docker-py) over the endpoint the TUI will choose, and the main screen fills its list from the answer
instead of painting an empty list first and the rows one frame later. The regular docker-py load that follows the
connection (after the /events subscription) still refreshes the list, so nothing that changed in between is lost.

Only plain endpoints are fetched: `-H`/$DOCKER_HOST over a unix socket or plain TCP, or the portside daemon's
socket. A docker CLI context, TLS, or the embedded engine (not started yet) give no prefetch.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

from app.endpoint import PORTSIDE_SOCKET

TIMEOUT = 2.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        try:
            s.connect(self.path)
        except OSError:
            s.close()
            raise
        self.sock = s


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

    def _connection(self) -> http.client.HTTPConnection:
        if self.url.startswith("unix://"):
            return _UnixConnection(self.url.removeprefix("unix://"))
        hostport = self.url.removeprefix("tcp://").split("/", 1)[0]
        return http.client.HTTPConnection(hostport, timeout=TIMEOUT)

    def _fetch(self) -> None:
        try:
            conn = self._connection()
            try:
                conn.request("GET", "/containers/json?all=1")
                resp = conn.getresponse()
                body = resp.read()
            finally:
                conn.close()
            if resp.status == 200:
                data = json.loads(body)
                if isinstance(data, list):
                    self._containers = data
        except (OSError, ValueError, http.client.HTTPException):
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
