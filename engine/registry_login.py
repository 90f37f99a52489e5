"""`POST /auth`: check credentials against a registry the way `docker login` expects the daemon to."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import aiohttp

from engine.errors import Unauthorized, Unavailable

if TYPE_CHECKING:
    from engine.daemon import Daemon


def registry_host(server: str) -> str:
    if not server or "index.docker.io" in server or server == "docker.io":
        return "registry-1.docker.io"
    if "://" in server:
        return urlparse(server).netloc
    return server.split("/", 1)[0]


def is_insecure(daemon: Daemon, host: str) -> bool:
    """Docker's rule: 127.0.0.0/8 and the --insecure-registry entries may use plain HTTP."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0][1:]
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        addr = None
    if name == "localhost" or (addr is not None and addr.is_loopback):
        return True
    for entry in daemon.config.insecure_registries:
        if entry in (host, name):
            return True
        if addr is not None and "/" in entry:
            try:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def ssl_context(daemon: Daemon, host: str) -> ssl.SSLContext:
    """Trust the system CAs plus Docker's per-registry ca.crt under certs.d (/etc/docker and the data root)."""
    ctx = ssl.create_default_context()
    for base in (Path("/etc/docker/certs.d"), daemon.config.data_root / "certs.d"):
        d = base / host
        if d.is_dir():
            for crt in sorted(d.glob("*.crt")):
                ctx.load_verify_locations(str(crt))
    return ctx


async def login(daemon: Daemon, username: str, password: str, server: str, token: str) -> str:
    host = registry_host(server)
    schemes = ["https", "http"] if is_insecure(daemon, host) else ["https"]
    last: Exception | None = None
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for scheme in schemes:
            url = f"{scheme}://{host}/v2/"
            try:
                ctx: ssl.SSLContext | bool = ssl_context(daemon, host) if scheme == "https" else False
                async with session.get(url, ssl=ctx) as r:
                    if r.status == 200:
                        return "Login Succeeded"
                    challenge = r.headers.get("WWW-Authenticate", "")
                basic = aiohttp.BasicAuth(username, password)
                if challenge.lower().startswith("bearer"):
                    params = dict(
                        part.strip().split("=", 1) for part in challenge[7:].split(",") if "=" in part
                    )
                    params = {k: v.strip('"') for k, v in params.items()}
                    realm = params.pop("realm", "")
                    q = {"service": params.get("service", ""), "account": username, "client_id": "docker"}
                    async with session.get(realm, params=q, auth=basic, ssl=ctx) as tr:
                        if tr.status == 200:
                            return "Login Succeeded"
                else:
                    async with session.get(url, auth=basic, ssl=ctx) as r2:
                        if r2.status == 200:
                            return "Login Succeeded"
                raise Unauthorized(
                    f"Get \"{url}\": unauthorized: incorrect username or password"
                )
            except Unauthorized:
                raise
            except (aiohttp.ClientError, OSError) as e:
                last = e
                continue
    raise Unavailable(f"Get \"https://{host}/v2/\": {last}")
