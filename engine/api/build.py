"""POST /build (the classic builder's API, `version=1`) and POST /build/prune.

Thin on purpose: query parameters become `BuildOptions`, the body goes to a file under the builder's scratch
directory, and the builder's messages are written as Docker's JSON stream while it works. An error before the
first message is a real HTTP error (as dockerd answers a parse error); after it, it ends the stream as an
`errorDetail` line whose `code` is a failed RUN's exit code (the docker CLI exits with it)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import tempfile
from typing import Any

from aiohttp import web

from engine.api.params import qbool, qint
from engine.api.server import add, daemon_of, error_response, json_response
from engine.build.builder import BuildError, BuildOptions
from engine.build.context import fetch_remote
from engine.errors import EngineError, InvalidArgument
from engine.images.reference import parse as parse_ref


def _json_param(request: web.Request, name: str, default: Any) -> Any:
    raw = request.query.get(name, "")
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid {name} value: {raw!r}") from None


def _registry_config(header: str) -> dict[str, dict[str, Any]]:
    """X-Registry-Config: base64url JSON of {registry: AuthConfig}, for pulls of private base images."""
    if not header:
        return {}
    with contextlib.suppress(ValueError, TypeError):
        data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        if isinstance(data, dict):
            out: dict[str, dict[str, Any]] = {}
            for k, v in data.items():
                if isinstance(v, dict):
                    key = k.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
                    out[key] = v
                    out[k] = v
            return out
    return {}


def options(request: web.Request) -> BuildOptions:
    q = request.query
    if q.get("version", "1") == "2":
        raise InvalidArgument("BuildKit (version=2) is not supported by portside: use the classic builder "
                              "(DOCKER_BUILDKIT=0)")
    if qbool(request, "squash"):
        raise InvalidArgument("squash is not supported by portside's builder: the build keeps its layers")
    tags = []
    for t in q.getall("t", []):
        try:
            tags.append(str(parse_ref(t)))
        except InvalidArgument:
            raise InvalidArgument(f"invalid reference format: repository name ({t}) must be lowercase"
                                  if t != t.lower() else f"invalid reference format: {t}") from None
    buildargs = _json_param(request, "buildargs", {})
    labels = _json_param(request, "labels", {})
    cachefrom = _json_param(request, "cachefrom", [])
    ulimits = _json_param(request, "ulimits", [])
    if not isinstance(buildargs, dict) or not isinstance(labels, dict) or not isinstance(cachefrom, list):
        raise InvalidArgument("buildargs and labels must be JSON objects, cachefrom a JSON array")
    extra = [h for v in q.getall("extrahosts", []) for h in v.split(",") if h]
    return BuildOptions(
        tags=tags, quiet=qbool(request, "q"), nocache=qbool(request, "nocache"), pull=qbool(request, "pull"),
        rm=qbool(request, "rm", True), forcerm=qbool(request, "forcerm"),
        buildargs={str(k): (None if v is None else str(v)) for k, v in buildargs.items()},
        labels={str(k): str(v) for k, v in labels.items()}, target=q.get("target", ""),
        networkmode=q.get("networkmode", ""), extrahosts=extra, shmsize=qint(request, "shmsize", 0) or 0,
        memory=qint(request, "memory", 0) or 0, memswap=qint(request, "memswap", 0) or 0,
        cpushares=qint(request, "cpushares", 0) or 0, cpusetcpus=q.get("cpusetcpus", ""),
        cpusetmems=q.get("cpusetmems", ""), cpuperiod=qint(request, "cpuperiod", 0) or 0,
        cpuquota=qint(request, "cpuquota", 0) or 0, cgroupparent=q.get("cgroupparent", ""),
        ulimits=ulimits if isinstance(ulimits, list) else [], cachefrom=[str(c) for c in cachefrom],
        platform=q.get("platform", ""), registry_auths=_registry_config(request.headers.get("X-Registry-Config", "")),
    )


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


async def build(request: web.Request) -> web.StreamResponse:
    d = daemon_of(request)
    svc = d.builder
    if svc is None:
        raise EngineError("the builder is not available in this engine")
    opts = options(request)
    scratch = svc.scratch
    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = tempfile.TemporaryFile(dir=scratch)
    try:
        async for chunk in request.content.iter_chunked(1 << 20):
            await asyncio.to_thread(body.write, chunk)
        dockerfile_text = None
        remote = request.query.get("remote", "")
        if remote:
            if body.tell():
                raise InvalidArgument("a build with remote= takes no request body")
            dockerfile_text = await fetch_remote(remote, body)
        body.seek(0)
        return await _stream(request, svc, body, opts, dockerfile_text)
    finally:
        body.close()


async def _stream(request: web.Request, svc: Any, body: Any, opts: BuildOptions,
                  dockerfile_text: str | None) -> web.StreamResponse:
    d = daemon_of(request)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def job() -> str:
        image_id = await svc.build(body, request.query.get("dockerfile", ""), opts, queue.put_nowait,
                                   dockerfile_text=dockerfile_text)
        short = image_id.removeprefix("sha256:")[:12]
        if not opts.quiet:
            queue.put_nowait({"stream": f"Successfully built {short}\n"})
        for t in opts.tags:
            await asyncio.to_thread(d.images.tag, image_id, t)
            familiar = (await asyncio.to_thread(d.images.get, t)).repo_tags
            shown = next((x for x in familiar if parse_ref(x).__str__() == t), t)
            d.events.publish("image", "tag", image_id, {"name": shown})
            if not opts.quiet:
                queue.put_nowait({"stream": f"Successfully tagged {shown}\n"})
        if opts.quiet:
            queue.put_nowait({"stream": image_id + "\n"})
        return image_id

    task = asyncio.create_task(job())
    task.add_done_callback(lambda _t: queue.put_nowait(None))
    first = await queue.get()
    if first is None:
        exc = task.exception() if not task.cancelled() else None
        if exc is not None and not isinstance(exc, BuildError):
            if isinstance(exc, EngineError):
                return error_response(exc.status, exc.message)
            return error_response(500, str(exc))
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    try:
        await resp.prepare(request)
        item = first
        while item is not None:
            await resp.write(_line(item))
            item = await queue.get()
        exc = task.exception() if not task.cancelled() else None
        if exc is not None:
            msg = exc.message if isinstance(exc, EngineError) else str(exc)
            detail: dict[str, Any] = {"message": msg}
            if isinstance(exc, BuildError) and exc.code:
                detail["code"] = exc.code
            await resp.write(_line({"errorDetail": detail, "error": msg}))
    except (asyncio.CancelledError, ConnectionResetError):
        task.cancel()  # the client hung up: the build stops and cleans up after itself
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise
    return resp


async def build_prune(request: web.Request) -> web.Response:
    svc = daemon_of(request).builder
    if svc is None:
        return json_response({"CachesDeleted": None, "SpaceReclaimed": 0})
    out = await asyncio.to_thread(svc.prune)
    return json_response(out)


async def build_cancel(request: web.Request) -> web.Response:
    return web.Response(status=200)


def register(app: web.Application) -> None:
    add(app, "POST", "/build", build)
    add(app, "POST", "/build/prune", build_prune)
    add(app, "POST", "/build/cancel", build_cancel)
