"""Which Engine API the TUI talks to: `-H`, $DOCKER_HOST, the docker CLI's context ($DOCKER_CONTEXT or the config's
`currentContext`, when not "default"), else a running portside daemon, else the embedded engine.

No Textual here: the choice is plain data so it can be tested and reused by benchmarks.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PORTSIDE_SOCKET = "/run/portside.sock"


@dataclass
class Endpoint:
    """An Engine API address plus what to say about it in the header."""

    url: str  # what docker-py takes as base_url ("unix:///run/portside.sock", "tcp://...")
    kind: str  # "host" (-H or $DOCKER_HOST), "daemon" (a running portside daemon), "embedded"
    label: str
    stop: Callable[[], None] | None = field(default=None, repr=False)  # stops an embedded engine
    tls: Any = field(default=None, repr=False)  # a docker.tls.TLSConfig (a context's certificates), or None

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
    if (ctx := context_endpoint(env)) is not None:
        return ctx
    if socket_answers(portside_socket):
        return Endpoint(f"unix://{portside_socket}", "daemon", f"portside daemon {portside_socket}")
    return (start_embedded or embedded)()


def context_endpoint(env: dict[str, str]) -> Endpoint | None:
    """The docker CLI's current context when it is not "default", as `docker` itself would pick it.

    docker-py reads the contexts (meta.json and TLS material under $DOCKER_CONFIG/contexts); it does not look at
    $DOCKER_CONTEXT, which the CLI lets override the config's `currentContext`."""
    from docker.context import config as ctx_config
    from docker.context.context import Context

    old = os.environ.get("DOCKER_CONFIG")
    if env.get("DOCKER_CONFIG"):
        os.environ["DOCKER_CONFIG"] = env["DOCKER_CONFIG"]  # docker-py finds its files through the process env
    try:
        name = env.get("DOCKER_CONTEXT") or ctx_config.get_current_context_name()
        if not name or name == "default":
            return None
        ctx = Context.load_context(name)
    finally:
        if env.get("DOCKER_CONFIG"):
            if old is None:
                os.environ.pop("DOCKER_CONFIG", None)
            else:
                os.environ["DOCKER_CONFIG"] = old
    if ctx is None or not ctx.Host:
        raise NoEngine(f"The docker context {name!r} does not exist or has no Docker endpoint "
                       "(see `docker context ls`); use -H to pick a host.")
    return Endpoint(_normalise(ctx.Host), "host", f"context {name} ({ctx.Host})", tls=ctx.TLSConfig or None)


def reachable_sockets(env: dict[str, str]) -> list[str]:
    """Docker and Podman sockets on this machine that accept a connection, for the "no engine" message."""
    candidates = ["/var/run/docker.sock", "/run/podman/podman.sock"]
    if env.get("XDG_RUNTIME_DIR"):
        candidates[1:1] = [f"{env['XDG_RUNTIME_DIR']}/podman/podman.sock", f"{env['XDG_RUNTIME_DIR']}/docker.sock"]
    return [p for p in candidates if socket_answers(p)]


def _normalise(host: str) -> str:
    if host.startswith("/"):
        return f"unix://{host}"
    return host


def embedded() -> Endpoint:
    """Start the engine in this process (the embedded default) and return its socket."""
    if os.geteuid() != 0:
        found = reachable_sockets(dict(os.environ))
        hint = "".join(f"\n  portside -H unix://{p}" for p in found)
        raise NoEngine(
            "No container engine is reachable: $DOCKER_HOST is not set and no portside daemon answers on "
            f"{PORTSIDE_SOCKET}. The embedded engine needs root (it makes namespaces, mounts and cgroups): "
            "run portside as root, start `sudo portside daemon`, or point -H/$DOCKER_HOST at a Docker or "
            "Podman socket." + (f" These answer here:{hint}" if found else "")
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
