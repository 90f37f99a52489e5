"""The engine daemon: wires the parts together and serves the Engine API.

`portside daemon` runs `Daemon.run_forever()`; the TUI's embedded mode runs the same `Daemon` inside its own
program, either on its loop (`await Daemon(config).start()` ... `await close()`) or on a background thread with
its own loop (`DaemonThread(config).start()` ... `.stop()`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import ids
from engine.errors import Conflict, EngineError, InvalidArgument, Unauthorized
from engine.events import EventBus
from engine.volumes import VolumeStore, dir_size

log = logging.getLogger("portside.daemon")
# pyroute2 logs every netlink message at debug level (kilobytes per container start): --log-level debug is for
# the engine's own steps, so its netlink dumps stay out unless asked for by name
if logging.getLogger("pyroute2").level == logging.NOTSET:
    logging.getLogger("pyroute2").setLevel(logging.INFO)

DEFAULT_DATA_ROOT = Path("/var/lib/portside")
DEFAULT_EXEC_ROOT = Path("/run/portside")
DEFAULT_HOST = "unix:///run/portside.sock"

# daemon.json keys we take, mapped to DaemonConfig fields (dockerd's names).
_FILE_KEYS = {
    "data-root": "data_root", "exec-root": "exec_root", "hosts": "hosts", "pidfile": "pidfile",
    "insecure-registries": "insecure_registries", "registry-mirrors": "registry_mirrors", "log-level": "log_level",
    "tlsverify": "tlsverify", "tlscacert": "tlscacert", "tlscert": "tlscert", "tlskey": "tlskey", "group": "group",
    "bridge": "bridge", "ip-forward": "ip_forward", "cgroup-parent": "cgroup_parent",
}


@dataclass
class DaemonConfig:
    data_root: Path = DEFAULT_DATA_ROOT
    exec_root: Path = DEFAULT_EXEC_ROOT
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_HOST])
    pidfile: Path | None = None
    insecure_registries: list[str] = field(default_factory=list)
    registry_mirrors: list[str] = field(default_factory=list)
    log_level: str = "info"
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    group: str = "docker"
    bridge: str = "portside0"  # dockerd's -b/--bridge: the default bridge's name
    ip_forward: bool = True  # dockerd's --ip-forward
    cgroup_parent: str = "portside"  # dockerd's --cgroup-parent: containers' cgroups go below it

    @classmethod
    def merge_file(cls, cfg: DaemonConfig, path: Path, flags_given: set[str]) -> DaemonConfig:
        """Fold a daemon.json into `cfg`; a directive both in the file and on the command line is an error."""
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise InvalidArgument(f"unable to configure the Docker daemon with file {path}: {e}") from None
        except ValueError as e:
            raise InvalidArgument(f"unable to configure the Docker daemon with file {path}: {e}") from None
        unknown = sorted(k for k in data if k not in _FILE_KEYS)
        if unknown:
            raise InvalidArgument(
                f"the following directives don't match any configuration option: {', '.join(unknown)}"
            )
        both = sorted(k for k in data if _FILE_KEYS[k] in flags_given)
        if both:
            raise InvalidArgument(
                "the following directives are specified both as a flag and in the configuration file: "
                + ", ".join(f"{k}: (from flag: {getattr(cfg, _FILE_KEYS[k])}, from file: {data[k]})" for k in both)
            )
        for k, v in data.items():
            attr = _FILE_KEYS[k]
            if attr in ("data_root", "exec_root", "pidfile"):
                v = Path(v)
            setattr(cfg, attr, v)
        return cfg


class DataRootLock:
    """An exclusive flock on `<data-root>/portside.lock`, so two engines never share a data root."""

    def __init__(self, data_root: Path) -> None:
        self.path = data_root / "portside.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise Conflict(
                f"data root {self.path.parent} is in use by another portside engine (pid {holder or '?'})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Daemon:
    """The engine: the parts, the records, and the API server on the configured hosts."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.events = EventBus()
        self._lock = DataRootLock(config.data_root)
        self.volumes: VolumeStore = None  # type: ignore[assignment]  # set by start()
        self.engine_id = ""
        self.images: Any = None
        self.networks: Any = None
        self.runtime: Any = None
        self.containers: Any = None
        self.builder: Any = None
        self._server: Any = None
        self._stopped = asyncio.Event()
        self._started = False

    # -- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        from engine.api.server import ApiServer, TlsOptions

        cfg = self.config
        from engine import mallopt

        mallopt.tune()  # before the parts' worker threads make their heaps
        self._lock.acquire()
        try:
            cfg.data_root.mkdir(parents=True, exist_ok=True, mode=0o711)
            cfg.exec_root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.engine_id = self._load_engine_id()
            self.volumes = VolumeStore(cfg.data_root / "volumes")
            await self._start_parts()
            tls = TlsOptions(cfg.tlsverify, cfg.tlscacert, cfg.tlscert, cfg.tlskey)
            self._server = ApiServer(self, cfg.hosts, tls)
            await self._server.start()
            if cfg.pidfile:
                cfg.pidfile.parent.mkdir(parents=True, exist_ok=True)
                cfg.pidfile.write_text(f"{os.getpid()}\n")
        except BaseException:
            await self._stop_parts()
            self._lock.release()
            raise
        self._started = True
        log.info("portside engine listening on %s", ", ".join(cfg.hosts))

    async def close(self) -> None:
        """Stop serving; containers keep running and a later engine re-adopts them."""
        if self._server is not None:
            await self._server.close()
            self._server = None
        await self._stop_parts()
        if self.config.pidfile and self._started:
            with contextlib.suppress(FileNotFoundError):
                self.config.pidfile.unlink()
        self._lock.release()
        self._started = False
        self._stopped.set()

    async def run_forever(self) -> None:
        """Start, serve until SIGTERM/SIGINT, close."""
        loop = asyncio.get_running_loop()
        from engine import memtrace

        memtrace.install(loop)
        await self.start()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await self.close()

    def _load_engine_id(self) -> str:
        p = self.config.data_root / "engine-id"
        with contextlib.suppress(OSError):
            v = p.read_text().strip()
            if v:
                return v
        raw = ids.new_id()[:48].upper()
        v = ":".join(raw[i : i + 4] for i in range(0, 48, 4))  # dockerd's key-id shape
        p.write_text(v + "\n")
        return v

    async def _start_parts(self) -> None:
        """Start images, networks, runtime and containers when those parts exist in this tree."""
        from engine import parts

        await parts.start(self)

    async def _stop_parts(self) -> None:
        from engine import parts

        await parts.stop(self)

    # -- figures used by /info and /system/df -------------------------------------------------------------------
    def container_counts(self) -> dict[str, int]:
        if self.containers is None:
            return {"total": 0, "running": 0, "paused": 0, "stopped": 0}
        return self.containers.counts()  # type: ignore[no-any-return,unused-ignore]

    def image_count(self) -> int:
        if self.images is None:
            return 0
        try:
            return len(self.images.list())
        except Exception:
            return 0

    async def disk_usage(self, types: list[str]) -> dict[str, Any]:
        want = set(types) or {"container", "image", "volume", "build-cache"}
        out: dict[str, Any] = {"LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": []}
        if "volume" in want and self.volumes is not None:
            out["Volumes"] = await asyncio.to_thread(self.volumes.list, True)
        if "container" in want and self.containers is not None:
            out["Containers"] = await self.containers.disk_usage()
        if "image" in want and self.images is not None:
            imgs, layers = await self._image_usage()
            out["Images"], out["LayersSize"] = imgs, layers
        if "build-cache" in want and self.builder is not None:
            out["BuildCache"] = await asyncio.to_thread(self.builder.cache_records)
        return out

    async def _image_usage(self) -> tuple[list[dict[str, Any]], int]:
        from engine import parts

        return await parts.image_usage(self)

    async def login(self, username: str, password: str, server: str, token: str) -> str:
        from engine.registry_login import login

        return await login(self, username, password, server, token)


