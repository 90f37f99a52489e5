"""Container endpoints that look inside: top, stats, changes, export, archive (docker cp)."""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from typing import Any, BinaryIO, cast

from aiohttp import web

from engine.api.containers import manager
from engine.api.params import qbool
from engine.api.server import add, json_response, tar_stream_response
from engine.containers import archive
from engine.containers import stats as cstats
from engine.containers.manager import ContainerManager
from engine.errors import Conflict, EngineError, InvalidArgument


def _running_pid(rec: dict[str, Any]) -> int:
    if not rec["State"]["Running"] or not rec["State"].get("Pid"):
        raise Conflict(f"Container {rec['Id']} is not running")
    return int(rec["State"]["Pid"])


async def top(request: web.Request) -> web.Response:
    m = manager(request)
    rec = m.get(request.match_info["id"])
    pid = _running_pid(rec)
    ps_args = request.query.get("ps_args", "") or "-ef"
    pids = set(await asyncio.to_thread(cstats.procs, pid))
    proc = await asyncio.create_subprocess_exec("ps", *ps_args.split(), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise EngineError(f"Error running ps: {err.decode(errors='replace').strip()}")
    lines = out.decode(errors="replace").splitlines()
    titles = lines[0].split()
    try:
        pid_col = titles.index("PID")
    except ValueError:
        raise InvalidArgument("Couldn't find PID field in ps output") from None
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
            rows.append(fields)
    m.emit(rec, "top")  # dockerd's ContainerTop logs it as an event too
    return json_response({"Titles": titles, "Processes": rows})


def _networks(m: ContainerManager, cid: str) -> dict[str, Any] | None:
    svc = m.d.networks
    if svc is None:
        return None
    try:
        return svc.network_stats(cid)
    except Exception:
        return None


async def stats(request: web.Request) -> web.StreamResponse:
    m = manager(request)
    rec = m.get(request.match_info["id"])
    stream = qbool(request, "stream", True)
    one_shot = qbool(request, "one-shot")
    if one_shot and stream:
        raise InvalidArgument("cannot have stream=true and one-shot=true")
    cid = rec["Id"]
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    await resp.prepare(request)
    pre: dict[str, Any] = {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
    pre_read = "0001-01-01T00:00:00Z"
    first = True
    while True:
        cur = m.store.find(cid)
        if cur is None:
            break
        if cur["State"]["Running"] and cur["State"].get("Pid"):
            s = await asyncio.to_thread(cstats.sample, int(cur["State"]["Pid"]), _networks(m, cid))
        else:
            s = {"read": "0001-01-01T00:00:00Z", "pids_stats": {}, "blkio_stats": {}, "num_procs": 0,
                 "storage_stats": {}, "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
                 "memory_stats": {}}
        s["preread"], s["precpu_stats"] = pre_read, pre
        s["name"], s["id"] = cur["Name"], cid
        pre, pre_read = s["cpu_stats"], s["read"]
        if not stream and not one_shot and first and cur["State"]["Running"]:
            first = False  # like dockerd: a single answer carries two samples, so CPU % can be computed
            await asyncio.sleep(1)
            continue
        await resp.write(json.dumps(s).encode() + b"\n")
        if not stream or not cur["State"]["Running"]:
            break
        await asyncio.sleep(1)
    return resp


async def changes(request: web.Request) -> web.Response:
    m = manager(request)
    rec = m.get(request.match_info["id"])
    layer = await asyncio.to_thread(m.d.images.container_layer, rec["Id"])
    out = await asyncio.to_thread(layer.changes)
    # The mount points of the files the engine binds in are not the container's changes (Docker keeps them in
    # an init layer below the container's own).
    hidden = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
    out = [c for c in out or [] if c["Path"] not in hidden]
    if not any(c["Path"].startswith("/etc/") for c in out):
        out = [c for c in out if c["Path"] != "/etc"]
    return json_response(out or None)


async def export(request: web.Request) -> web.StreamResponse:
    m = manager(request)
    rec = m.get(request.match_info["id"])
    svc = m.d.images
    layer = await asyncio.to_thread(svc.container_layer, rec["Id"])
    rootfs = m.bundle(rec["Id"]) / "rootfs" if rec["State"]["Running"] else None
    chunks = await asyncio.to_thread(svc.export, layer, rootfs)
    resp = await tar_stream_response(request, chunks)
    m.emit(rec, "export")
    return resp


def _stat_header(st: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(st).encode()).decode()


def _archive_target(request: web.Request) -> tuple[ContainerManager, dict[str, Any], str]:
    """The container and the `path` query of an archive request (HEAD, GET, PUT)."""
    m = manager(request)
    rec = m.get(request.match_info["id"])
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    return m, rec, path


async def archive_head(request: web.Request) -> web.Response:
    m, rec, path = _archive_target(request)
    st = await asyncio.to_thread(archive.stat, m.d.images, rec, path, m.d.config.exec_root)
    return web.Response(status=200, headers={"X-Docker-Container-Path-Stat": _stat_header(st)})


async def archive_get(request: web.Request) -> web.StreamResponse:
    m, rec, path = _archive_target(request)
    st, chunks = await asyncio.to_thread(archive.get, m.d.images, rec, path, m.d.config.exec_root)
    resp = await tar_stream_response(request, chunks, headers={"X-Docker-Container-Path-Stat": _stat_header(st)})
    m.emit(rec, "archive-path")
    return resp


async def archive_put(request: web.Request) -> web.Response:
    m, rec, path = _archive_target(request)
    # Spooled: the extraction runs on a worker thread, and noOverwriteDirNonDir reads the tar twice.
    with tempfile.SpooledTemporaryFile(max_size=16 << 20, dir=str(m.d.config.exec_root)) as body:
        async for chunk in request.content.iter_chunked(1 << 20):
            body.write(chunk)
        body.seek(0)
        await asyncio.to_thread(archive.put, m.d.images, rec, path, cast(BinaryIO, body), m.d.config.exec_root,
                                no_overwrite_dir_non_dir=qbool(request, "noOverwriteDirNonDir"),
                                copy_uid_gid=qbool(request, "copyUIDGID"))
    m.emit(rec, "extract-to-dir")
    return web.Response(status=200)


def register(app: web.Application) -> None:
    add(app, "GET", "/containers/{id}/top", top)
    add(app, "GET", "/containers/{id}/stats", stats)
    add(app, "GET", "/containers/{id}/changes", changes)
    add(app, "GET", "/containers/{id}/export", export)
    add(app, "HEAD", "/containers/{id}/archive", archive_head)
    add(app, "GET", "/containers/{id}/archive", archive_get)
    add(app, "PUT", "/containers/{id}/archive", archive_put)
