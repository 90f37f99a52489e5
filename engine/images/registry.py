"""A client of the registry HTTP API v2 (aiohttp): endpoints and TLS, token and basic auth, manifests, blobs.

Endpoint choice follows dockerd: docker.io goes to the configured mirrors first, then registry-1.docker.io;
registries listed as insecure (and loopback ones, always) are tried over HTTPS without verification, then plain
HTTP. TLS uses the system CAs plus `<certs dir>/<host[:port]>/*.crt` (and `client.cert`/`client.key`).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import re
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from engine.errors import EngineError, InvalidArgument, NotFound, Unauthorized, Unavailable
from engine.images.auth import Credentials
from engine.images.content import DigestMismatch, Writer
from engine.images.reference import DEFAULT_DOMAIN, Reference

MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_TYPES = (MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST)
INDEX_TYPES = (MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX)
ACCEPT = ", ".join((MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST))
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
MAX_MANIFEST = 4 << 20
RETRIES = 3
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


def schema1_message(ref: str) -> str:
    return (
        "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. "
        f"Suggest the author of {ref} to upgrade the image to the OCI Format or Docker Image manifest v2, "
        "schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/"
    )


def is_loopback(host: str) -> bool:
    h = host
    if h.startswith("["):
        h = h[1:].split("]")[0]
    elif h.count(":") == 1:
        h = h.split(":")[0]
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@dataclass
class Endpoint:
    host: str  # host[:port] for URLs
    scheme: str
    ssl: ssl.SSLContext | bool
    mirror: bool = False
    fallback_http: bool = False  # insecure: may fall back to plain HTTP

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"


class RegistryHosts:
    """Where a registry domain is served and how to reach it."""

    def __init__(
        self,
        insecure_registries: Sequence[str] = (),
        registry_mirrors: Sequence[str] = (),
        certs_dirs: Sequence[Path] = (),
    ) -> None:
        self.insecure = list(insecure_registries)
        self.mirrors = [m.rstrip("/") for m in registry_mirrors]
        self.certs_dirs = list(certs_dirs)
        self._http_only: set[str] = set()  # insecure hosts found to speak plain HTTP

    def is_insecure(self, host: str) -> bool:
        if is_loopback(host):
            return True
        bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        for entry in self.insecure:
            entry = entry.removeprefix("http://").removeprefix("https://").rstrip("/")
            if entry in (host, bare):
                return True
            try:
                net = ipaddress.ip_network(entry, strict=False)
                if ipaddress.ip_address(bare.strip("[]")) in net:
                    return True
            except ValueError:
                continue
        return False

    def ssl_context(self, host: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        for d in self.certs_dirs:
            hd = d / host
            if not hd.is_dir():
                continue
            for f in sorted(hd.iterdir()):
                if f.suffix == ".crt":
                    ctx.load_verify_locations(cafile=str(f))
            for f in sorted(hd.iterdir()):
                if f.suffix == ".cert":
                    key = f.with_suffix(".key")
                    if not key.exists():
                        raise InvalidArgument(f"missing key {key.name} for client certificate {f.name}")
                    ctx.load_cert_chain(str(f), str(key))
        return ctx

    def endpoint(self, host: str, *, mirror: bool = False) -> Endpoint:
        if self.is_insecure(host):
            if host in self._http_only:
                return Endpoint(host, "http", False, mirror)
            return Endpoint(host, "https", False, mirror, fallback_http=True)
        return Endpoint(host, "https", self.ssl_context(host), mirror)

    def endpoints(self, domain: str) -> list[Endpoint]:
        out = []
        if domain == DEFAULT_DOMAIN:
            for m in self.mirrors:
                u = urllib.parse.urlparse(m if "://" in m else "https://" + m)
                ep = self.endpoint(u.netloc, mirror=True)
                if u.scheme == "http":
                    ep = Endpoint(u.netloc, "http", False, True)
                out.append(ep)
            out.append(self.endpoint(DOCKER_HUB_REGISTRY))
        else:
            out.append(self.endpoint(domain))
        return out

    def mark_http(self, host: str) -> None:
        self._http_only.add(host)


class RegistryError(EngineError):
    pass


def _error_text(body: bytes) -> str:
    """`code: message` of a registry's error body, as Docker prints it."""
    try:
        data = json.loads(body)
        errs = data.get("errors") or []
        if errs:
            e = errs[0]
            return f"{str(e.get('code', 'unknown')).lower().replace('_', ' ')}: {e.get('message', '')}".strip()
    except (ValueError, AttributeError):
        pass
    text = body.decode("utf-8", "replace").strip()
    return text[:200] or "no error message"


