"""Image endpoints: pull (streamed JSON progress), list, inspect, history, tag, remove, search, prune, push,
save, load, import, commit (POST /build is engine/api/build.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from engine.api.params import check_filters, filters, json_body, qbool, qint, timestamp_ns
from engine.api.server import add, daemon_of, error_response, json_response, tar_stream_response
from engine.errors import EngineError, InvalidArgument, NotFound
from engine.gomatch import compile_pattern
from engine.images.auth import decode_registry_auth


def _images(request: web.Request) -> Any:
    svc = daemon_of(request).images
    if svc is None:
        raise EngineError("images are not available in this engine")
    return svc


def _err_line(message: str) -> bytes:
    return json.dumps({"errorDetail": {"message": message}, "error": message}).encode() + b"\r\n"


async def stream_json(request: web.Request, job: Callable[[Callable[[dict[str, Any]], None]], Coroutine[Any, Any, Any]],
                      ) -> web.StreamResponse:
    """Run `job(progress)` and stream its progress as JSON lines. An error before the first message is a real
    HTTP error (a 404 there makes `docker run` pull); after it, the error goes in the stream, as dockerd does."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    task = asyncio.create_task(job(queue.put_nowait))
    task.add_done_callback(lambda _t: queue.put_nowait(None))
    first = await queue.get()
    if first is None:
        exc = task.exception() if not task.cancelled() else None
        if isinstance(exc, EngineError):
            return error_response(exc.status, exc.message)
        if exc is not None:
            return error_response(500, str(exc))
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    try:
        await resp.prepare(request)
        item = first
        while item is not None:
            await resp.write(json.dumps(item).encode() + b"\r\n")
            item = await queue.get()
        exc = task.exception() if not task.cancelled() else None
        if exc is not None:
            await resp.write(_err_line(exc.message if isinstance(exc, EngineError) else str(exc)))
    except asyncio.CancelledError:
        task.cancel()  # the client hung up: stop the work too
        raise
    return resp


def _reference(image: str, tag: str) -> str:
    if tag:
        return f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
    last = image.rsplit("/", 1)[-1]
    return image if (":" in last or "@" in image) else f"{image}:latest"


async def create(request: web.Request) -> web.StreamResponse:
    svc = _images(request)
    d = daemon_of(request)
    image = request.query.get("fromImage", "")
    src = request.query.get("fromSrc", "")
    if src:
        return await import_image(request, src)
    if not image:
        raise InvalidArgument("fromImage or fromSrc is required")
    ref = _reference(image, request.query.get("tag", ""))
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth", ""))
    platform = request.query.get("platform") or None

    async def job(progress: Callable[[dict[str, Any]], None]) -> None:
        rec = await svc.pull(ref, platform=platform, auth=auth or None, progress=progress)
        d.events.publish("image", "pull", ref, {"name": ref})
        return rec

    return await stream_json(request, job)


async def import_image(request: web.Request, src: str) -> web.StreamResponse:
    svc = _images(request)
    if src != "-":
        raise InvalidArgument("importing from a URL is not supported: send the tarball in the request body")
    repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
    changes = request.query.getall("changes", [])
    message = request.query.get("message", "")
    platform = request.query.get("platform") or None
    data = await request.read()
    d = daemon_of(request)

    async def job(progress: Callable[[dict[str, Any]], None]) -> None:
        import io

        rec = await asyncio.to_thread(
            lambda: svc.import_(io.BytesIO(data), repo=repo or None, tag=tag or None, changes=changes,
                                message=message, platform=platform)
        )
        d.events.publish("image", "import", rec.id, {"name": rec.id})
        progress({"status": rec.id})

    return await stream_json(request, job)


def _summary(rec: Any, request: web.Request) -> dict[str, Any]:
    s = rec.summary() if hasattr(rec, "summary") else {}
    s.setdefault("Containers", -1)
    return s


