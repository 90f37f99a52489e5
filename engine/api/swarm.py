"""Swarm, services, nodes, tasks, secrets, configs and plugins: answered as a Docker that is not in a swarm."""

from __future__ import annotations

from aiohttp import web

from engine.api.server import add, error_response, json_response

NOT_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to '
    "swarm and try again."
)
NOT_SUPPORTED = "portside does not support swarm mode"


async def not_manager(request: web.Request) -> web.Response:
    return error_response(503, NOT_MANAGER)


async def no_swarm(request: web.Request) -> web.Response:
    return error_response(503, NOT_SUPPORTED)


async def leave(request: web.Request) -> web.Response:
    return error_response(503, "This node is not part of a swarm")


async def plugins(request: web.Request) -> web.Response:
    return json_response([])


async def plugin_missing(request: web.Request) -> web.Response:
    return error_response(404, f"plugin \"{request.match_info.get('name', '')}\" not found")


def register(app: web.Application) -> None:
    add(app, "GET", "/swarm", not_manager)
    add(app, "GET", "/swarm/unlockkey", not_manager)
    add(app, "POST", "/swarm/init", no_swarm)
    add(app, "POST", "/swarm/join", no_swarm)
    add(app, "POST", "/swarm/leave", leave)
    add(app, "POST", "/swarm/update", not_manager)
    add(app, "POST", "/swarm/unlock", not_manager)
    for kind in ("services", "nodes", "tasks", "secrets", "configs"):
        add(app, "GET", f"/{kind}", not_manager)
        add(app, "GET", f"/{kind}/{{id}}", not_manager)
        add(app, "DELETE", f"/{kind}/{{id}}", not_manager)
        add(app, "POST", f"/{kind}/{{id}}/update", not_manager)
    for kind in ("services", "secrets", "configs"):
        add(app, "POST", f"/{kind}/create", not_manager)
    add(app, "GET", "/services/{id}/logs", not_manager)
    add(app, "GET", "/tasks/{id}/logs", not_manager)
    add(app, "GET", "/plugins", plugins)
    add(app, "GET", "/plugins/privileges", plugins)
    add(app, "GET", "/plugins/{name}/json", plugin_missing)
    add(app, "DELETE", "/plugins/{name}", plugin_missing)