def _error_code(body: bytes) -> str:
    try:
        errs = json.loads(body).get("errors") or []
        return str(errs[0].get("code", "")) if errs else ""
    except (ValueError, AttributeError):
        return ""


@dataclass
class Manifest:
    digest: str
    media_type: str
    raw: bytes
    data: dict[str, Any] = field(default_factory=dict)


class Repository:
    """One repository on one registry endpoint, with the auth state for it."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        hosts: RegistryHosts,
        endpoint: Endpoint,
        ref: Reference,
        creds: Credentials | None,
        actions: str = "pull",
    ) -> None:
        self.session = session
        self.hosts = hosts
        self.endpoint = endpoint
        self.ref = ref
        self.path = ref.path
        self.creds = creds
        self.actions = actions
        self._authz: str | None = None
        if creds is not None and creds.registry_token:
            self._authz = f"Bearer {creds.registry_token}"
        self.scope = f"repository:{ref.path}:{actions}"
        self._lock = asyncio.Lock()

    def url(self, path: str) -> str:
        return f"{self.endpoint.base}/v2/{path}"

    async def _token(self, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryError("registry sent a bearer challenge without a realm")
        q = {}
        if params.get("service"):
            q["service"] = params["service"]
        q["scope"] = scope
        c = self.creds
        if c is not None and c.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": c.identity_token,
                "service": q.get("service", ""),
                "scope": scope,
                "client_id": "portside",
            }
            resp = await self.session.post(realm, data=form, ssl=self.endpoint.ssl)
        else:
            headers = {}
            if c is not None and c.username:
                headers["Authorization"] = "Basic " + base64.b64encode(f"{c.username}:{c.password}".encode()).decode()
                q["account"] = c.username
            resp = await self.session.get(realm, params=q, headers=headers, ssl=self.endpoint.ssl)
        async with resp:
            body = await resp.read()
            if resp.status in (401, 403):
                raise Unauthorized(f"Get \"{realm}\": unauthorized: {_error_text(body)}")
            if resp.status != 200:
                raise RegistryError(f"token server {realm} answered {resp.status}: {_error_text(body)}")
            try:
                data = json.loads(body)
            except ValueError:
                raise RegistryError(f"token server {realm} sent no JSON") from None
        tok = data.get("token") or data.get("access_token")
        if not tok:
            raise RegistryError(f"token server {realm} sent no token")
        return f"Bearer {tok}"

    async def _authorize(self, challenge_header: str) -> bool:
        """Answers a 401 challenge; False when there is nothing better to try."""
        scheme, _, rest = challenge_header.partition(" ")
        params = dict(_CHALLENGE_RE.findall(rest))
        scheme = scheme.lower()
        if scheme == "bearer":
            new = await self._token(params, self.scope)
        elif scheme == "basic":
            c = self.creds
            if c is None or not c.username:
                return False
            new = "Basic " + base64.b64encode(f"{c.username}:{c.password}".encode()).decode()
        else:
            return False
        if new == self._authz:
            return False
        self._authz = new
        return True

    async def request(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, allow_redirects: bool = True, **kw: Any
    ) -> aiohttp.ClientResponse:
        """Sends a request, answering one auth challenge; falls back to HTTP for insecure registries."""
        for _attempt in range(3):
            h = dict(headers or {})
            if self._authz:
                h["Authorization"] = self._authz
            try:
                resp = await self.session.request(
                    method, url, headers=h, ssl=self.endpoint.ssl, allow_redirects=allow_redirects, **kw
                )
            except (aiohttp.ClientSSLError, aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as e:
                if self.endpoint.fallback_http and url.startswith("https://"):
                    self.hosts.mark_http(self.endpoint.host)
                    self.endpoint = Endpoint(self.endpoint.host, "http", False, self.endpoint.mirror)
                    url = "http://" + url[len("https://") :]
                    continue
                raise Unavailable(f"{method.capitalize()} \"{url}\": {_describe(e)}") from None
            except aiohttp.ClientError as e:
                raise Unavailable(f"{method.capitalize()} \"{url}\": {_describe(e)}") from None
            # It answered in this scheme: later connection errors are errors, not a reason to try plain HTTP.
            self.endpoint.fallback_http = False
            if resp.status == 401 and "WWW-Authenticate" in resp.headers:
                challenge = resp.headers["WWW-Authenticate"]
                resp.release()
                if await self._authorize(challenge):
                    continue
                return await self.session.request(
                    method, url, headers=h, ssl=self.endpoint.ssl, allow_redirects=allow_redirects, **kw
                )
            return resp
        raise Unavailable(f"{method} \"{url}\": too many retries")

    def _not_found_or_denied(self, status: int, body: bytes, what: str, url: str, method: str) -> EngineError:
        code = _error_code(body)
        ref = self.ref.familiar_name
        if not body and status in (401, 403):
            body = json.dumps(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
                if status == 401
                else {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}
            ).encode()
        if status == 401:
            if self.creds is None or self.creds.empty:
                return NotFound(
                    f"pull access denied for {ref}, repository does not exist or may require 'docker login': "
                    f"{_error_text(body)}"
                )
            return Unauthorized(f"{method} \"{url}\": {_error_text(body)}")
        if status == 403:
            return NotFound(
                f"pull access denied for {ref}, repository does not exist or may require 'docker login': "
                f"{_error_text(body)}"
            )
        if status == 404:
            if code == "NAME_UNKNOWN" and not self.endpoint.host.endswith("docker.io"):
                return NotFound(f"{what} not found: {_error_text(body)}")
            return NotFound(f"{what} not found: manifest unknown: manifest unknown")
        if status == 429:
            return Unavailable(f"toomanyrequests: {_error_text(body)}")
        return RegistryError(f"{method} \"{url}\": unexpected status {status}: {_error_text(body)}")

    async def get_manifest(self, reference: str) -> Manifest:
        url = self.url(f"{self.path}/manifests/{reference}")
        accept = ACCEPT + f", {MEDIA_DOCKER_SCHEMA1_SIGNED}, {MEDIA_DOCKER_SCHEMA1}"
        resp = await self.request("GET", url, headers={"Accept": accept})
        async with resp:
            what = f"manifest for {self.ref.familiar_name}:{reference}"
            if reference.startswith("sha256:"):
                what = f"manifest for {self.ref.familiar_name}@{reference}"
            if resp.status != 200:
                body = await resp.read()
                raise self._not_found_or_denied(resp.status, body, what, url, "GET")
            raw = await resp.content.read(MAX_MANIFEST + 1)
            if len(raw) > MAX_MANIFEST:
                raise RegistryError(f"manifest {reference} is larger than {MAX_MANIFEST} bytes: refused")
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
        import hashlib

        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"manifest verification failed for digest {reference}")
        try:
            data = json.loads(raw)
        except ValueError:
            raise RegistryError(f"manifest {reference} is not JSON") from None
        media = data.get("mediaType") or ctype
        if data.get("schemaVersion") == 1 or media in (MEDIA_DOCKER_SCHEMA1, MEDIA_DOCKER_SCHEMA1_SIGNED):
            raise InvalidArgument(schema1_message(str(self.ref.familiar)))
        if media not in MANIFEST_TYPES + INDEX_TYPES:
            # An OCI manifest may leave mediaType out: tell by shape.
            if "manifests" in data:
                media = MEDIA_OCI_INDEX
            elif "layers" in data and "config" in data:
                media = MEDIA_OCI_MANIFEST
            else:
                raise InvalidArgument(f"unsupported manifest media type {media!r} for {self.ref.familiar}")
        return Manifest(digest, media, raw, data)

    async def fetch_blob(
        self,
        digest: str,
        size: int,
        writer: Writer,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Downloads into `writer`, resuming at its offset where the registry allows, with retries."""
        url = self.url(f"{self.path}/blobs/{digest}")
        last: Exception | None = None
        for attempt in range(RETRIES + 1):
            if attempt:
                await asyncio.sleep(0.2 * 2**attempt)
            headers = {}
            if writer.offset:
                headers["Range"] = f"bytes={writer.offset}-"
            try:
                resp = await self.request("GET", url, headers=headers)
                async with resp:
                    if resp.status == 416 and writer.offset == size:
                        return
                    if resp.status not in (200, 206):
                        body = await resp.read()
                        err = self._not_found_or_denied(resp.status, body, f"blob {digest}", url, "GET")
                        if resp.status >= 500:
                            last = err
                            continue
                        raise err
                    if resp.status == 200 and writer.offset:
                        writer.truncate()
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        writer.write(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
                if writer.offset == size:
                    return
                last = RegistryError(f"blob {digest}: connection closed at {writer.offset} of {size} bytes")
            except (TimeoutError, aiohttp.ClientError, Unavailable) as e:
                last = e
        raise Unavailable(f"failed to download {digest}: {last}")

    async def get_blob_bytes(self, digest: str, limit: int) -> bytes:
        """A small blob (an image config) in memory, checked against its digest."""
        import hashlib

        url = self.url(f"{self.path}/blobs/{digest}")
        resp = await self.request("GET", url)
        async with resp:
            if resp.status != 200:
                raise self._not_found_or_denied(resp.status, await resp.read(), f"blob {digest}", url, "GET")
            raw = await resp.content.read(limit + 1)
        if len(raw) > limit:
            raise RegistryError(f"blob {digest} is larger than {limit} bytes: refused")
        if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
            raise DigestMismatch(f"blob {digest}: digest mismatch")
        return raw

    async def blob_exists(self, digest: str) -> bool:
        resp = await self.request("HEAD", self.url(f"{self.path}/blobs/{digest}"))
        async with resp:
            if resp.status == 200:
                return True
            if resp.status == 404:
                return False
            raise self._not_found_or_denied(resp.status, b"", f"blob {digest}", str(resp.url), "HEAD")

    async def mount_blob(self, digest: str, from_path: str) -> bool:
        q = urllib.parse.urlencode({"mount": digest, "from": from_path})
        resp = await self.request("POST", self.url(f"{self.path}/blobs/uploads/?{q}"), data=b"")
        async with resp:
            if resp.status == 201:
                return True
            if resp.status == 202:
                loc = resp.headers.get("Location")
                if loc:  # the registry opened an upload instead: cancel it
                    try:
                        r2 = await self.request("DELETE", urllib.parse.urljoin(str(resp.url), loc))
                        r2.release()
                    except EngineError:
                        pass
            return False

    async def upload_blob(
        self, digest: str, path: Path, size: int, on_bytes: Callable[[int], None] | None = None
    ) -> None:
        resp = await self.request("POST", self.url(f"{self.path}/blobs/uploads/"), data=b"")
        async with resp:
            if resp.status != 202:
                raise self._push_error(resp.status, await resp.read(), str(resp.url))
            loc = resp.headers.get("Location", "")
            upload_url = urllib.parse.urljoin(str(resp.url), loc)
        sep = "&" if "?" in upload_url else "?"
        put_url = f"{upload_url}{sep}digest={urllib.parse.quote(digest)}"

        async def body() -> AsyncIterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    if on_bytes is not None:
                        on_bytes(len(chunk))
                    yield chunk

        resp = await self.request(
            "PUT",
            put_url,
            data=body(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        async with resp:
            if resp.status not in (201, 204):
                raise self._push_error(resp.status, await resp.read(), put_url)

    def _push_error(self, status: int, body: bytes, url: str) -> EngineError:
        if status in (401, 403):
            return Unauthorized(f"denied: requested access to the resource is denied ({_error_text(body)})")
        return RegistryError(f"PUT \"{url}\": unexpected status {status}: {_error_text(body)}")

    async def put_manifest(self, reference: str, media_type: str, raw: bytes) -> str:
        url = self.url(f"{self.path}/manifests/{reference}")
        resp = await self.request("PUT", url, data=raw, headers={"Content-Type": media_type})
        async with resp:
            if resp.status not in (200, 201, 202):
                raise self._push_error(resp.status, await resp.read(), url)
            return resp.headers.get("Docker-Content-Digest", "")

    async def tags(self) -> list[str]:
        url = self.url(f"{self.path}/tags/list")
        resp = await self.request("GET", url)
        async with resp:
            body = await resp.read()
            if resp.status != 200:
                raise self._not_found_or_denied(resp.status, body, f"repository {self.ref.familiar_name}", url, "GET")
            return list(json.loads(body).get("tags") or [])


def _describe(e: aiohttp.ClientError) -> str:
    """A connection error in the words dockerd uses (`dial tcp host:443: connect: connection refused`),
    rather than aiohttp's repr, which names internal objects such as the SSL context."""
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        return f"tls: failed to verify certificate: {e.certificate_error}"
    if isinstance(e, aiohttp.ClientConnectorError) and isinstance(e.os_error, ssl.SSLError):
        return f"tls: {e.os_error}"
    if isinstance(e, aiohttp.ClientConnectorError):
        os_error = e.os_error
        if isinstance(os_error, OSError) and os_error.errno and not isinstance(os_error, socket.gaierror):
            reason = os.strerror(os_error.errno)  # asyncio's own text names the address tuple instead
        elif isinstance(os_error, OSError) and os_error.strerror:
            reason = os_error.strerror
        else:
            reason = str(os_error) or type(os_error).__name__
        if isinstance(os_error, socket.gaierror):
            return f"dial tcp: lookup {e.host}: {reason.lower()}"
        return f"dial tcp {e.host}:{e.port}: connect: {reason.lower()}"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "EOF"
    return str(e) or type(e).__name__


async def catalog(session: aiohttp.ClientSession, hosts: RegistryHosts, domain: str,
                  creds: Credentials | None) -> list[str]:
    """The repository list of a private registry (`/v2/_catalog`), following its pagination."""
    ep = hosts.endpoints(domain)[-1]
    repo = Repository(session, hosts, ep, Reference(domain, "catalog"), creds)
    repo.path = ""
    repo.scope = "registry:catalog:*"
    out: list[str] = []
    url = repo.url("_catalog?n=1000")
    while url:
        resp = await repo.request("GET", url)
        async with resp:
            body = await resp.read()
            if resp.status != 200:
                raise RegistryError(f"GET \"{url}\": {resp.status}: {_error_text(body)}")
            out.extend(json.loads(body).get("repositories") or [])
            link = resp.headers.get("Link", "")
            m = re.match(r"<([^>]+)>", link)
            url = urllib.parse.urljoin(str(resp.url), m.group(1)) if m else ""
    return out


# ---- distribution inspect (GET /distribution/{name}/json) -------------------------------------------------------

MAX_CONFIG = 8 << 20


def _oci_platform(p: dict[str, Any]) -> dict[str, Any]:
    """An OCI platform as Go's ocispec.Platform marshals it: architecture and os always, the rest when set."""
    out: dict[str, Any] = {"architecture": str(p.get("architecture") or ""), "os": str(p.get("os") or "")}
    if p.get("os.version"):
        out["os.version"] = p["os.version"]
    if p.get("os.features"):
        out["os.features"] = list(p["os.features"])
    if p.get("variant"):
        out["variant"] = p["variant"]
    return out


async def distribution_inspect(repo: Repository) -> dict[str, Any]:
    """What dockerd's /distribution/{name}/json answers: the descriptor of the manifest (or index) the reference
    names, and its platforms - each entry of an index, or the single manifest's config os/architecture."""
    manifest = await repo.get_manifest(repo.ref.tag_or_digest)
    platforms_: list[dict[str, Any]] = []
    if manifest.media_type in INDEX_TYPES:
        platforms_ = [_oci_platform(m.get("platform") or {}) for m in manifest.data.get("manifests") or []]
    else:
        cfg = manifest.data.get("config") or {}
        digest = str(cfg.get("digest") or "")
        # dockerd leaves Platforms empty when the config can't be had or names no platform
        try:
            raw = await repo.get_blob_bytes(digest, MAX_CONFIG)
            config = json.loads(raw)
        except (EngineError, ValueError):
            config = None
        if isinstance(config, dict) and (config.get("os") or config.get("architecture")):
            platforms_ = [_oci_platform(config)]
    return {
        "Descriptor": {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.raw)},
        "Platforms": platforms_,
    }
