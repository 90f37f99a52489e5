"""Podman's libpod endpoint for Kubernetes YAML: `GET /libpod/generate/kube?names=...&service=...` (the body is
the YAML, as Podman's handler writes it). `POST /libpod/play/kube` is not served: play runs client-side
(app/kube_cli.py) through the Engine API."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from engine.api.containers import manager
from engine.api.images import _images
from engine.api.params import qbool
from engine.api.server import add
from engine.containers import shape
from engine.errors import EngineError, InvalidArgument, NotFound


async def generate_kube(request: web.Request) -> web.Response:
    from engine.kube.generate import generate
    from engine.kube.manifests import dump

    refs = request.query.getall("names", [])
    if not refs:
        raise InvalidArgument("name at least one container (names=...)")
    m = manager(request)
    containers = [shape.inspect(m.get(ref)) for ref in dict.fromkeys(refs)]
    images: dict[str, Any] = {}
    for c in containers:
        if c["Image"] not in images:
            try:
                images[c["Image"]] = await asyncio.to_thread(_images(request).inspect, c["Image"])
            except (NotFound, EngineError):
                images[c["Image"]] = {}
    kind = request.query.get("type", "pod")
    try:
        out = generate(containers, images, kind=kind, service=qbool(request, "service"))
    except ValueError as e:
        raise InvalidArgument(str(e)) from e
    headers = {"X-Portside-Warnings": " | ".join(out.warnings)} if out.warnings else None
    return web.Response(text=dump(out.docs), content_type="text/vnd.yaml", headers=headers)


def register(app: web.Application) -> None:
    add(app, "GET", "/libpod/generate/kube", generate_kube)
    # podman --remote clients put their own version first (/v4.0.0/libpod/...)
    app.router.add_route("GET", r"/{_libpod_version:v[0-9]+\.[0-9]+\.[0-9]+}/libpod/generate/kube", generate_kube)
