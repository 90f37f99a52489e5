"""Network endpoints: CRUD, connect, disconnect, prune (the net part does the kernel work)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from engine.api.params import check_filters, filters, json_body
from engine.api.server import add, daemon_of, json_response
from engine.containers.manager import net_connect, net_disconnect
from engine.errors import EngineError, InvalidArgument


def _svc(request: web.Request) -> Any:
    svc = daemon_of(request).networks
    if svc is None:
        raise EngineError("networks are not available in this engine")
    return svc


def _event(request: web.Request, action: str, net: dict[str, Any], **extra: str) -> None:
    daemon_of(request).events.publish("network", action, net["Id"], {"name": net["Name"], "type": net["Driver"],
                                                                      **extra})


async def list_networks(request: web.Request) -> web.Response:
    f = filters(request)
    check_filters(f, {"dangling", "driver", "id", "label", "name", "scope", "type"})
    return json_response(await asyncio.to_thread(_svc(request).list_networks, f))


async def inspect(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(_svc(request).inspect, request.match_info["id"]))


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = body.get("Name") or ""
    ipam = body.get("IPAM") or {}
    if (ipam.get("Driver") or "default") != "default":
        raise InvalidArgument(f"ipam driver \"{ipam['Driver']}\" is not supported")
    pools = ipam.get("Config") or []
    pool = pools[0] if pools else {}
    net = await asyncio.to_thread(
        lambda: _svc(request).create_network(
            name, driver=body.get("Driver") or "bridge", subnet=pool.get("Subnet") or None,
            gateway=pool.get("Gateway") or None, ip_range=pool.get("IPRange") or None,
            internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")),
            enable_ipv6=bool(body.get("EnableIPv6")), labels=body.get("Labels"), options=body.get("Options"),
        )
    )
    _event(request, "create", net)
    return json_response({"Id": net["Id"], "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.Response:
    svc = _svc(request)
    net = await asyncio.to_thread(svc.inspect, request.match_info["id"])
    await asyncio.to_thread(svc.remove, net["Id"])
    _event(request, "destroy", net)
    return web.Response(status=204)


async def connect(request: web.Request) -> web.Response:
    body = await json_body(request)
    d = daemon_of(request)
    net = await asyncio.to_thread(_svc(request).inspect, request.match_info["id"])
    await net_connect(d.containers, body.get("Container") or "", net, body.get("EndpointConfig") or {})
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await json_body(request)
    d = daemon_of(request)
    net = await asyncio.to_thread(_svc(request).inspect, request.match_info["id"])
    await net_disconnect(d.containers, body.get("Container") or "", net, bool(body.get("Force")))
    return web.Response(status=200)


async def prune(request: web.Request) -> web.Response:
    f = filters(request)
    check_filters(f, {"until", "label", "label!"})
    svc = _svc(request)
    before = {n["Name"]: n for n in await asyncio.to_thread(svc.list_networks, {})}
    out = await asyncio.to_thread(svc.prune, f)
    for name in out.get("NetworksDeleted") or []:
        if name in before:
            _event(request, "destroy", before[name])
    return json_response({"NetworksDeleted": out.get("NetworksDeleted") or None})


def register(app: web.Application) -> None:
    add(app, "GET", "/networks", list_networks)
    add(app, "POST", "/networks/create", create)
    add(app, "POST", "/networks/prune", prune)
    add(app, "GET", "/networks/{id}", inspect)
    add(app, "DELETE", "/networks/{id}", remove)
    add(app, "POST", "/networks/{id}/connect", connect)
    add(app, "POST", "/networks/{id}/disconnect", disconnect)
