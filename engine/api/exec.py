"""Exec endpoints: create, start (hijacked or detached), resize, inspect."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

from aiohttp import web

from engine import ids
from engine.api.containers import MUX, RAW, manager
from engine.api.hijack import DetachFilter, detach_keys, frame, hijack
from engine.api.params import api_at_least, go_fields, json_body, qint
from engine.api.server import add, json_response
from engine.containers.manager import ContainerManager
from engine.errors import Conflict, EngineError, InvalidArgument, NotFound

# container.ExecOptions and ExecStartOptions: Go's decoder matches their JSON keys ignoring case
_CREATE_FIELDS = ("User", "Privileged", "Tty", "ConsoleSize", "AttachStdin", "AttachStderr", "AttachStdout",
                  "DetachKeys", "Env", "WorkingDir", "Cmd")
_START_FIELDS = ("Detach", "Tty", "ConsoleSize")
# what dockerd's exec start writes to the client when the detach keys end it: its stdin copy wraps term's
# EscapeError, so ContainerExecStart takes it for a failure and the router prints it (v20.10 to v28)
_DETACHED = b"exec attach failed: error on attach stdin: read escape sequence\r\n"


def _public(ex: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ex.items() if not k.startswith("_")}


def _get(m: ContainerManager, eid: str) -> dict[str, Any]:
    ex = m.execs.get(eid)
    if ex is None:
        raise NotFound(f"No such exec instance: {eid}")
    return ex


async def create(request: web.Request) -> web.Response:
    m = manager(request)
    ref = request.match_info["id"]
    rec = m.get(ref)
    body = go_fields(await json_body(request), _CREATE_FIELDS)
    # dockerd's getActiveContainer (a restarting container counts as running there, so its own text)
    if rec["State"]["Restarting"]:
        raise Conflict(f"Container {rec['Id']} is restarting, wait until the container is running")
    if not rec["State"]["Running"]:
        raise Conflict(f"container {rec['Id']} is not running")
    if rec["State"]["Paused"]:
        raise Conflict(f"Container {ref} is paused, unpause the container before exec")
    cmd = body.get("Cmd") or []
    if isinstance(cmd, str):
        cmd = [cmd]
    if not cmd:
        raise InvalidArgument("No exec command specified")
    spec = body.get("DetachKeys") or ""
    keys = detach_keys(spec)
    if keys is None:
        raise EngineError(f"Invalid escape keys ({spec}) provided")  # dockerd's plain error: a 500, not a 400
    eid = ids.new_id()
    ex: dict[str, Any] = {
        "ID": eid, "Running": False, "ExitCode": None, "ContainerID": rec["Id"], "Pid": 0, "CanRemove": False,
        # dockerd keeps the parsed bytes ([]byte, so base64 in JSON; "" when none were given)
        "DetachKeys": base64.b64encode(keys).decode() if spec else "", "OpenStdin": bool(body.get("AttachStdin")),
        "OpenStderr": bool(body.get("AttachStderr")), "OpenStdout": bool(body.get("AttachStdout")),
        "ProcessConfig": {"tty": bool(body.get("Tty")), "entrypoint": cmd[0], "arguments": cmd[1:],
                          "privileged": bool(body.get("Privileged")), "user": body.get("User") or ""},
        "_config": body, "_keys": keys,
        # dockerd drops a create's console size before API 1.42; a start's own replaces it
        "_console": (body.get("ConsoleSize") or None) if api_at_least(request, "1.42") else None,
    }
    m.add_exec(rec, ex)
    # dockerd's Entrypoint + " " + Args joined: a command without arguments ends in a space
    m.emit(rec, f"exec_create: {cmd[0]} {' '.join(cmd[1:])}", execID=eid)
    return json_response({"Id": eid}, status=201)


async def _launch(m: ContainerManager, ex: dict[str, Any], console: list[int] | None) -> Any:
    """Starts the exec's process; it has a TTY when the exec was created with one (the start's Tty only says how
    the output is sent, as in dockerd), of size `console` ([height, width]) if given."""
    rec = m.get(ex["ContainerID"])
    if not rec["State"]["Running"]:
        raise Conflict(f"container {rec['Id']} is not running")
    if ex["Running"] or ex["ExitCode"] is not None:
        raise Conflict(f"Error: Exec command {ex['ID']} has already run")
    tty = ex["ProcessConfig"]["tty"]
    cfg = dict(ex["_config"], ConsoleSize=console)
    proc = await m.rt.exec(rec["Id"], cfg, rec, tty=tty, stdin=ex["OpenStdin"])
    ex.update(Running=True, Pid=getattr(proc, "pid", 0))
    ex["_proc"] = proc
    cmd = f"{ex['ProcessConfig']['entrypoint']} {' '.join(ex['ProcessConfig']['arguments'])}"
    m.emit(rec, f"exec_start: {cmd}", execID=ex["ID"])
    return proc


async def _finish(m: ContainerManager, ex: dict[str, Any], proc: Any) -> None:
    code = await proc.wait()
    ex.update(Running=False, ExitCode=code, Pid=0)
    # the process's streams and task are done with: a finished exec keeps only its inspect fields
    ex.pop("_proc", None)
    ex.pop("_task", None)
    rec = m.store.find(ex["ContainerID"])
    if rec is not None:
        m.emit(rec, "exec_die", execID=ex["ID"], exitCode=str(code))
        rec["ExecIDs"] = [e for e in rec.get("ExecIDs") or [] if e != ex["ID"]] or None


async def start(request: web.Request) -> web.StreamResponse:
    m = manager(request)
    ex = _get(m, request.match_info["id"])
    body = go_fields(await json_body(request, required=False), _START_FIELDS)
    # Two different TTY settings, as in dockerd: the process has a pty when the exec was *created* with Tty
    # (then its stderr is the pty too, and the pty's line discipline turns \n into \r\n); the *start's* Tty only
    # chooses the stream: raw stdout (stderr dropped) or multiplexed frames. docker-py's exec_start sends Tty
    # false unless told, so an exec created with tty=True comes back framed, \r\n and all, on stdout.
    tty = ex["ProcessConfig"]["tty"]
    raw_out = bool(body.get("Tty"))
    # the start's console size counts with its Tty from API 1.42 on, else the create's (dockerd's order)
    console = body.get("ConsoleSize") if raw_out and api_at_least(request, "1.42") else None
    console = console or ex["_console"]
    if body.get("Detach"):
        proc = await _launch(m, ex, console)
        task = asyncio.create_task(_finish(m, ex, proc))
        ex["_task"] = task
        return web.Response(status=200)
    rec = m.get(ex["ContainerID"])
    if not rec["State"]["Running"]:
        raise Conflict(f"container {rec['Id']} is not running")
    if ex["Running"] or ex["ExitCode"] is not None:
        raise Conflict(f"Error: Exec command {ex['ID']} has already run")
    ctype = RAW if raw_out or not api_at_least(request, "1.42") else MUX
    # Upgrade first, then start the process, as dockerd does: clients that read the 101 through a buffered
    # HTTP parser (docker-py) lose bytes that arrive together with the headers.
    conn = await hijack(request, ctype)
    try:
        proc = await _launch(m, ex, console)
    except EngineError as e:
        code = getattr(e, "exit_code", None)
        ex.update(Running=False, ExitCode=code if code is not None else 126)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            msg = (e.message + "\r\n").encode()
            await conn.write(msg if raw_out else frame(1, msg))
        conn.close()
        return conn.response

    async def to_client() -> None:
        while True:
            item = await proc.read()
            if item is None:
                return
            stream, data = item
            if (stream == 1 and not ex["OpenStdout"]) or (stream == 2 and not ex["OpenStderr"]):
                continue
            if raw_out:
                if stream == 1:  # dockerd's raw stream carries stdout only
                    await conn.write(data)
            else:
                await conn.write(frame(stream, data))

    escape = DetachFilter(ex["_keys"]) if tty else None  # as dockerd: detach keys on a TTY's stdin only

    async def from_client() -> None:
        while True:
            data = await conn.read()
            if not data:
                await proc.close_stdin()
                return
            if escape is not None:
                data = escape.feed(data)
            if data:
                await proc.write(data)
            if escape is not None and escape.detached:
                return  # the client goes, the process runs on

    out_task = asyncio.create_task(to_client())
    in_task = asyncio.create_task(from_client()) if ex["OpenStdin"] else None
    try:
        if in_task is not None and escape is not None:
            await asyncio.wait([out_task, in_task], return_when=asyncio.FIRST_COMPLETED)
            if escape.detached:
                out_task.cancel()
                with contextlib.suppress(BaseException):
                    await out_task
                await conn.write(_DETACHED if raw_out else frame(1, _DETACHED))
                raise ConnectionResetError("detached")
        await out_task
        await _finish(m, ex, proc)
    except (ConnectionResetError, BrokenPipeError):
        ex["_task"] = asyncio.create_task(_finish(m, ex, proc))  # the process outlives the client
    finally:
        if in_task is not None:
            in_task.cancel()
        conn.close()
    return conn.response


async def resize(request: web.Request) -> web.Response:
    m = manager(request)
    ex = _get(m, request.match_info["id"])
    proc = ex.get("_proc")
    if proc is None or not ex["Running"]:
        raise Conflict(f"Exec {ex['ID']} is not running")
    await proc.resize(qint(request, "h", 0) or 0, qint(request, "w", 0) or 0)
    return web.Response(status=200)


async def inspect(request: web.Request) -> web.Response:
    m = manager(request)
    return json_response(_public(_get(m, request.match_info["id"])))


def register(app: web.Application) -> None:
    add(app, "POST", "/containers/{id}/exec", create)
    add(app, "POST", "/exec/{id}/start", start)
    add(app, "POST", "/exec/{id}/resize", resize)
    add(app, "GET", "/exec/{id}/json", inspect)