async def list_images(request: web.Request) -> web.Response:
    svc = _images(request)
    f = filters(request)
    check_filters(f, {"before", "dangling", "label", "reference", "since", "until"})
    recs = await asyncio.to_thread(svc.list)
    before = since = None
    if f.get("before"):
        before = (await asyncio.to_thread(svc.get, f["before"][0])).created_unix
    if f.get("since"):
        since = (await asyncio.to_thread(svc.get, f["since"][0])).created_unix
    out = []
    want_dangling = _bool_filter(f, "dangling")
    # Untagged parents of other images (intermediate images) only show with all=1, as in Docker.
    has_children = {r.parent for r in recs if r.parent}
    show_all = qbool(request, "all")
    for rec in recs:
        if rec.dangling and rec.id in has_children and not show_all:
            continue
        if want_dangling is not None and rec.dangling != want_dangling:
            continue
        if before is not None and rec.created_unix >= before:
            continue
        if since is not None and rec.created_unix <= since:
            continue
        if labels := f.get("label"):
            have = (rec.config.get("config") or {}).get("Labels") or {}
            if not all((k in have and (not sep or have[k] == v)) for k, sep, v in (x.partition("=") for x in labels)):
                continue
        s = _summary(rec, request)
        if refs := f.get("reference"):
            # as dockerd: only the tags and digests that match are listed, and an image with none is left out
            s["RepoTags"] = [t for t in s.get("RepoTags") or [] if any(_ref_match(p, t) for p in refs)]
            s["RepoDigests"] = [d for d in s.get("RepoDigests") or [] if any(_ref_match(p, d) for p in refs)]
            if not s["RepoTags"] and not s["RepoDigests"]:
                continue
        if m := daemon_of(request).containers:
            s["Containers"] = len(m.image_users(rec.id)) if qbool(request, "shared-size") else -1
        out.append(s)
    return json_response(out)


def _bool_filter(f: dict[str, list[str]], name: str) -> bool | None:
    """dockerd's GetBoolOrDefault: true/1 or false/0, anything else is refused."""
    values = f.get(name)
    if not values:
        return None
    lowered = {v.lower() for v in values}
    if lowered <= {"1", "true"}:
        return True
    if lowered <= {"0", "false"}:
        return False
    raise InvalidArgument(f"invalid filter '{name}=[{' '.join(values)}]'")


def _go_path_match(pattern: str, name: str) -> bool:
    rx = compile_pattern(pattern)
    return rx is not None and rx.match(name) is not None


def _ref_match(pattern: str, ref: str) -> bool:
    """dockerd's reference.FamiliarMatch: the pattern against `name:tag` (or `name@digest`), then `name`."""
    if _go_path_match(pattern, ref):
        return True
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return _go_path_match(pattern, name)


async def inspect(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(_images(request).inspect, request.match_info["name"]))


async def history(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(_images(request).history, request.match_info["name"]))


async def tag(request: web.Request) -> web.Response:
    svc = _images(request)
    repo = request.query.get("repo", "")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    target = _reference(repo, request.query.get("tag", ""))
    name = request.match_info["name"]
    await asyncio.to_thread(svc.tag, name, target)
    rec = await asyncio.to_thread(svc.get, target)
    daemon_of(request).events.publish("image", "tag", rec.id, {"name": target})
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    svc = _images(request)
    name = request.match_info["name"]
    out = await asyncio.to_thread(lambda: svc.remove(name, force=qbool(request, "force"),
                                                     noprune=qbool(request, "noprune")))
    d = daemon_of(request)
    for item in out:
        if "Untagged" in item:
            d.events.publish("image", "untag", item["Untagged"], {"name": item["Untagged"]})
        if "Deleted" in item:
            d.events.publish("image", "delete", item["Deleted"], {"name": item["Deleted"]})
    return json_response(out)


async def search(request: web.Request) -> web.Response:
    svc = _images(request)
    term = request.query.get("term", "")
    limit = qint(request, "limit", 25) or 25
    f = filters(request)
    check_filters(f, {"is-automated", "is-official", "stars"})
    automated, official = _bool_filter(f, "is-automated"), _bool_filter(f, "is-official")
    stars = 0
    for v in f.get("stars", []):
        try:
            stars = max(stars, int(v))
        except ValueError:
            raise InvalidArgument(  # dockerd's text, Go's strconv error included
                f"invalid filter 'stars={v}': strconv.Atoi: parsing \"{v}\": invalid syntax") from None
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth", ""))
    results = await svc.search(term, limit=limit, auth=auth or None)
    if automated:
        return json_response([])  # dockerd: is-automated is deprecated, filtering for true yields nothing
    # as dockerd: is-official compared when given, stars as a minimum
    results = [r for r in results if (official is None or r.get("is_official") == official)
               and r.get("star_count", 0) >= stars]
    return json_response(results)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _until_unix(value: str) -> float:
    """A prune `until`: a Go duration before now (`24h`, `1h30m`), a unix time or an RFC 3339 time."""
    v = value.strip()
    sign, body = (-1.0, v[1:]) if v.startswith("-") else (1.0, v.removeprefix("+"))
    parts = _DURATION_PART.findall(body)
    if parts and "".join(n + u for n, u in parts) == body:
        return time.time() - sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    try:
        ns = timestamp_ns(v)
    except InvalidArgument:
        ns = None
    if ns is None:
        raise InvalidArgument(f'failed to parse value as time or duration: "{value}"')
    return ns / 1e9


