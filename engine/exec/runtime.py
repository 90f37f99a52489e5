"""The engine's side of the runtime: `Runtime` runs OCI bundles, each under its own supervisor process.

Everything a container needs to be found again lives in `exec_root/<id>/` (params, state.json, exit.json, the
supervisor's ctl.sock), so a new Runtime in a new process re-adopts containers another one started.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import marshal
import os
import re
import shutil
import signal as _signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict, Unpack

from engine.errors import Conflict, EngineError, InvalidArgument, NotFound
from engine.exec import idrange, seccomp
from engine.exec import protocol as P
from engine.exec.cgroups import Cgroup

_ENGINE_PARENT = str(Path(__file__).resolve().parents[2])
# The supervisor starts without site-packages or the environment (-S -E): a smaller, faster interpreter.
_BOOT = f"import sys; sys.path.insert(0, {_ENGINE_PARENT!r}); from engine.exec.supervisor import main; main()"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")  # \Z, not $: no trailing newline in a path
_START_PREFIX = (
    "failed to create task for container: failed to create shim task: OCI runtime create failed: "
    "portside create failed: unable to start container process: "
)
# an exec's: containerd's runc shim wraps runc exec's error (what dockerd with runc says)
_EXEC_PREFIX = "OCI runtime exec failed: exec failed: unable to start container process: "


class ContainerStartError(InvalidArgument):
    """The container's process could not start; `exit_code` is what Docker records (127, 126 or 128)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _start_error(text: str, code: int | None = None, prefix: str = _START_PREFIX) -> ContainerStartError:
    if code is None:
        code = 127 if ("not found" in text or "no such file" in text) else 126 if "permission denied" in text else 128
    # the init's own failures (an unexpected OSError) already say it: once is runc's wording
    text = text.removeprefix("unable to start container process: ")
    return ContainerStartError(prefix + text + ": unknown", code)


@dataclass
class ContainerState:
    id: str
    status: str  # created | running | paused | exited
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    error: str = ""


def _start_time(pid: int) -> int:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _alive(pid: int, start: int) -> bool:
    return pid > 0 and _start_time(pid) == start and start != 0


