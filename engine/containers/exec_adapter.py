"""The adapter from the container manager to engine/exec's `Runtime` (OCI bundles under per-container
supervisors). Bundles live in `<exec-root>/bundles/<id>`, the runtime's own state in `<exec-root>/rt/<id>`.

The runtime keeps a zygote (a container-less supervisor to fork new ones from) while the engine runs: without
it, a `docker run` with no other container alive pays a Python interpreter's start-up and imports."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.containers.logconfig import log_file
from engine.errors import Conflict, NotFound

if TYPE_CHECKING:
    from engine.containers.host import RuntimeHost
    from engine.exec.runtime import Stdio

def _stdio(tty: bool, stdin: bool, stdin_once: bool, log_path: Path, log_config: dict[str, Any]) -> Stdio:
    lf = log_file(log_config)
    return {"log_path": log_path if lf.enabled else None, "log_max_size": lf.max_size, "log_max_file": lf.max_file,
            "tty": tty, "open_stdin": stdin, "stdin_once": stdin_once}


class ExecProcess:
    """An exec'd process: its stdio stream, its pid, and its exit code once the stream ended."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.pid = int(getattr(stream, "pid", 0))
        self._ended = False

    async def read(self) -> tuple[int, bytes] | None:
        item: tuple[int, bytes] | None = await self.stream.read()
        if item is None:
            self._ended = True
        return item

    async def write(self, data: bytes) -> None:
        await self.stream.write(data)

    async def close_stdin(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            await self.stream.close_stdin()

    async def resize(self, h: int, w: int) -> None:
        await self.stream.resize(h, w)

    async def wait(self) -> int:
        while not self._ended:
            await self.read()
        code = self.stream.exit_code
        await self.stream.close()
        return int(code) if code is not None else 255


def _write_config(bundle: Path, spec: dict[str, Any]) -> None:
    (bundle / "config.json").write_text(json.dumps(spec))


class ExecRuntime:
    def __init__(self, daemon: RuntimeHost) -> None:
        runtime_mod = importlib.import_module("engine.exec.runtime")
        self.exec_root = daemon.config.exec_root
        self.rt = runtime_mod.Runtime(self.exec_root / "rt", cgroup_parent=daemon.config.cgroup_parent,
                                      zygote=True)
        # the zygote's interpreter starts while the engine finishes its own start, not at the first container
        threading.Thread(target=self.rt.warm, name="portside-zygote", daemon=True).start()

    async def close(self) -> None:
        """Ends the zygote; containers keep running under their supervisors."""
        await asyncio.to_thread(self.rt.close)

    def bundle(self, cid: str) -> Path:
        return self.exec_root / "bundles" / cid

    async def create(self, cid: str, bundle: Path, spec: dict[str, Any], *, tty: bool, stdin: bool,
                     stdin_once: bool = False, log_path: Path, log_config: dict[str, Any]) -> int:
        # the OCI bundle as runc would take it; the runtime gets the spec as it is (no read back), so the file is
        # written (on a thread, encoding included) while the init sets the container up; no fsync: the bundle
        # lives in the exec-root, which is about live processes only
        written = asyncio.ensure_future(asyncio.to_thread(_write_config, bundle, spec))
        try:
            pid: int = await self.rt.create(cid, bundle, spec=spec,
                                            **_stdio(tty, stdin, stdin_once, log_path, log_config))
        except BaseException:
            with contextlib.suppress(Exception):
                await written  # the create's error is the one to report
            raise
        await written  # a disk full here fails the start as it did before the create
        return pid

    async def prepare(self, cid: str, bundle: Path, *, tty: bool, stdin: bool, stdin_once: bool = False,
                      log_path: Path, log_config: dict[str, Any]) -> None:
        """Starts the container's supervisor while the caller makes its rootfs and network (see Runtime.prepare);
        `create` with the same arguments finishes it, `discard` drops it."""
        await self.rt.prepare(cid, bundle, **_stdio(tty, stdin, stdin_once, log_path, log_config))

    async def discard(self, cid: str) -> None:
        await self.rt.discard(cid)

    async def start(self, cid: str) -> int:
        pid: int = await self.rt.start(cid)
        return pid

    async def wait(self, cid: str) -> tuple[int, bool]:
        st = await self.rt.wait(cid)
        return int(st.exit_code), bool(st.oom_killed)

    async def alive(self, cid: str) -> bool:
        try:
            return bool(self.rt.state(cid).status in ("running", "paused"))
        except (NotFound, Conflict, ValueError):
            return False

    async def exit_code(self, cid: str) -> int | None:
        try:
            st = self.rt.state(cid)
        except (NotFound, Conflict, ValueError):
            return None
        return int(st.exit_code) if st.status == "exited" else None

    async def kill(self, cid: str, signum: int, all_: bool = False) -> None:
        await self.rt.kill(cid, signum, all=all_)

    async def pause(self, cid: str) -> None:
        await self.rt.pause(cid)

    async def unpause(self, cid: str) -> None:
        await self.rt.resume(cid)

    async def resize(self, cid: str, h: int, w: int) -> None:
        await self.rt.resize(cid, h, w)

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        await self.rt.update(cid, resources)

    async def delete(self, cid: str) -> None:
        with contextlib.suppress(NotFound):
            await self.rt.delete(cid, force=True)

    async def attach(self, cid: str, *, stdin: bool, stdout: bool, stderr: bool) -> Any:
        return await self.rt.attach(cid, stdin=stdin, stdout=stdout, stderr=stderr)

    async def exec(self, cid: str, cfg: dict[str, Any], rec: dict[str, Any], *, tty: bool, stdin: bool) -> ExecProcess:
        cmd = cfg.get("Cmd") or []
        process = self.rt.exec_process(cid, list(cmd), env=cfg.get("Env") or None, user=cfg.get("User") or "",
                                       cwd=cfg.get("WorkingDir") or "", tty=tty,
                                       privileged=bool(cfg.get("Privileged")))
        size = cfg.get("ConsoleSize") or [0, 0]
        if tty and (size[0] or size[1]):  # the pty starts at this size (Docker's [height, width])
            process["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
        stream = await self.rt.exec(cid, process, stdin=stdin)
        return ExecProcess(stream)

    async def stats(self, cid: str) -> dict[str, Any]:
        out: dict[str, Any] = await self.rt.stats(cid)
        return out

    async def top(self, cid: str, ps_args: str) -> dict[str, Any]:
        out: dict[str, Any] = await self.rt.top(cid, ps_args)
        return out
