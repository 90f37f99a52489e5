"""Container endpoints: create, list, inspect, lifecycle, wait, logs, attach, rename, update, prune."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from engine.api.hijack import STDERR, STDOUT, DetachFilter, detach_keys, frame, hijack
from engine.api.networks import check_container_links, container_networking, register_container_links
from engine.api.params import api_at_least, check_filters, filters, json_body, qbool, qint, timestamp_ns
from engine.api.server import add, daemon_of, json_response
from engine.containers import logconfig, shape
from engine.containers import logs as jsonlog
from engine.containers.manager import ContainerManager
from engine.errors import Conflict, EngineError, InvalidArgument, NotModified

log = logging.getLogger("portside.api")

RAW = "application/vnd.docker.raw-stream"
MUX = "application/vnd.docker.multiplexed-stream"


class ReadLogsNotSupported(EngineError):
    """moby's logger.ErrReadLogsNotSupported: a 501."""

    status = 501


def manager(request: web.Request) -> ContainerManager:
    m: ContainerManager | None = daemon_of(request).containers
    if m is None:
        raise EngineError("containers are not available in this engine")
    return m


async def create(request: web.Request) -> web.Response:
    m = manager(request)
    body = await json_body(request)
    hc = body.get("HostConfig")
    if isinstance(hc, dict) and hc.get("ConsoleSize") and not api_at_least(request, "1.42"):
        hc["ConsoleSize"] = [0, 0]  # dockerd's router: not respected on Linux before API 1.42
    name = request.query.get("name", "")
    net_warnings = container_networking(body, api_at_least(request, "1.44"))  # MAC address rules (dockerd's router)
    links = check_container_links(m, body)  # legacy links: the children must exist (dockerd's registerLinks)
    cid, warnings = await m.create(body, name, request.query.get("platform", ""))
    register_container_links(m, cid, links)
    return json_response({"Id": cid, "Warnings": [*warnings, *net_warnings]}, status=201)


async def list_containers(request: web.Request) -> web.Response:
    m = manager(request)
    f = filters(request)
    check_filters(f, {"ancestor", "before", "expose", "exited", "health", "id", "isolation", "is-task", "label",
                      "name", "network", "publish", "since", "status", "volume"})
    for s in f.get("status", []):
        if s not in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
            raise InvalidArgument(f"invalid filter 'status={s}'")
    for s in f.get("health", []):
        if s not in ("starting", "healthy", "unhealthy", "none"):
            raise InvalidArgument(f"Unrecognised filter value for health: {s}")
    out = await asyncio.to_thread(
        m.list_containers, qbool(request, "all"), qint(request, "limit"), qbool(request, "size"), f
    )
    return json_response(out)


async def inspect(request: web.Request) -> web.Response:
    m = manager(request)
    rec = m.get(request.match_info["id"])
    out = shape.inspect(rec)
    if qbool(request, "size"):
        out["SizeRw"], out["SizeRootFs"] = await asyncio.to_thread(m.sizes, rec)
    return json_response(out)


async def start(request: web.Request) -> web.Response:
    m = manager(request)
    try:
        await m.start(request.match_info["id"])
    except NotModified:
        return web.Response(status=304)
    return web.Response(status=204)


async def stop(request: web.Request) -> web.Response:
    m = manager(request)
    try:
        await m.stop(request.match_info["id"], qint(request, "t"), request.query.get("signal") or None)
    except NotModified:
        return web.Response(status=304)
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    await manager(request).restart(request.match_info["id"], qint(request, "t"), request.query.get("signal") or None)
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    ref = request.match_info["id"]
    try:
        await manager(request).kill(ref, request.query.get("signal") or None)
    except EngineError as e:
        # dockerd's router wraps every kill error (its status kept): "cannot kill container: NAME: ..."
        prefix = f"cannot kill container: {ref}: "
        if not e.message.startswith(prefix):
            e.message = prefix + e.message
            e.args = (e.message,)
        raise
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    await manager(request).pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await manager(request).unpause(request.match_info["id"])
    return web.Response(status=204)


async def wait(request: web.Request) -> web.StreamResponse:
    m = manager(request)
    rec = m.get(request.match_info["id"])
    condition = request.query.get("condition", "not-running")
    if condition not in ("not-running", "next-exit", "removed", ""):
        raise InvalidArgument(f"invalid condition: \"{condition}\"")
    # Arm the events before answering, so an exit between headers and the wait is not missed.
    waiter = asyncio.ensure_future(m.wait(rec, condition))
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    try:
        await resp.prepare(request)  # the headers now: `docker run` waits for them before it starts
        result = await waiter
    finally:
        waiter.cancel()
    await resp.write(json.dumps(result).encode() + b"\n")
    return resp