def decode_registry_auth(header: str) -> dict[str, Any]:
    """X-Registry-Auth: base64url JSON of {username, password, serveraddress, identitytoken}."""
    if not header:
        return {}
    try:
        pad = "=" * (-len(header) % 4)
        data = json.loads(base64.urlsafe_b64decode(header + pad))
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


class DaemonThread:
    """The daemon on a background thread with its own event loop, for programs that are not asyncio-aware
    (or whose loop must not carry the engine's work): `start()` returns once the socket answers."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.daemon: Daemon | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._run, name="portside-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise EngineError("the embedded portside engine did not start in time")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.daemon = Daemon(self.config)
        try:
            await self.daemon.start()
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.daemon.close()

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def socket_path(self) -> str:
        """The first unix socket served (what a client connects to)."""
        for h in self.config.hosts:
            if h.startswith("unix://"):
                return h[len("unix://") :]
        return ""

    def __enter__(self) -> DaemonThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_process(config: DaemonConfig | None = None) -> DaemonThread:
    """The TUI's embedded engine: a daemon on a background thread (default paths and socket unless told);
    returns once it serves. `.socket_path` is where to connect, `.stop()` ends it (containers keep running)."""
    t = DaemonThread(config or DaemonConfig())
    t.start()
    return t


def volume_size(path: Path) -> int:
    return dir_size(path)


__all__ = ["Daemon", "DaemonConfig", "DaemonThread", "Unauthorized", "decode_registry_auth", "start_in_process"]
