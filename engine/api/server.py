"""The Engine API server: aiohttp on unix (and TLS or loopback TCP) sockets, versioned paths, Docker's errors.

Every route is served both bare (`/containers/json`) and under a version prefix (`/v1.50/containers/json`), from
`MIN_API_VERSION` up to `API_VERSION`; a version outside that range gets the 400 dockerd sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import json
import logging
import os
import sqlite3
import ssl
import stat
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from aiohttp import web

from engine.api.hijack import HijackableHandler
from engine.api.params import version_tuple
from engine.containers.host import ContainerHost
from engine.crashpoints import crashpoint
from engine.errors import EngineError, InvalidArgument
from engine.version import API_VERSION, MIN_API_VERSION, __version__

if TYPE_CHECKING:
    from engine.config import DaemonConfig


class Engine(ContainerHost, Protocol):
    """What the API's handlers use of the engine: what the container manager is given (events, the image,
    network and volume services, the runtime), with the whole config, the managers and a few summaries.
    daemon.py's Daemon (the composition root, above this layer) is one; the API never imports it."""

    @property
    def config(self) -> DaemonConfig: ...
    @property
    def engine_id(self) -> str: ...
    @property
    def containers(self) -> Any: ...
    @property
    def builder(self) -> Any: ...
    def container_counts(self) -> dict[str, int]: ...
    def image_count(self) -> int: ...
    async def disk_usage(self, types: list[str]) -> dict[str, Any]: ...
    async def login(self, username: str, password: str, server: str, token: str) -> str: ...


log = logging.getLogger("portside.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DAEMON: web.AppKey[Engine] = web.AppKey("daemon")
# The API version a request asked for (its /vX.Y prefix, else the newest).
API_VERSION_KEY: web.RequestKey[str] = web.RequestKey("api_version", str)
SERVER_HEADER = f"portside/{__version__} (linux)"


def add(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Serve `path` bare and under `/vX.Y` (the version is checked by the middleware)."""
    app.router.add_route(method, path, handler)
    app.router.add_route(method, r"/{_api_version:v[0-9]+\.[0-9]+}" + path, handler)


def daemon_of(request: web.Request) -> Engine:
    return request.app[DAEMON]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with `Content-Type: application/json` exactly (the docker CLI compares the whole header)."""
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json",
                        headers=headers)


def error_response(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status=status)


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    version = request.match_info.get("_api_version")
    if version:
        v = version[1:]
        if version_tuple(v) < version_tuple(MIN_API_VERSION):
            return error_response(
                400,
                f"client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                "please upgrade your client to a newer version",
            )
        if version_tuple(v) > version_tuple(API_VERSION):
            return error_response(
                400, f"client version {v} is too new. Maximum supported API version is {API_VERSION}"
            )
        request[API_VERSION_KEY] = v
    else:
        request[API_VERSION_KEY] = API_VERSION
    if not request.path.endswith("/_ping"):
        crashpoint("api.request")  # tests: die while serving a request (pings still answer, for readiness checks)
    try:
        return await handler(request)
    except EngineError as e:
        return error_response(e.status, e.message)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return error_response(404, "page not found")
    except web.HTTPException:
        raise
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as e:  # an engine bug: answer like dockerd does to its panics, and keep serving
        system = system_error(e)
        if system is not None:  # the system said no (a full disk): not a bug, and said in Go's words
            log.warning("%s %s failed: %s", request.method, request.path, system)
            return error_response(500, system)
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, str(e) or type(e).__name__)


def system_error(e: BaseException) -> str | None:
    """An error from the system (a full disk above all) as dockerd passes Go's on: `<path>: no space left on
    device`, lower-case (Go's errno texts); SQLite's full database says the same. None for anything else."""
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        return (f"{e.filename}: " if e.filename else "") + e.strerror.lower()
    if isinstance(e, sqlite3.OperationalError) and "disk is full" in str(e):
        return f"{e}: {os.strerror(errno.ENOSPC).lower()}"
    return None


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER
    response.headers.setdefault("Api-Version", API_VERSION)
    response.headers.setdefault("Docker-Experimental", "false")
    response.headers.setdefault("Ostype", "linux")