async def remove(request: web.Request) -> web.Response:
    await manager(request).remove(request.match_info["id"], qbool(request, "force"), qbool(request, "v"),
                                  qbool(request, "link"))
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    new = request.query.get("name", "")
    if not new:
        raise InvalidArgument("Neither old nor new names may be empty")
    await manager(request).rename(request.match_info["id"], new)
    return web.Response(status=204)


async def update(request: web.Request) -> web.Response:
    warnings = await manager(request).update(request.match_info["id"], await json_body(request))
    return json_response({"Warnings": warnings})


async def prune(request: web.Request) -> web.Response:
    f = filters(request)
    check_filters(f, {"until", "label", "label!"})
    return json_response(await manager(request).prune(f))


async def resize(request: web.Request) -> web.Response:
    m = manager(request)
    rec = m.get(request.match_info["id"])
    h, w = qint(request, "h", 0) or 0, qint(request, "w", 0) or 0
    if not rec["State"]["Running"]:
        raise Conflict(f"Container {rec['Id']} is not running")
    await m.rt.resize(rec["Id"], h, w)
    return web.Response(status=200)


# -- logs ---------------------------------------------------------------------------------------------------------
def _log_format(rec: dict[str, Any], request: web.Request) -> tuple[bool, str]:
    tty = bool(rec["Config"].get("Tty"))
    ctype = RAW if tty or not api_at_least(request, "1.42") else MUX
    return tty, ctype


async def container_logs(request: web.Request) -> web.StreamResponse:
    m = manager(request)
    rec = m.get(request.match_info["id"])
    want_out, want_err = qbool(request, "stdout"), qbool(request, "stderr")
    if not (want_out or want_err):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    driver = (rec["HostConfig"].get("LogConfig") or {}).get("Type") or logconfig.DEFAULT_DRIVER
    if driver not in logconfig.READABLE:
        raise ReadLogsNotSupported("configured logging driver does not support reading")
    follow, stamps = qbool(request, "follow"), qbool(request, "timestamps")
    since = timestamp_ns(request.query.get("since", "")) or 0
    until = timestamp_ns(request.query.get("until", ""))
    tail_raw = request.query.get("tail", "all")
    tail = None if tail_raw in ("", "all") else int(tail_raw) if tail_raw.lstrip("-").isdigit() else None
    tty, ctype = _log_format(rec, request)
    resp = web.StreamResponse(status=200)
    resp.content_type = ctype
    await resp.prepare(request)
    path = m.log_path(rec["Id"])
    cid = rec["Id"]
    # Whether to follow is decided before the file is read: a container that exits while it is read has
    # written its last lines after that read, and the follow below drains them (docker-py's run() reads the
    # output this way right after the start: a check after the read lost the last line now and then).
    exited = m.exit_event(cid) if (m.store.find(cid) or rec)["State"]["Running"] else None
    entries, offset = await asyncio.to_thread(jsonlog.read_entries, path, tail)

    async def emit(entry: jsonlog.Entry) -> bool:
        stream, data, ts = entry
        if ts < since:
            return True
        if until is not None and ts > until:
            return False
        if (stream == "stdout" and not want_out) or (stream == "stderr" and not want_err):
            return True
        if stamps:
            data = jsonlog.format_time_ns(ts).encode() + b" " + data
        await resp.write(data if tty else frame(STDERR if stream == "stderr" else STDOUT, data))
        return True

    for e in entries:
        if not await emit(e):
            return resp
    if follow and exited is not None:
        def done() -> bool:
            return exited.is_set() or m.store.find(cid) is None

        async for e in jsonlog.follow(path, offset, done):
            if not await emit(e):
                break
    return resp


