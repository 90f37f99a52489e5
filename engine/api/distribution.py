"""GET /distribution/{name}/json: the descriptor and platforms of an image as its registry serves it."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from engine.api.server import add, daemon_of, json_response
from engine.errors import EngineError, InvalidArgument, NotFound, Unauthorized, Unavailable
from engine.images.auth import decode_registry_auth
from engine.images.reference import parse
from engine.images.registry import Repository, distribution_inspect

_FULL_ID = re.compile(r"^(sha256:)?[a-f0-9]{64}$")


async def inspect(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if _FULL_ID.match(name):
        raise EngineError("no manifest found for full image ID")  # dockerd's text and status (500)
    ref = parse(name)
    svc = daemon_of(request).images
    if svc is None:
        raise EngineError("images are not available in this engine")
    # An undecodable X-Registry-Auth counts as none, as dockerd does here.
    creds = svc.credentials(ref.domain, decode_registry_auth(request.headers.get("X-Registry-Auth", "")) or None)
    last: EngineError = NotFound("manifest unknown: manifest unknown")
    async with svc._session() as session:
        # Mirrors first, then the registry itself; the last error is the answer (dockerd's order).
        for ep in svc.hosts.endpoints(ref.domain):
            repo = Repository(session, svc.hosts, ep, ref, creds)
            try:
                body: dict[str, Any] = await distribution_inspect(repo)
            except InvalidArgument:
                raise
            except NotFound as e:
                if e.message.startswith("pull access denied"):  # the registry asked for credentials
                    last = Unauthorized(e.message.rsplit(": ", 2)[-2] + ": " + e.message.rsplit(": ", 1)[-1])
                else:
                    last = NotFound("manifest unknown: manifest unknown")
                continue
            except Unavailable as e:
                last = EngineError(e.message)  # dockerd answers a registry it can't reach with a 500
                continue
            except EngineError as e:
                last = e
                continue
            if not body["Platforms"]:
                body["Platforms"] = None  # Go's nil slice
            return json_response(body)
    raise last


def register(app: web.Application) -> None:
    add(app, "GET", "/distribution/{name:.+}/json", inspect)
