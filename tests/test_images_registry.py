"""Registry client paths beyond plain pulls: bearer-token challenges, docker.io mirrors, catalog/tags, search."""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from engine.errors import EngineError, Unauthorized, Unavailable
from engine.images.content import digest_bytes
from engine.images.service import ImageService
from tests.testbed.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ImageService]:
    s = ImageService(tmp_path / "root", docker_config=tmp_path / "none.json", certs_dirs=())
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
async def token_registry() -> AsyncIterator[tuple[str, list[str]]]:
    """A registry that answers with a Bearer challenge and a token server that wants basic auth (u:p), as
    Docker Hub and most hosted registries do. Yields its host and the scopes requested."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as t:
        ti = tarfile.TarInfo("hello")
        ti.size = 6
        t.addfile(ti, io.BytesIO(b"token\n"))
    layer = gzip.compress(layer_tar.getvalue())
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest_bytes(layer_tar.getvalue())]}}).encode()
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                    "digest": digest_bytes(config)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": len(layer),
                     "digest": digest_bytes(layer)}]}).encode()
    scopes: list[str] = []
    port_box: list[int] = []

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(b"u:p").decode():
            return web.json_response({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}, status=401)
        scopes.append(request.query.get("scope", ""))
        return web.json_response({"token": "tok-123"})

    async def v2(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer tok-123":
            realm = f"http://127.0.0.1:{port_box[0]}/token"
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, status=401,
                headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="pst",scope="repository:t/img:pull"'})
        p = request.path
        if p.endswith("/manifests/latest"):
            return web.Response(body=manifest, content_type="application/vnd.oci.image.manifest.v1+json")
        for blob in (config, layer):
            if p.endswith(digest_bytes(blob)):
                return web.Response(body=blob)
        return web.json_response({"errors": [{"code": "NOT_FOUND", "message": "nope"}]}, status=404)

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_route("*", "/v2/{tail:.*}", v2)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port_box.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    try:
        yield f"127.0.0.1:{port_box[0]}", scopes
    finally:
        await runner.cleanup()


async def test_bearer_token_challenge(svc: ImageService, token_registry: tuple[str, list[str]]) -> None:
    host, scopes = token_registry
    rec = await svc.pull(f"{host}/t/img:latest", auth={"username": "u", "password": "p"})
    assert rec.repo_tags == [f"{host}/t/img:latest"]
    assert scopes and scopes[0] == "repository:t/img:pull"
    with pytest.raises(Unauthorized, match="bad credentials"):
        await svc.pull(f"{host}/t/img:latest", auth={"username": "u", "password": "wrong"})


async def test_docker_io_goes_to_the_mirror(registry: Registry, tmp_path: Path) -> None:
    # docker.io/testbed/busybox, served by the mirror: no request leaves 127.0.0.1 when the mirror answers.
    svc = ImageService(tmp_path / "root", docker_config=tmp_path / "none.json", certs_dirs=(),
                       registry_mirrors=[registry.url])
    try:
        rec = await svc.pull("testbed/busybox:latest")
        assert rec.repo_tags == ["testbed/busybox:latest"]
        assert svc.get("docker.io/testbed/busybox").id == rec.id
        assert rec.repo_digests[0].startswith("testbed/busybox@sha256:")
    finally:
        svc.close()


async def test_catalog_tags_and_search(svc: ImageService, registry: Registry) -> None:
    repos = await svc.catalog(registry.host)
    assert {"testbed/busybox", "testbed/nginx", "testbed/multi"} <= set(repos)
    assert set(await svc.tags_of(f"{registry.host}/testbed/busybox")) >= {"latest", "oci"}
    with pytest.raises(EngineError, match="not found"):
        await svc.tags_of(f"{registry.host}/testbed/no-such-repo")
    # the registry has no v1 search: a clear error, not a hang
    with pytest.raises(Unavailable, match="search"):
        await svc.search(f"{registry.host}/busybox")


async def test_unreachable_registry_is_reported_in_dockerds_words(svc: ImageService) -> None:
    from tests.testbed.registry import free_port

    port = free_port()  # nothing listens there
    with pytest.raises(Unavailable) as err:
        await svc.pull(f"127.0.0.1:{port}/testbed/busybox:latest")
    message = err.value.message
    assert f'"http://127.0.0.1:{port}/v2/' in message or f'"https://127.0.0.1:{port}/v2/' in message
    assert f"dial tcp 127.0.0.1:{port}: connect: connection refused" in message
    assert "SSLContext" not in message and "object at 0x" not in message