# -- attach -------------------------------------------------------------------------------------------------------
async def _pump_attach(request: web.Request, m: ContainerManager, rec: dict[str, Any], stdin: bool, stdout: bool,
                       stderr: bool, logs: bool, stream: bool, write: Any, read: Any, keys: bytes) -> None:
    """Shared by the hijacked and websocket attach: replay logs, wait for the start, then pump both ways.
    `keys`: the detach sequence, watched for on stdin when the container has a TTY."""
    cid = rec["Id"]
    tty = bool(rec["Config"].get("Tty"))
    if logs:
        entries, _ = await asyncio.to_thread(jsonlog.read_entries, m.log_path(cid), None)
        for s, data, _ts in entries:
            if (s == "stdout" and stdout) or (s == "stderr" and stderr):
                await write(data if tty else frame(STDERR if s == "stderr" else STDOUT, data))
    m.emit(rec, "attach")  # after the logs, also for an attach without a stream, as dockerd's containerAttach
    if not stream:
        return
    att = await m.attach(cid, stdin=stdin, stdout=stdout, stderr=stderr)
    if att is None:
        return  # the container is gone or exited before it ever ran

    async def to_client() -> None:
        while True:
            item = await att.read()
            if item is None:
                return
            s, data = item
            await write(data if tty else frame(s, data))

    escape = DetachFilter(keys) if tty and keys else None
    detached = asyncio.Event()

    async def from_client() -> None:
        while True:
            data = await read()
            if not data:
                if rec["Config"].get("StdinOnce"):
                    await att.close_stdin()
                return
            if escape is not None:
                data = escape.feed(data)
            if data:
                await att.write(data)
            if escape is not None and escape.detached:
                detached.set()
                return

    out_task = asyncio.create_task(to_client())
    in_task = asyncio.create_task(from_client()) if stdin else None
    det_task = asyncio.create_task(detached.wait())
    try:
        await asyncio.wait([out_task, det_task], return_when=asyncio.FIRST_COMPLETED)
        if detached.is_set():
            log.debug("detached from %s", cid[:12])
            m.emit(rec, "detach")
            out_task.cancel()
            with contextlib.suppress(BaseException):
                await out_task
        else:
            await out_task
    finally:
        det_task.cancel()
        if in_task is not None:
            in_task.cancel()
            with contextlib.suppress(BaseException):
                await in_task
        await att.close()


def _attach_keys(request: web.Request) -> bytes:
    """?detachKeys=, checked before anything else, as dockerd's ContainerAttach does."""
    spec = request.query.get("detachKeys", "")
    keys = detach_keys(spec)
    if keys is None:
        raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return keys


def _attachable(request: web.Request, m: ContainerManager) -> dict[str, Any]:
    ref = request.match_info["id"]
    rec = m.get(ref)
    if rec["State"]["Paused"]:
        raise Conflict(f"container {ref} is paused, unpause the container before attach")
    if rec["State"]["Restarting"]:
        raise Conflict(f"container {ref} is restarting, wait until the container is running")
    return rec


async def attach(request: web.Request) -> web.StreamResponse:
    m = manager(request)
    keys = _attach_keys(request)
    rec = _attachable(request, m)
    tty = bool(rec["Config"].get("Tty"))
    stdin, stdout, stderr = qbool(request, "stdin"), qbool(request, "stdout"), qbool(request, "stderr")
    logs, stream = qbool(request, "logs"), qbool(request, "stream")
    ctype = RAW if tty or not api_at_least(request, "1.42") else MUX
    conn = await hijack(request, ctype)
    try:
        await _pump_attach(request, m, rec, stdin, stdout, stderr, logs, stream, conn.write, conn.read, keys)
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        conn.close()
    return conn.response


async def attach_ws(request: web.Request) -> web.StreamResponse:
    m = manager(request)
    keys = _attach_keys(request)
    rec = _attachable(request, m)
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def reader() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                queue.put_nowait(msg.data)
            elif msg.type == WSMsgType.TEXT:
                queue.put_nowait(msg.data.encode())
        queue.put_nowait(b"")

    rtask = asyncio.create_task(reader())

    async def write(data: bytes) -> None:
        await ws.send_bytes(data)

    try:
        # The websocket carries raw bytes, never multiplexed frames (as dockerd does); the detach keys still
        # count only for a TTY container's stdin.
        tty = bool(rec["Config"].get("Tty"))
        rec_raw = dict(rec, Config=dict(rec["Config"], Tty=True))
        await _pump_attach(request, m, rec_raw, qbool(request, "stdin"), qbool(request, "stdout"),
                           qbool(request, "stderr"), qbool(request, "logs"), qbool(request, "stream"), write,
                           queue.get, keys if tty else b"")
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        rtask.cancel()
        await ws.close()
    return ws


def register(app: web.Application) -> None:
    add(app, "POST", "/containers/create", create)
    add(app, "GET", "/containers/json", list_containers)
    add(app, "POST", "/containers/prune", prune)
    add(app, "GET", "/containers/{id}/json", inspect)
    add(app, "POST", "/containers/{id}/start", start)
    add(app, "POST", "/containers/{id}/stop", stop)
    add(app, "POST", "/containers/{id}/restart", restart)
    add(app, "POST", "/containers/{id}/kill", kill)
    add(app, "POST", "/containers/{id}/pause", pause)
    add(app, "POST", "/containers/{id}/unpause", unpause)
    add(app, "POST", "/containers/{id}/wait", wait)
    add(app, "DELETE", "/containers/{id}", remove)
    add(app, "POST", "/containers/{id}/rename", rename)
    add(app, "POST", "/containers/{id}/update", update)
    add(app, "POST", "/containers/{id}/resize", resize)
    add(app, "GET", "/containers/{id}/logs", container_logs)
    add(app, "POST", "/containers/{id}/attach", attach)
    add(app, "GET", "/containers/{id}/attach/ws", attach_ws)
