"""The engine daemon: wires the parts together and serves the Engine API.

`portside daemon` runs `Daemon.run_forever()`; the TUI's embedded mode runs the same `Daemon` inside its own
program, either on its loop (`await Daemon(config).start()` ... `await close()`) or on a background thread with
its own loop (`DaemonThread(config).start()` ... `.stop()`).
Reference (moved from docs/architecture.md): Daemon API

`engine/daemon.py` wires the parts and serves the Engine API (`engine/api/`); `portside daemon` (dockerd's flag
names: `-H/--host`, `--data-root`, `--exec-root`, `--pidfile`, `--insecure-registry`, `--registry-mirror`,
`--config-file` daemon.json, `--log-level`, `--tlsverify/--tlscacert/--tlscert/--tlskey`, `-G/--group`) and the
TUI's embedded mode both start it. An exclusive flock on `<data-root>/portside.lock` keeps two engines off one
data root; unix sockets are mode 0660, group `docker` when it exists; `tcp://` only on loopback or with TLS
client verification.

Embedding (the TUI):

```python
from engine.daemon import DaemonConfig, Daemon, DaemonThread

cfg = DaemonConfig(data_root=Path(...), exec_root=Path(...), hosts=["unix:///path/portside.sock"])
# on your own asyncio loop:
d = Daemon(cfg); await d.start(); ...; await d.close()
# or on a background thread with its own loop (returns once the socket answers; raises if it cannot start):
t = DaemonThread(cfg); t.start(); ...; t.stop()      # also a context manager; t.socket_path
# or, with the default paths (/var/lib/portside, /run/portside, unix:///run/portside.sock):
t = engine.daemon.start_in_process(cfg_or_None)       # a started DaemonThread
```

Closing the daemon stops serving; containers keep running under their supervisors and the next engine re-adopts
them. Then talk to it with docker-py: `docker.DockerClient(base_url="unix:///path/portside.sock")`.

Inside `engine/api/`: `server.py` (aiohttp app, `/vX.Y` prefixes 1.24..1.50 checked by a middleware, Docker's
`{"message"}` errors from `engine.errors`, unix/TCP listeners), `hijack.py` (the `101 UPGRADED` raw stream of
attach/exec that survives the client's half-close, the 8-byte stdout/stderr frames, and the detach keys: parsed as
moby/term's ToBytes, watched on a TTY's stdin only), `params.py` (dockerd's
bool/int/filters/timestamp parsing), one module per endpoint group (`system`, `volumes`, `swarm`, ...).
Beside them: `engine/events.py` (the events bus: history for `since`, live subscribers, dockerd's filters),
`engine/volumes.py` (the `local` volume driver: `<data-root>/volumes/<name>/_data`, atomic `meta.json`, copy-up
on first mount, anonymous volumes labelled `com.docker.volume.anonymous`), `engine/store.py` (atomic JSON
records), `engine/ids.py` (64-hex ids, `adjective_surname` names).

Containers (`engine/containers/`): `store.py` (one atomic `config.v2.json` per container under
`<data-root>/containers/<id>/`, Docker's inspect shape plus a private `_portside` section; lookup by id, name or
unique prefix), `shape.py` (defaults, inspect, list summary, status text), `manager.py` (create, start, stop, kill (SIGKILL returns
once the exit is recorded, as dockerd's),
wait, restart policies with Docker's backoff, remove, rename, update, prune, connect/disconnect, re-adoption at
daemon start), `runner.py` (start: container layer mounted on `<exec-root>/bundles/<id>/rootfs`, volume copy-up,
`NetworkService.create_sandbox` and `Runtime.prepare` (all three at once), `spec.build`, `Runtime.create` - early attach calls connect here - then
`Runtime.start`; every step undone when a later one fails; after exit: runtime state, sandbox, mount released),
`exec_adapter.py` (the `Runtime` of engine/exec with its zygote, state in `<exec-root>/rt/<id>`), `logs.py` (json-file reading
with tail/since/until/follow), `logconfig.py` (log drivers json-file (default), local (the same json lines, with
local's 20 MB x 5 rotation) and none (no log; `docker logs` 501): names and options checked at create, values at
each start, with moby's texts), `validate.py` (dockerd's HostConfig and Config checks, at create and on update,
so a bad value is a 400 there and never reaches a syscall: Go's JSON type errors, memory/CPU/cpuset/blkio/pids
ranges, ShmSize, OomScoreAdj, ulimits, sysctl names (a name is a path below /proc/sys: no `..`), tmpfs options as
moby/sys/mount allows them, device modes and paths, device cgroup rules, capability names, security options, the
IPC/PID/UTS/cgroupns modes, ExtraHosts, Dns, mount destinations, Env names, the hostname's 64 bytes; `seccomp=`
is `unconfined`, `builtin` or the profile's JSON, which the docker CLI inlines from a file: the daemon never
reads a path from it), `mountspec.py` (`-v` modes and `--mount` bind options checked at create as moby's
parser does; a bind's Propagation, rprivate by default; the runtime's spec raises the root's propagation for a
shared/slave bind as moby's WithMounts does), `health.py` (healthchecks as dockerd runs them: `Config.Healthcheck`
merged with the image's at create (NONE disables); at each start `State.Health` = starting and one asyncio task
per running, unpaused container execs the CMD / CMD-SHELL probe through the runtime's exec every Interval
(StartInterval within StartPeriod), kills it (its process group) after Timeout, keeps the last 5 results
{Start, End, ExitCode, Output (4 KiB)}, counts FailingStreak up to Retries -> unhealthy, announces
`health_status: X` and the probe's exec_create/exec_start/exec_die events, saves the record on status changes;
`docker commit --change 'HEALTHCHECK ...'` parsed by `parse_instruction`;
stops at exit/pause/engine close, resumes on unpause and for containers re-adopted at engine start; `docker ps`
shows `(health: starting)`/`(healthy)`/`(unhealthy)` and filters `health=`), `archive.py` (docker cp: the root is `/proc/<pid>/root` of a running container, or
its layer mounted for the call with its binds and volumes mounted on top; every path then goes through
engine/images/archive.py's openat2 RESOLVE_IN_ROOT functions, in-process), `stats.py` (cgroup figures, process lists). `--log-level debug` logs when each start step finished.

Parts are started by `engine/parts.py`: runtime, images (`<data-root>/image`, certs.d also read from
`<data-root>/certs.d`), networks (`--bridge`, `--ip-forward`; a non-default bridge gets its own nft table), then
the containers are restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from engine import ids
from engine.config import DaemonConfig
from engine.errors import Conflict, EngineError, Unauthorized
from engine.events import EventBus
from engine.images.auth import decode_registry_auth
from engine.volumes import VolumeStore, dir_size

log = logging.getLogger("portside.daemon")
# pyroute2 logs every netlink message at debug level (kilobytes per container start): --log-level debug is for
# the engine's own steps, so its netlink dumps stay out unless asked for by name
if logging.getLogger("pyroute2").level == logging.NOTSET:
    logging.getLogger("pyroute2").setLevel(logging.INFO)

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
