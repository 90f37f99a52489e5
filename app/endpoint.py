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
    from engine.daemon import DaemonConfig, DaemonThread

    cfg = DaemonConfig()
    if env_config := os.environ.get("PORTSIDE_EMBEDDED_ROOT"):
        # A private data/exec root and socket (tests, or a second engine beside a system one).
        root = Path(env_config)
        cfg = DaemonConfig(data_root=root / "data", exec_root=root / "exec", hosts=[f"unix://{root}/portside.sock"])
    sock = cfg.hosts[0].removeprefix("unix://")
    thread = DaemonThread(cfg)
    try:
        thread.start()
    except Exception as exc:
        thread.stop()
        raise NoEngine(f"The embedded portside engine could not start: {exc}") from exc
    return Endpoint(f"unix://{sock}", "embedded", f"embedded engine {sock}", stop=thread.stop)