def build_app(daemon: Engine) -> web.Application:
    from engine.api import routes

    app = web.Application(middlewares=[_middleware], client_max_size=1024**4)
    app[DAEMON] = daemon
    app.on_response_prepare.append(_common_headers)
    routes.register(app)
    return app


class TlsOptions:
    def __init__(self, verify: bool = False, cacert: str = "", cert: str = "", key: str = "") -> None:
        self.verify, self.cacert, self.cert, self.key = verify, cacert, cert, key

    def context(self) -> ssl.SSLContext | None:
        if not self.cert or not self.key:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        if self.verify:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.cacert or None)
        return ctx


def check_host(host: str, tls: TlsOptions) -> None:
    """A tcp:// host is served only on loopback or with TLS client verification, never open on the network."""
    u = urlparse(host)
    if u.scheme == "unix":
        return
    if u.scheme != "tcp":
        raise InvalidArgument(f"invalid host: {host!r}: only unix:// and tcp:// are supported")
    if (u.hostname or "") in ("127.0.0.1", "localhost", "::1") or (u.hostname or "").startswith("127."):
        return
    if not (tls.verify and tls.cert and tls.key and tls.cacert):
        raise InvalidArgument(
            f"refusing to serve {host} without TLS client verification (--tlsverify with --tlscacert, --tlscert, "
            "--tlskey); use a unix socket or a loopback address"
        )


class ApiServer:
    """Listens on the daemon's hosts; `start()` binds every socket, `close()` stops them and open streams."""

    def __init__(self, daemon: Engine, hosts: list[str], tls: TlsOptions | None = None) -> None:
        self.daemon = daemon
        self.hosts = hosts
        self.tls = tls or TlsOptions()
        self._runner: web.AppRunner | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._unix_paths: list[Path] = []

    async def start(self) -> None:
        for h in self.hosts:
            check_host(h, self.tls)
        app = build_app(self.daemon)
        # handler_cancellation: a client hanging up mid-stream cancels its handler, which cleans up after itself.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def factory() -> HijackableHandler:
            return HijackableHandler(server, loop=loop, **server._kwargs)  # same settings aiohttp would use

        try:
            for h in self.hosts:
                u = urlparse(h)
                if u.scheme == "unix":
                    path = Path(u.path)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with contextlib.suppress(FileNotFoundError):
                        if stat.S_ISSOCK(path.lstat().st_mode):
                            path.unlink()  # a stale socket of a dead daemon (the data-root lock proved it dead)
                    old = os.umask(0o117)
                    try:
                        srv = await loop.create_unix_server(factory, str(path), backlog=256)
                    finally:
                        os.umask(old)
                    os.chmod(path, 0o660)
                    with contextlib.suppress(KeyError, PermissionError):
                        os.chown(path, 0, grp.getgrnam("docker").gr_gid)
                    self._unix_paths.append(path)
                else:
                    ctx = self.tls.context()
                    srv = await loop.create_server(factory, u.hostname, u.port or (2376 if ctx else 2375), ssl=ctx)
                self._servers.append(srv)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
        if self._runner is not None and self._runner.server is not None:
            # Streams (events, logs -f, attach, stats) never end on their own: cut them now; their handlers are
            # cancelled by the hang-up and clean up after themselves.
            for proto in list(self._runner.server.connections):
                proto.force_close()
                if proto.transport is not None:
                    proto.transport.close()
            await self._runner.server.shutdown(0.5)
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 2.0)
        self._servers.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for p in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self._unix_paths.clear()


def json_stream_response(**kw: Any) -> web.StreamResponse:
    resp = web.StreamResponse(**kw)
    resp.content_type = "application/json"
    return resp


async def tar_stream_response(
    request: web.Request, chunks: Iterable[bytes], headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Stream a blocking iterator of tar chunks (export, save) to the client, a chunk per worker-thread step,
    closing the iterator even when the client hangs up midway."""
    resp = web.StreamResponse(status=200, headers=headers)
    resp.content_type = "application/x-tar"
    await resp.prepare(request)
    it = iter(chunks)
    done = object()
    try:
        while (chunk := await asyncio.to_thread(next, it, done)) is not done:
            await resp.write(chunk)  # type: ignore[arg-type]
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(close)
    return resp

