"""Which Engine API the TUI talks to: `-H`/$DOCKER_HOST, else a running portside daemon, else the embedded engine.

No Textual here: the choice is plain data so it can be tested and reused by benchmarks.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PORTSIDE_SOCKET = "/run/portside.sock"


@dataclass
class Endpoint:
    """An Engine API address plus what to say about it in the header."""

    url: str  # what docker-py takes as base_url ("unix:///run/portside.sock", "tcp://...")
    kind: str  # "host" (-H or $DOCKER_HOST), "daemon" (a running portside daemon), "embedded"
    label: str
    stop: Callable[[], None] | None = field(default=None, repr=False)  # stops an embedded engine

    def close(self) -> None:
        if self.stop is not None:
            stop, self.stop = self.stop, None
            stop()


class NoEngine(Exception):
    """No Engine API is reachable and none could be started; the message says why in plain words."""


def socket_answers(path: str, timeout: float = 0.5) -> bool:
    """True when something accepts connections on the unix socket at `path`."""
    if not Path(path).exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def choose(host: str | None, *, env: dict[str, str] | None = None, portside_socket: str = PORTSIDE_SOCKET,
           start_embedded: Callable[[], Endpoint] | None = None) -> Endpoint:
    """The endpoint the TUI should use, in the documented order of preference."""
    env = dict(os.environ) if env is None else env
    if host:
        return Endpoint(_normalise(host), "host", f"-H {host}")
    if env.get("DOCKER_HOST"):
        return Endpoint(_normalise(env["DOCKER_HOST"]), "host", f"DOCKER_HOST {env['DOCKER_HOST']}")
    if socket_answers(portside_socket):
        return Endpoint(f"unix://{portside_socket}", "daemon", f"portside daemon {portside_socket}")
    return (start_embedded or embedded)()


def _normalise(host: str) -> str:
    if host.startswith("/"):
        return f"unix://{host}"
    return host


def embedded() -> Endpoint:
    """Start the engine in this process (the embedded default) and return its socket."""
    if os.geteuid() != 0:
        raise NoEngine(
            "No container engine is reachable: $DOCKER_HOST is not set and no portside daemon answers on "
            f"{PORTSIDE_SOCKET}. The embedded engine needs root (it makes namespaces, mounts and cgroups): "
            "run portside as root, start `sudo portside daemon`, or point -H/$DOCKER_HOST at a Docker or "
            "Podman socket."
        )
    try:
        from engine import daemon  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        daemon = None
    start = getattr(daemon, "start_in_process", None) if daemon is not None else None
    if start is None:
        raise NoEngine(
            "No container engine is reachable: $DOCKER_HOST is not set, no portside daemon answers on "
            f"{PORTSIDE_SOCKET}, and this build has no embedded engine yet. Start one with -H/$DOCKER_HOST "
            "(a Docker or Podman socket)."
        )
    handle = start()
    sock = str(getattr(handle, "socket", getattr(handle, "socket_path", "")))
    stop = getattr(handle, "stop", None) or getattr(handle, "close", None)
    return Endpoint(f"unix://{sock}", "embedded", f"embedded engine {sock}", stop=stop)