async def prune(request: web.Request) -> web.Response:
    svc = _images(request)
    f = filters(request)
    check_filters(f, {"dangling", "label", "label!", "until"})
    dangling_only = _bool_filter(f, "dangling") is not False
    rest = {k: v for k, v in f.items() if k != "dangling"}
    if "until" in rest:
        rest["until"] = [str(_until_unix(v)) for v in rest["until"]]
    out = await asyncio.to_thread(lambda: svc.prune(dangling_only=dangling_only, filters=rest))
    daemon_of(request).events.publish("image", "prune", "", {"reclaimed": str(out.get("SpaceReclaimed", 0))})
    return json_response(out)


async def push(request: web.Request) -> web.StreamResponse:
    svc = _images(request)
    fn = getattr(svc, "push", None)
    if fn is None:
        raise EngineError("image push is not available in this engine yet")
    ref = _reference(request.match_info["name"], request.query.get("tag", ""))
    auth = decode_registry_auth(request.headers.get("X-Registry-Auth", ""))
    d = daemon_of(request)

    async def job(progress: Callable[[dict[str, Any]], None]) -> None:
        await fn(ref, auth=auth or None, progress=progress)
        d.events.publish("image", "push", ref, {"name": ref})

    return await stream_json(request, job)


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    svc = _images(request)
    for n in names:
        if await asyncio.to_thread(svc.resolve, n) is None:
            raise NotFound(f"No such image: {n}")
    chunks = await asyncio.to_thread(svc.save, names)
    resp = await tar_stream_response(request, chunks)
    for n in names:
        daemon_of(request).events.publish("image", "save", n, {"name": n})
    return resp


async def save_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


async def save_many(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


async def load(request: web.Request) -> web.StreamResponse:
    """`docker load`: always a 200 JSON stream; an error is its last message, as dockerd writes it (the CLI then
    prints the bare message and exits 1, and docker-py raises ImageLoadError)."""
    svc = _images(request)
    data = await request.read()
    d = daemon_of(request)
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/json"
    await resp.prepare(request)
    import io

    try:
        lines = await asyncio.to_thread(lambda: svc.load(io.BytesIO(data)))
    except EngineError as e:
        await resp.write(_err_line(e.message))
        return resp
    except Exception as e:  # an engine bug: the stream carries it rather than a cut connection
        await resp.write(_err_line(str(e) or type(e).__name__))
        return resp
    for line in lines or []:
        await resp.write(json.dumps({"stream": line if line.endswith("\n") else line + "\n"}).encode() + b"\r\n")
        name = line.split(": ", 1)[-1].strip()
        d.events.publish("image", "load", name, {"name": name})
    return resp




async def commit(request: web.Request) -> web.Response:
    d = daemon_of(request)
    svc = _images(request)
    body = await json_body(request, required=False)
    m = d.containers
    rec = m.get(request.query.get("container", ""))
    repo, tag_ = request.query.get("repo", ""), request.query.get("tag", "")
    ref = _reference(repo, tag_) if repo else ""
    tag_ = tag_ or ("latest" if repo else "")
    pause = qbool(request, "pause", True) and rec["State"]["Running"] and not rec["State"]["Paused"]
    paused = False
    if pause:
        # The container may exit meanwhile (its cgroup goes with it: the freezer write fails with ENOENT):
        # then it is committed as it is, and nothing is unpaused.
        with contextlib.suppress(EngineError, OSError):
            await m.rt.pause(rec["Id"])
            paused = True
    try:
        layer = await asyncio.to_thread(svc.container_layer, rec["Id"])
        config = dict(rec["Config"])
        config.update(body or {})
        img = await asyncio.to_thread(
            lambda: svc.commit(layer, repo=repo or None, tag=tag_ or None, comment=request.query.get("comment", ""),
                               author=request.query.get("author", ""), changes=request.query.getall("changes", []),
                               config=config)
        )
        image_id = img.id
    finally:
        if paused:
            with contextlib.suppress(EngineError, OSError):
                await m.rt.unpause(rec["Id"])
    d.events.publish("container", "commit", rec["Id"], {"comment": request.query.get("comment", ""),
                                                         "imageID": image_id, "imageRef": ref})
    return json_response({"Id": image_id}, status=201)


def register(app: web.Application) -> None:
    add(app, "POST", "/images/create", create)
    add(app, "GET", "/images/json", list_images)
    add(app, "GET", "/images/search", search)
    add(app, "POST", "/images/prune", prune)
    add(app, "GET", "/images/get", save_many)
    add(app, "POST", "/images/load", load)
    add(app, "POST", "/commit", commit)
    add(app, "GET", "/images/{name:.+}/json", inspect)
    add(app, "GET", "/images/{name:.+}/history", history)
    add(app, "GET", "/images/{name:.+}/get", save_one)
    add(app, "POST", "/images/{name:.+}/tag", tag)
    add(app, "POST", "/images/{name:.+}/push", push)
    add(app, "DELETE", "/images/{name:.+}", remove)