async def _open(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    with P.socket_path(str(path)) as name:
        return await asyncio.open_unix_connection(name)


def _connect(s: socket.socket, path: Path) -> None:
    with P.socket_path(str(path)) as name:
        s.connect(name)


class Stream:
    """A two-way stream to a container's (or exec'd process's) stdio through its supervisor.

    `read()` gives `(1 or 2, bytes)` for stdout/stderr and None at the end; `exit_code` is then set when the
    process ended (exec, or attach until the container exits).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pid: int = 0) -> None:
        self.reader = reader
        self.writer = writer
        self.pid = pid
        self.exit_code: int | None = None

    async def read(self) -> tuple[int, bytes] | None:
        while True:
            try:
                head = await self.reader.readexactly(P.HEADER)
                kind, size = P.parse_header(head)
                payload = await self.reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            if kind in (P.STDOUT, P.STDERR):
                return kind, payload
            if kind == P.EXIT:
                self.exit_code = marshal.loads(payload)["exit_code"]
                return None

    async def write(self, data: bytes) -> None:
        self.writer.write(P.frame(P.STDIN, data))
        await self.writer.drain()

    async def close_stdin(self) -> None:
        self.writer.write(P.frame(P.CLOSE_STDIN, b""))
        await self.writer.drain()

    async def resize(self, height: int, width: int) -> None:
        self.writer.write(P.frame(P.RESIZE, marshal.dumps((height, width))))
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()


class Stdio(TypedDict):
    """How a container's stdio is wired and logged: the same for `prepare` and `create`, which must agree."""

    log_path: Path | None  # None: no log (the `none` driver)
    log_max_size: NotRequired[int | None]
    log_max_file: NotRequired[int]
    tty: NotRequired[bool]
    open_stdin: NotRequired[bool]
    stdin_once: NotRequired[bool]


class Runtime:
    """Runs OCI bundles under per-container supervisors; see docs/architecture.md, "Runtime API"."""

    def __init__(
        self, exec_root: Path, cgroup_parent: str = "portside", *, fork_supervisors: bool = True, zygote: bool = False
    ) -> None:
        """`fork_supervisors`: start a new container's supervisor by forking a live one (fast, small, shares its
        memory copy-on-write) rather than starting an interpreter. `zygote`: keep a container-less supervisor to
        fork from while this Runtime lives (until `close()` or the engine's exit), so even the first container
        starts fast; the daemon wants it, tests that do not call `close()` do not."""
        self.exec_root = Path(exec_root)
        self.fork_supervisors = fork_supervisors
        self.zygote = zygote
        self._zygote_path: Path | None = None
        self._zygote_life = -1
        self._zygote_lock = threading.Lock()
        self._bpf: dict[bytes, bytes] = {}
        self._staged: dict[str, tuple[socket.socket, dict[str, Any]]] = {}
        self._bpf_lock = threading.Lock()
        self.cgroup_parent = cgroup_parent.strip("/")
        self.exec_root.mkdir(parents=True, exist_ok=True, mode=0o711)
        self._exits: asyncio.Queue[ContainerState] | None = None
        self._watched: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- paths and files ---

    def _dir(self, cid: str) -> Path:
        if not _ID_RE.match(cid):
            raise InvalidArgument(f"invalid container id: {cid!r}")
        return self.exec_root / cid

    def _existing(self, cid: str) -> Path:
        d = self._dir(cid)
        if not (d / "params").exists():
            raise NotFound(f"No such container: {cid}")
        return d

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except (OSError, ValueError):
            return None

    def _cgroup(self, cid: str) -> Cgroup:
        with open(self._existing(cid) / "params", "rb") as f:
            return Cgroup(marshal.load(f)["cgroup"])

    def list(self) -> builtins.list[str]:
        """The containers found in the exec-root: what a new engine re-adopts."""
        return sorted(p.name for p in self.exec_root.iterdir() if (p / "params").exists())

    # --- life cycle ---

    async def create(self, container_id: str, bundle: Path, *, spec: dict[str, Any] | None = None,
                     **stdio: Unpack[Stdio]) -> int:
        """Starts the supervisor, which creates the container's init and leaves it waiting for `start`.

        The init's set-up (mounts, user, capabilities, seccomp, the executable's look-up) is done here, so a
        missing executable already raises `ContainerStartError` (127) from `create`; nothing is left behind then.
        Returns the init's pid (host view). `spec`: the bundle's config.json when the caller has it at hand.
        """
        d = self._dir(container_id)
        staged = self._staged.pop(container_id, None)
        if staged is None:
            self._make_dir(d)
        try:
            if spec is None:
                spec = json.loads((Path(bundle) / "config.json").read_text())
            try:
                idrange.process_ids(spec.get("process", {}).get("user") or {})
            except ValueError as e:
                raise InvalidArgument(str(e)) from None
            cgroup = spec.get("linux", {}).get("cgroupsPath") or f"{self.cgroup_parent}/{container_id}"
            params = self._params(container_id, bundle, cgroup, stdio)
            pid_ns = next((ns for ns in spec["linux"].get("namespaces") or [] if ns["type"] == "pid"), None)
            params["pidns"] = None if pid_ns is None else pid_ns.get("path") or "new"
            params["resources"] = spec["linux"].get("resources") or {}
            if staged is not None and staged[1] != {**params, "resources": {}}:
                # prepared for another shape (cgroup path, pid namespace, stdio): start over the usual way
                await asyncio.to_thread(self._abandon, d, staged[0])
                self._make_dir(d)
                staged = None
            (d / "spec").write_bytes(marshal.dumps(spec))
            (d / "params").write_bytes(marshal.dumps(params))
            sock = None if staged is None else staged[0]
            return await asyncio.to_thread(self._launch, d, spec["linux"].get("seccomp"), sock)
        except BaseException:
            if staged is not None:
                self._abandon(d, staged[0])  # a no-op once _launch has used (and closed) the socket
            shutil.rmtree(d, ignore_errors=True)
            raise

    def _make_dir(self, d: Path) -> None:
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            raise Conflict(f'Conflict. The container ID "{d.name}" is already in use') from None

    @staticmethod
    def _params(container_id: str, bundle: Path, cgroup: str, stdio: Stdio) -> dict[str, Any]:
        return {
            "id": container_id, "bundle": str(Path(bundle).resolve()), "cgroup": cgroup,
            "log_path": str(stdio["log_path"] or ""), "log_max_size": stdio.get("log_max_size"),
            "log_max_file": stdio.get("log_max_file", 1), "tty": stdio.get("tty", False),
            "open_stdin": stdio.get("open_stdin", False), "stdin_once": stdio.get("stdin_once", False),
            "pidns": "new", "resources": {},
        }  # fmt: skip

    async def prepare(self, container_id: str, bundle: Path, **stdio: Unpack[Stdio]) -> bool:
        """Starts the container's supervisor and init ahead of `create`, before the caller has the spec: the init
        joins the container's cgroup (on cgroup v2 the kernel waits for an RCU grace period, ~10-20 ms) and waits,
        while the caller mounts the rootfs and makes the network. `create` with the same id and arguments then
        finishes it; `discard` gives it up. Returns False when nothing was prepared (no zygote to fork from, or
        another shape than Docker's usual new pid namespace and default cgroup path): `create` does it all."""
        if not (self.zygote and self.fork_supervisors) or container_id in self._staged:
            return False
        d = self._dir(container_id)
        self._make_dir(d)
        try:
            params = self._params(container_id, bundle, f"{self.cgroup_parent}/{container_id}", stdio)
            (d / "params").write_bytes(marshal.dumps(params))
            sock = await asyncio.to_thread(self._stage, d)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        if sock is None:
            shutil.rmtree(d, ignore_errors=True)
            return False
        self._staged[container_id] = (sock, params)
        return True

    async def discard(self, container_id: str) -> None:
        """Gives up a prepared container (see `prepare`); nothing is left. No-op when none is prepared."""
        staged = self._staged.pop(container_id, None)
        if staged is not None:
            await asyncio.to_thread(self._abandon, self._dir(container_id), staged[0])

    def _stage(self, d: Path) -> socket.socket | None:
        z = self._zygote_socket()
        if z is None:
            return None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(30)
            try:
                _connect(s, z)
            except (ConnectionRefusedError, FileNotFoundError):
                self._zygote_gone(z)
                raise
            s.sendall(P.frame(P.CONTROL, marshal.dumps({"op": "spawn", "dir": str(d), "staged": True})))
            got = P.recv_frame(s)
            reply = marshal.loads(got[1]) if got is not None else {}
            if reply.get("prepared") == "P":
                return s
        except (OSError, ValueError, EOFError):
            pass
        self._abandon(d, s)
        return None

    @staticmethod
    def _abandon(d: Path, s: socket.socket) -> None:
        # EOF tells the waiting supervisor to kill its init, remove the cgroup and exit; its hang-up says it did
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            while s.recv(65536):
                pass
        s.close()
        shutil.rmtree(d, ignore_errors=True)

    def close(self) -> None:
        """Ends the zygote (containers and their supervisors keep running)."""
        with self._zygote_lock:
            if self._zygote_life >= 0:
                os.close(self._zygote_life)
                self._zygote_life = -1
                self._zygote_path = None

    def warm(self) -> None:
        """Starts the zygote now (blocking, in the caller's thread) rather than at the first `create`."""
        if self.zygote and self.fork_supervisors:
            self._zygote_socket()

    def _zygote_socket(self) -> Path | None:
        with self._zygote_lock:
            if self._zygote_path is not None and self._zygote_path.exists():
                return self._zygote_path
            if self._zygote_life >= 0:
                os.close(self._zygote_life)
                self._zygote_life = -1
            path = self.exec_root / f"zygote-{os.getpid()}-{id(self):x}.sock"
            life_r, life_w = os.pipe()
            ready_r, ready_w = os.pipe()
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-S", "-E", "-c", _BOOT, "zygote", str(path), str(life_r), str(ready_w)],
                    pass_fds=(life_r, ready_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    cwd="/", close_fds=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                )  # fmt: skip
                os.close(ready_w)
                ready_w = -1
                proc.wait()
                ok = os.read(ready_r, 1) == b"Z"
            finally:
                os.close(life_r)
                os.close(ready_r)
                if ready_w >= 0:
                    os.close(ready_w)
            if not ok:
                os.close(life_w)
                return None
            self._zygote_life = life_w
            self._zygote_path = path
            return path

    def _spawn(self, d: Path) -> str | None:
        """Asks the zygote or a live supervisor of this exec-root to fork the new one; None when none can."""

        def candidates() -> Iterator[Path]:
            if self.zygote:
                z = self._zygote_socket()
                if z is not None:
                    yield z
            # only when the zygote cannot: listing the exec-root costs a look at every container
            for cid in reversed(self.list()):
                if cid != d.name:
                    yield self.exec_root / cid / "ctl.sock"

        for sock_path in candidates():
            if not sock_path.exists():
                continue
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(30)
                    _connect(s, sock_path)
                    s.sendall(P.frame(P.CONTROL, marshal.dumps({"op": "spawn", "dir": str(d)})))
                    buf = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                if len(buf) < P.HEADER:
                    continue
                reply = marshal.loads(buf[P.HEADER : P.HEADER + P.parse_header(buf[: P.HEADER])[1]])
                if "spawned" in reply:
                    return str(reply["spawned"])
            except (ConnectionRefusedError, FileNotFoundError):
                self._zygote_gone(sock_path)
            except (OSError, ValueError, EOFError):
                continue
        return None

    def _zygote_gone(self, path: Path) -> None:
        """The zygote at `path` died (killed): the next create starts a new one."""
        with self._zygote_lock:
            if path == self._zygote_path:
                self._zygote_path = None
                if self._zygote_life >= 0:
                    os.close(self._zygote_life)
                    self._zygote_life = -1
                with contextlib.suppress(OSError):
                    path.unlink()

    def _seccomp_program(self, profile: dict[str, Any]) -> bytes | None:
        """The compiled BPF of a seccomp profile, kept in memory: containers mostly share a few profiles, and the
        init would otherwise hash the profile and read the file cache (or compile it) on the critical path."""
        key = marshal.dumps(profile)
        with self._bpf_lock:
            prog = self._bpf.get(key)
        if prog is None:
            try:
                prog = seccomp.prepare(profile, str(self.exec_root / ".seccomp"))
            except (OSError, ValueError, KeyError, TypeError):
                return None  # the init compiles it and reports the error in runc's words
            with self._bpf_lock:
                if len(self._bpf) >= 16:
                    self._bpf.pop(next(iter(self._bpf)))
                self._bpf[key] = prog
        return prog

    def _launch(self, d: Path, profile: dict[str, Any] | None = None, staged: socket.socket | None = None) -> int:
        if profile:
            prog = self._seccomp_program(profile)
            if prog is not None:
                (d / "seccomp.bpf").write_bytes(prog)
        msg = self._go(staged) if staged is not None else self._spawn(d) if self.fork_supervisors else None
        if msg is None:
            msg = self._start_supervisor(d)
        if msg.startswith("R"):
            return int(msg[1:])
        if msg.startswith("E"):
            raise _start_error(msg[1:])
        log = (d / "supervisor.log").read_text(errors="replace")[-2000:]
        raise EngineError(f"container supervisor failed to start: {log.strip() or 'no output'}")

    @staticmethod
    def _go(s: socket.socket) -> str:
        """Lets a prepared supervisor carry on (the spec and params are written); its "R<pid>"/"E..." reply."""
        try:
            s.settimeout(60)
            s.sendall(P.frame(P.CONTROL, marshal.dumps({"op": "go"})))
            got = P.recv_frame(s)
            reply = marshal.loads(got[1]) if got is not None else {}
        except (OSError, ValueError, EOFError) as e:
            reply = {"spawned": f"Econtainer supervisor failed to start: {e}"}
        finally:
            s.close()
        return str(reply.get("spawned") or "")

    def _start_supervisor(self, d: Path) -> str:
        r, w = os.pipe()
        try:
            with open(d / "supervisor.log", "ab") as errlog:
                proc = subprocess.Popen(
                    [sys.executable, "-S", "-E", "-c", _BOOT, str(d), str(w)],
                    pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog,
                    cwd="/", close_fds=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                )  # fmt: skip
            os.close(w)
            w = -1
            proc.wait()
            chunks = []
            while True:
                b = os.read(r, 65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode(errors="replace")
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)

    def _request_sync(self, cid: str, req: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        d = self._existing(cid)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                _connect(s, d / "ctl.sock")
            except (FileNotFoundError, ConnectionRefusedError):
                raise Conflict(f"container {cid} is not running") from None
            buf = b""
            try:
                s.sendall(P.frame(P.CONTROL, marshal.dumps(req)))
                while True:
                    if len(buf) >= P.HEADER:
                        _kind, size = P.parse_header(buf[: P.HEADER])
                        if len(buf) >= P.HEADER + size:
                            reply: dict[str, Any] = marshal.loads(buf[P.HEADER : P.HEADER + size])
                            return reply
                    chunk = s.recv(65536)
                    if not chunk:
                        raise Conflict(f"container {cid} is not running")
                    buf += chunk
            except (ConnectionResetError, BrokenPipeError):
                # the supervisor hung up mid-request: the container exited (a SIGKILL racing an exit, rm -f),
                # which is a hang-up like any other, not a 500
                raise Conflict(f"container {cid} is not running") from None

    async def _request(self, cid: str, req: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        return await asyncio.to_thread(self._request_sync, cid, req, timeout)

    async def start(self, container_id: str) -> int:
        """Lets the created init execve the command; raises ContainerStartError (126/127) when execve fails."""
        st = self.state(container_id)
        if st.status != "created":
            raise Conflict(f"container {container_id} is already {st.status}")
        reply = await self._request(container_id, {"op": "start"})
        if "error" in reply:
            raise _start_error(reply["error"], reply.get("exit_code"))
        if self._exits is not None:
            # someone listens to exits(): report this one's too. Not otherwise - a daemon waits on each container
            # itself, and the exit states of a queue nobody reads would pile up, one per container ever started.
            self.watch(container_id)
        return int(reply["pid"])

    def state(self, container_id: str) -> ContainerState:
        d = self._existing(container_id)
        st = self._read_json(d / "state.json") or {}
        ex = self._read_json(d / "exit.json")
        if ex is not None:
            return ContainerState(
                container_id, "exited", 0, int(ex.get("exit_code", 0)), bool(ex.get("oom_killed")),
                st.get("started_at"), ex.get("finished_at"), ex.get("error") or "",
            )  # fmt: skip
        pid = int(st.get("pid", 0))
        if not st or not _alive(int(st.get("supervisor_pid", 0)), int(st.get("supervisor_start", 0))):
            if st and _alive(pid, int(st.get("pid_start", 0))):
                # the supervisor died but the container lives on: still running, without logs or exit status
                return ContainerState(container_id, "running", pid, started_at=st.get("started_at"))
            # one last look: the supervisor may have finished between the two reads
            ex = self._read_json(d / "exit.json")
            if ex is not None:
                return self.state(container_id)
            return ContainerState(container_id, "exited", 0, 255, error="container supervisor is gone",
                                  started_at=st.get("started_at"))  # fmt: skip
        status = st.get("status", "created")
        if status == "running" and Cgroup(st["cgroup"]).frozen():
            status = "paused"
        return ContainerState(container_id, status, pid, started_at=st.get("started_at"))

    async def wait(self, container_id: str) -> ContainerState:
        """Returns once the container has exited (at once if it already has)."""
        d = self._existing(container_id)
        while True:
            st = self.state(container_id)
            if st.status == "exited":
                return st
            try:
                reader, writer = await _open(d / "ctl.sock")
            except (FileNotFoundError, ConnectionRefusedError):
                await asyncio.sleep(0.01)
                continue
            try:
                # the supervisor may finish (and hang up) at any point here: then exit.json is there
                with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, OSError):
                    writer.write(P.frame(P.CONTROL, marshal.dumps({"op": "wait"})))
                    await writer.drain()
                    head = await reader.readexactly(P.HEADER)
                    await reader.readexactly(P.parse_header(head)[1])
            finally:
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()

    def watch(self, container_id: str) -> None:
        """Reports this container's exit on `exits()` (once exits() is listened to, started containers are watched
        on their own)."""
        if container_id in self._watched:
            return
        self._watched.add(container_id)
        if self._exits is None:
            self._exits = asyncio.Queue()
        queue = self._exits

        async def watcher() -> None:
            try:
                st = await self.wait(container_id)
            except NotFound:
                return
            finally:
                self._watched.discard(container_id)
            await queue.put(st)

        task = asyncio.get_running_loop().create_task(watcher())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def exits(self) -> AsyncIterator[ContainerState]:
        """Every exit from now on, of the containers started here and of those found in the exec-root."""
        if self._exits is None:
            self._exits = asyncio.Queue()
        for cid in self.list():
            with contextlib.suppress(NotFound):
                if self.state(cid).status in ("running", "paused", "created"):
                    self.watch(cid)
        while True:
            yield await self._exits.get()

    async def kill(self, container_id: str, signal: int = _signal.SIGKILL, all: bool = False) -> None:
        st = self.state(container_id)
        if st.status not in ("running", "paused", "created") or (st.status == "created" and signal != 9):
            raise Conflict(f"Cannot kill container: {container_id}: Container {container_id} is not running")
        try:
            await self._request(container_id, {"op": "kill", "signal": int(signal), "all": all})
        except Conflict:
            if self.state(container_id).status == "exited":
                return
            raise

    async def stop(
        self, container_id: str, signal: int = _signal.SIGTERM, timeout: float | None = 10
    ) -> ContainerState:
        """StopSignal, then SIGKILL after `timeout` seconds (None: wait for ever); returns the exit state."""
        st = self.state(container_id)
        if st.status == "exited":
            return st
        if st.status == "paused":
            await self.resume(container_id)
        with contextlib.suppress(Conflict):
            await self.kill(container_id, signal)
        try:
            return await asyncio.wait_for(self.wait(container_id), timeout)
        except TimeoutError:
            with contextlib.suppress(Conflict):
                await self.kill(container_id, _signal.SIGKILL, all=True)
            return await self.wait(container_id)

    async def pause(self, container_id: str) -> None:
        st = self.state(container_id)
        if st.status == "paused":
            raise Conflict(f"Container {container_id} is already paused")
        if st.status != "running":
            raise Conflict(f"Container {container_id} is not running")
        await asyncio.to_thread(self._cgroup(container_id).freeze)

    async def resume(self, container_id: str) -> None:
        if self.state(container_id).status != "paused":
            raise Conflict(f"Container {container_id} is not paused")
        await asyncio.to_thread(self._cgroup(container_id).thaw)

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Applies Docker's resource fields (the body of POST /containers/{id}/update) to the running cgroup."""
        from engine.exec.spec import resources_from_host_config

        res = resources_from_host_config(resources)
        cg = self._cgroup(container_id)
        try:
            await asyncio.to_thread(cg.set_resources, res)
        except OSError as e:
            raise InvalidArgument(f"Cannot update container {container_id}: {e.strerror or e}") from None

    async def stats(self, container_id: str) -> dict[str, Any]:
        """Docker's stats JSON without `precpu_stats` and `networks` (the caller keeps the previous sample)."""
        self._existing(container_id)
        out = await asyncio.to_thread(self._cgroup(container_id).stats)
        out["id"] = container_id
        return out

    async def top(self, container_id: str, ps_args: str = "-ef") -> dict[str, Any]:
        """Runs ps on the host and keeps the rows of the container's processes, as dockerd does."""
        st = self.state(container_id)
        if st.status not in ("running", "paused"):
            raise Conflict(f"Container {container_id} is not running")
        pids = set(self._cgroup(container_id).procs())
        proc = await asyncio.create_subprocess_exec(
            "ps", *(ps_args.split() if ps_args else ["-ef"]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise EngineError(f"Error running ps: exit status {proc.returncode}: {err.decode(errors='replace')}")
        lines = out.decode(errors="replace").splitlines()
        titles = lines[0].split()
        if "PID" not in titles:
            raise EngineError("Couldn't find PID field in ps output")
        col = titles.index("PID")
        rows = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
                rows.append(fields)
        return {"Titles": titles, "Processes": rows}

    async def resize(self, container_id: str, height: int, width: int) -> None:
        await self._request(container_id, {"op": "resize", "height": height, "width": width})

    async def attach(self, container_id: str, *, stdin: bool = False, stdout: bool = True,
                     stderr: bool = True) -> Stream:  # fmt: skip
        """Output from now on, and the container's stdin when it was created with open_stdin (or a tty)."""
        d = self._existing(container_id)
        try:
            reader, writer = await _open(d / "ctl.sock")
        except (FileNotFoundError, ConnectionRefusedError):
            raise Conflict("You cannot attach to a stopped container, start it first") from None
        writer.write(P.frame(P.CONTROL, marshal.dumps({"op": "attach", "stdin": stdin, "stdout": stdout,
                                                          "stderr": stderr})))  # fmt: skip
        await writer.drain()
        head = await reader.readexactly(P.HEADER)
        reply = marshal.loads(await reader.readexactly(P.parse_header(head)[1]))
        if "error" in reply:
            writer.close()
            raise Conflict(reply["error"])
        return Stream(reader, writer)

    def exec_process(
        self,
        container_id: str,
        args: builtins.list[str],
        *,
        env: builtins.list[str] | None = None,
        user: str = "",
        cwd: str = "",
        tty: bool = False,
        privileged: bool = False,
    ) -> dict[str, Any]:
        """The OCI process for an exec: the container's own, with these args, env, user, cwd and tty."""
        from engine.exec.spec import exec_process

        d = self._existing(container_id)
        with open(d / "params", "rb") as f:
            params = marshal.load(f)
        with open(d / "spec", "rb") as f:
            oci = marshal.load(f)
        return exec_process(oci, Path(params["bundle"]), args, env=env, user=user, cwd=cwd, tty=tty,
                            privileged=privileged)  # fmt: skip

    async def exec(self, container_id: str, process: dict[str, Any], *, stdin: bool = False) -> Stream:
        """Runs `process` (see exec_process) in the container; read the Stream to its end for the exit code."""
        d = self._existing(container_id)
        if self.state(container_id).status != "running":
            raise Conflict(f"Container {container_id} is not running")
        try:
            reader, writer = await _open(d / "ctl.sock")
        except (FileNotFoundError, ConnectionRefusedError):
            raise Conflict(f"Container {container_id} is not running") from None
        writer.write(P.frame(P.CONTROL, marshal.dumps({"op": "exec", "process": process, "stdin": stdin})))
        await writer.drain()
        head = await reader.readexactly(P.HEADER)
        reply = marshal.loads(await reader.readexactly(P.parse_header(head)[1]))
        if "error" in reply:
            writer.close()
            if "exit_code" in reply:
                raise _start_error(reply["error"], reply["exit_code"], _EXEC_PREFIX)
            raise Conflict(reply["error"])
        return Stream(reader, writer, int(reply["pid"]))

    async def delete(self, container_id: str, force: bool = False) -> None:
        """Removes the container's state (and with `force` kills it first); its cgroup goes too."""
        if container_id in self._staged:
            await self.discard(container_id)
            return
        d = self._existing(container_id)
        st = self.state(container_id)
        if st.status in ("running", "paused") and not force:
            raise Conflict(f"cannot remove container {container_id}: container is {st.status}: stop the container "
                           "before removing or force remove")  # fmt: skip
        if st.status != "exited":
            if st.status == "paused":
                await asyncio.to_thread(self._cgroup(container_id).thaw)
            with contextlib.suppress(Conflict):
                await self._request(container_id, {"op": "kill", "signal": 9, "all": True})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wait(container_id), 10)
        cg = self._cgroup(container_id)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(cg.kill_all, 9)
            await asyncio.to_thread(cg.delete)
        shutil.rmtree(d, ignore_errors=True)
