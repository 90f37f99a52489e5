"""A Service's host port balanced across every pod it selects: a small userspace TCP proxy, one process per
Service port.

Why userspace and not the engine's DNAT: engine/net maps one host port to one container (its allocator, its nft
`published` rules and its socket hook are all keyed by the host port), and `kube play` works through the Engine
API only. The balancer is started by `kube play` with the listening socket already bound (so a port in use fails
the play before anything is made), round-robins new connections over the running containers carrying the
Service's label (looked up again every couple of seconds, so restarted pods with new addresses are followed), and
goes away when `kube down` stops it by its pidfile, when no container with its label is left, or when the engine
stays unreachable (a daemon that is gone for good leaves no balancer behind; a restart is ridden out).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from engine.kube import names

STATE_DIR = Path("/run/portside-kube")
REFRESH = 2.0  # seconds between looks at the engine for the backends
GIVE_UP = 60.0  # seconds of an unreachable engine after which the balancer exits


def label(service: str) -> str:
    """The label `kube play` puts on the network-owning container of every pod a balanced Service selects."""
    return f"{names.PREFIX}service.{service}"


def pidfile(engine_url: str, service: str, port: int) -> Path:
    return STATE_DIR / hashlib.sha256(engine_url.encode()).hexdigest()[:12] / f"{service}-{port}.pid"


def running(path: Path) -> int | None:
    """The pid in a pidfile if that process is still a balancer, else None."""
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"engine.kube.balancer" in cmdline else None


def stop(path: Path) -> bool:
    """Stop the balancer a pidfile names (if it runs) and remove the file; whether one was running."""
    pid = running(path)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if running(path) is None or not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.05)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the engine's directory goes with its last balancer
        path.parent.rmdir()
    return pid is not None


def start(engine_url: str, service: str, listener: socket.socket, target_port: int) -> Path:
    """Start a balancer serving `listener` (bound and listening) and write its pidfile."""
    import subprocess

    port = listener.getsockname()[1]
    path = pidfile(engine_url, service, port)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.kube.balancer", "--engine", engine_url, "--service", service,
         "--fd", str(listener.fileno()), "--target-port", str(target_port)],
        pass_fds=(listener.fileno(),), start_new_session=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=root)
    path.write_text(f"{proc.pid}\n")
    return path


class _Backends:
    def __init__(self, engine_url: str, service: str, target_port: int) -> None:
        import docker

        self.api = docker.APIClient(base_url=engine_url, version="auto", timeout=10)
        self.label = label(service)
        self.port = target_port
        self.addrs: list[str] = []
        self.gone = False
        self._rr = itertools.count()
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Look at the engine; False if it did not answer."""
        try:
            listed: list[dict[str, Any]] = self.api.containers(all=True, filters={"label": self.label})
        except Exception:
            return False
        addrs = []
        for c in listed:
            if c.get("State") != "running":
                continue
            nets = ((c.get("NetworkSettings") or {}).get("Networks") or {}).values()
            ip = next((n.get("IPAddress") for n in nets if n.get("IPAddress")), None)
            if ip:
                addrs.append(ip)
        with self._lock:
            self.addrs = sorted(addrs)
            self.gone = not listed
        return True

    def order(self) -> list[str]:
        """The backends to try for one connection: the next in turn first, then the others."""
        with self._lock:
            addrs = list(self.addrs)
        if not addrs:
            return []
        k = next(self._rr) % len(addrs)
        return addrs[k:] + addrs[:k]


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _serve_one(client: socket.socket, backends: _Backends) -> None:
    for ip in backends.order():
        try:
            upstream = socket.create_connection((ip, backends.port), timeout=3)
        except OSError:
            continue
        upstream.settimeout(None)
        t = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        t.start()
        _pipe(client, upstream)
        t.join()
        upstream.close()
        break
    client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.kube.balancer")
    ap.add_argument("--engine", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--target-port", type=int, required=True)
    a = ap.parse_args(argv)
    listener = socket.socket(fileno=a.fd)
    backends = _Backends(a.engine, a.service, a.target_port)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    def watch() -> None:
        last_ok = time.monotonic()
        while True:
            if backends.refresh():
                last_ok = time.monotonic()
                if backends.gone:
                    os._exit(0)  # every pod it balanced was removed (not by kube down): nothing to serve
            elif time.monotonic() - last_ok > GIVE_UP:
                os._exit(0)
            time.sleep(REFRESH)

    backends.refresh()
    threading.Thread(target=watch, daemon=True).start()
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_serve_one, args=(client, backends), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
