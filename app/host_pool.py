"""Connections to the last few hosts, kept open so switching back to one is instant.

Each `HostConnection` owns a daemon thread: connect with a short timeout (so an unreachable host says why within
seconds, never hangs), follow `/events`, and when the host goes away or cannot be reached, say why and try again
after a growing pause (a `retry()` tries at once). The pool holds at most `size` of them, least recently used
first out. No Textual here: the app turns the callbacks into messages.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app import endpoint as endpoints
from app.hosts import CONNECT_TIMEOUT, Host, HostState, describe_error

if TYPE_CHECKING:
    from app.engine_client import EngineClient

POOL_SIZE = 4
RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0, 15.0)  # seconds between attempts at an unreachable host

# Callbacks, called on the connection's thread.
OnChange = Callable[["HostConnection"], None]
OnEvent = Callable[["HostConnection", dict[str, Any]], None]


def probe(ep: endpoints.Endpoint, timeout: float = CONNECT_TIMEOUT) -> dict[str, Any]:
    """`GET /version` with a short timeout, before the long-lived clients are made: docker-py's version="auto"
    would ask with the call timeout (a minute) and hang the switcher on a host that accepts and never answers."""
    import docker

    from app.engine_client import own_ca

    api = docker.APIClient(base_url=ep.url, version="1.24", timeout=timeout, tls=ep.tls or False)
    own_ca(api, ep.tls)
    try:
        version: dict[str, Any] = api.version(api_version=False)
    finally:
        with contextlib.suppress(Exception):
            api.close()
    return version


class HostConnection:
    def __init__(self, host: Host, resolve: Callable[[Host], endpoints.Endpoint], on_change: OnChange,
                 on_event: OnEvent, timeout: float = CONNECT_TIMEOUT) -> None:
        self.host = host
        self.status = HostState("connecting")
        self.engine: EngineClient | None = None
        self.endpoint: endpoints.Endpoint | None = None
        self.connections = 0  # successful connections so far (a screen loads its list once per connection)
        self.failures = 0  # attempts failed in a row (the pause before the next one grows with them)
        self._resolve = resolve
        self._on_change = on_change
        self._on_event = on_event
        self._timeout = timeout
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._events: Any = None
        self.thread = threading.Thread(target=self._run, name=f"portside-host-{host.name}", daemon=True)

    @property
    def connected(self) -> bool:
        return self.status.state == "connected" and self.engine is not None

    def start(self) -> None:
        self.thread.start()

    def retry(self) -> None:
        """Try again now rather than after the pause."""
        self._wake.set()

    def close(self) -> None:
        """End the thread: the event stream is closed, the clients too. An embedded engine is left to the app."""
        self._closed.set()
        self._wake.set()
        stream = self._events
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        if self.engine is not None:
            self.engine.close()

    def _set(self, state: str, reason: str = "", version: dict[str, Any] | None = None) -> None:
        self.status = HostState(state, reason, version or {})
        if not self._closed.is_set():
            self._on_change(self)

    def _pause(self, seconds: float | None) -> bool:
        """Wait before the next attempt; True when the connection was closed meanwhile."""
        self._wake.wait(seconds)
        self._wake.clear()
        return self._closed.is_set()

    def _run(self) -> None:
        from app.engine_client import EngineClient

        while not self._closed.is_set():
            try:
                if self.endpoint is None:
                    self.endpoint = self._resolve(self.host)
                version = probe(self.endpoint, self._timeout)
                engine = EngineClient(self.endpoint, version=str(version.get("ApiVersion") or "auto"))
                stream = engine.events()
            except endpoints.NoEngine as exc:
                # nothing to retry by itself (the embedded engine needs root, or would not start): a retry() asks
                self._set("unavailable", str(exc))
                if self._pause(None):
                    return
                continue
            except Exception as exc:
                tls = self.endpoint.tls if self.endpoint is not None else None
                self._set("unreachable", describe_error(exc, self._timeout, tls))
                self.failures += 1
                if self._pause(RETRY_PAUSES[min(self.failures - 1, len(RETRY_PAUSES) - 1)]):
                    return
                continue
            if self._closed.is_set():
                engine.close()
                stream.close()
                return
            self.failures = 0
            old, self.engine, self._events = self.engine, engine, stream
            if old is not None:
                old.close()
            self.connections += 1
            self._set("connected", version=version)
            try:
                for event in stream:
                    self._on_event(self, event)
                reason = "the engine closed the event stream"
            except Exception as exc:
                reason = f"the engine stopped answering ({describe_error(exc, self._timeout)})"
            if self._closed.is_set():
                return
            self._set("unreachable", reason)
            if self._pause(0.5):
                return


class HostPool:
    """The open connections, most recently used last; opening one more than `size` closes the oldest."""

    def __init__(self, resolve: Callable[[Host], endpoints.Endpoint], on_change: OnChange, on_event: OnEvent,
                 size: int = POOL_SIZE, timeout: float = CONNECT_TIMEOUT) -> None:
        self.size = size
        self._resolve = resolve
        self._on_change = on_change
        self._on_event = on_event
        self._timeout = timeout
        self._lock = threading.Lock()
        self._open: OrderedDict[str, HostConnection] = OrderedDict()
        self.last_state: dict[str, HostState] = {}  # hosts that left the pool keep what was last known

    def get(self, name: str) -> HostConnection | None:
        with self._lock:
            return self._open.get(name)

    def open(self, host: Host) -> HostConnection:
        """The host's connection, made (and started) if it is not open; it becomes the most recently used."""
        evicted: list[HostConnection] = []
        with self._lock:
            conn = self._open.get(host.name)
            if conn is not None and conn.host != host:  # the same name now means another host (edited)
                evicted.append(self._open.pop(host.name))
                conn = None
            if conn is None:
                conn = HostConnection(host, self._resolve, self._changed, self._on_event, self._timeout)
                self._open[host.name] = conn
                conn.start()
            self._open.move_to_end(host.name)
            while len(self._open) > self.size:
                evicted.append(self._open.popitem(last=False)[1])
        for old in evicted:
            self.last_state[old.host.name] = old.status
            old.close()
        return conn

    def close(self, name: str) -> None:
        with self._lock:
            conn = self._open.pop(name, None)
        if conn is not None:
            conn.close()

    def _changed(self, conn: HostConnection) -> None:
        self.last_state[conn.host.name] = conn.status
        self._on_change(conn)

    def connections(self) -> list[HostConnection]:
        with self._lock:
            return list(self._open.values())

    def state(self, name: str) -> HostState:
        conn = self.get(name)
        return conn.status if conn is not None else self.last_state.get(name, HostState())

    def close_all(self) -> None:
        with self._lock:
            conns, self._open = list(self._open.values()), OrderedDict()
        for c in conns:
            c.close()
