"""Volume endpoints: the local driver's full CRUD and prune."""

from __future__ import annotations

import asyncio

from aiohttp import web

from engine.api.params import check_filters, filters, json_body, qbool
from engine.api.server import add, daemon_of, json_response
from engine.errors import InvalidArgument


def _label_ok(labels: dict[str, str], want: str) -> bool:
    k, sep, v = want.partition("=")
    return k in labels and (not sep or labels[k] == v)


async def list_volumes(request: web.Request) -> web.Response:
    d = daemon_of(request)
    f = filters(request)
    check_filters(f, {"dangling", "driver", "label", "name"})
    vols = await asyncio.to_thread(d.volumes.list)
    out = []
    for v in vols:
        if (names := f.get("name")) and not any(n in v["Name"] for n in names):
            continue
        if (drivers := f.get("driver")) and v["Driver"] not in drivers:
            continue
        if (labels := f.get("label")) and not all(_label_ok(v["Labels"] or {}, lab) for lab in labels):
            continue
        if dangling := f.get("dangling"):
            want = dangling[0].lower() in ("1", "true")
            if dangling[0].lower() not in ("0", "1", "true", "false"):
                raise InvalidArgument(f"invalid filter 'dangling={dangling[0]}'")
            if bool(d.volumes.users(v["Name"])) == want:
                continue
        out.append(v)
    return json_response({"Volumes": out, "Warnings": None})


async def create_volume(request: web.Request) -> web.Response:
    d = daemon_of(request)
    body = await json_body(request)
    vol, created = await asyncio.to_thread(
        d.volumes.create, body.get("Name") or "", body.get("Driver") or "local", body.get("Labels"),
        body.get("DriverOpts"),
    )
    if created:
        d.events.publish("volume", "create", vol["Name"], {"driver": vol["Driver"]})
    return json_response(vol, status=201)


async def inspect_volume(request: web.Request) -> web.Response:
    d = daemon_of(request)
    return json_response(await asyncio.to_thread(d.volumes.inspect, request.match_info["name"]))


async def update_volume(request: web.Request) -> web.Response:
    raise InvalidArgument("volume update only supported for cluster volumes")


async def remove_volume(request: web.Request) -> web.Response:
    d = daemon_of(request)
    name = request.match_info["name"]
    existed = d.volumes.exists(name)
    await asyncio.to_thread(d.volumes.remove, name, qbool(request, "force"))
    if existed:
        d.events.publish("volume", "destroy", name, {"driver": "local"})
    return web.Response(status=204)


async def prune_volumes(request: web.Request) -> web.Response:
    d = daemon_of(request)
    f = filters(request)
    check_filters(f, {"label", "label!", "all"})
    all_volumes = bool(f.get("all")) and f["all"][0].lower() in ("1", "true")
    deleted, reclaimed = await d.volumes.aprune(all_volumes, f.get("label", []), f.get("label!", []))
    for name in deleted:
        d.events.publish("volume", "destroy", name, {"driver": "local"})
    d.events.publish("volume", "prune", "", {"reclaimed": str(reclaimed)})
    return json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


def register(app: web.Application) -> None:
    add(app, "GET", "/volumes", list_volumes)
    add(app, "POST", "/volumes/create", create_volume)
    add(app, "POST", "/volumes/prune", prune_volumes)
    add(app, "GET", "/volumes/{name}", inspect_volume)
    add(app, "PUT", "/volumes/{name}", update_volume)
    add(app, "DELETE", "/volumes/{name}", remove_volume)
