"""Push, tag, remove, prune; a pull killed with SIGKILL; a registry that lies about a blob."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

import engine
from engine.errors import Conflict, NotFound
from engine.images.content import DigestMismatch, digest_bytes
from engine.images.service import ImageService
from tests.testbed.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[ImageService]:
    users: dict[str, list[str]] = {}
    s = ImageService(tmp_path / "root", docker_config=tmp_path / "none.json", certs_dirs=(),
                     in_use=lambda image_id: users.get(image_id, []))
    s.test_users = users  # type: ignore[attr-defined]
    try:
        yield s
    finally:
        s.close()


async def test_push_then_pull_back_gives_identical_digests(
    svc: ImageService, registry: Registry, tmp_path: Path
) -> None:
    src = await svc.pull(f"{registry.host}/testbed/busybox:latest")
    target = f"{registry.host}/pst-push-{os.urandom(4).hex()}/bb:v1"
    svc.tag(src.id, target)
    events: list[dict] = []
    digest = await svc.push(target, progress=events.append)
    statuses = [e.get("status", "") for e in events]
    assert statuses[0].startswith("The push refers to repository [")
    assert any(s.startswith("Mounted from testbed/busybox") for s in statuses), statuses
    assert f"v1: digest: {digest} size: " in statuses[-2]
    assert any(e.get("aux", {}).get("Digest") == digest for e in events)
    assert src.repo_digests[0].endswith("@" + digest)  # the very manifest we pulled
    other = ImageService(tmp_path / "other", docker_config=tmp_path / "none.json", certs_dirs=())
    try:
        back = await other.pull(target)
        assert back.id == src.id
        assert back.repo_digests == [f"{target.rsplit(':', 1)[0]}@{digest}"]
        assert back.diff_ids == src.diff_ids
    finally:
        other.close()


async def test_push_uploads_to_the_auth_registry(
    svc: ImageService, registry: Registry, auth_registry: Registry, tmp_path: Path
) -> None:
    src = await svc.pull(f"{registry.host}/testbed/busybox:latest")
    target = f"{auth_registry.host}/pst-up-{os.urandom(4).hex()}/bb:latest"
    svc.tag(src.id, target)
    auth = {"username": auth_registry.username, "password": auth_registry.password}
    events: list[dict] = []
    digest = await svc.push(target, auth=auth, progress=events.append)
    statuses = [e.get("status", "") for e in events]
    assert "Pushed" in statuses and any(s == "Pushing" for s in statuses)
    status, _headers, body = auth_registry.get(f"/v2/{target.split('/', 1)[1].rsplit(':', 1)[0]}/manifests/latest",
                                              accept=json.loads(svc.content.read(digest))["mediaType"])
    assert status == 200 and digest_bytes(body) == digest
    with pytest.raises(Exception, match=r"denied|unauthorized|authentication"):
        await svc.push(target, auth={"username": "portside", "password": "wrong"})


async def test_tag_remove_prune(svc: ImageService, registry: Registry) -> None:
    users: dict[str, list[str]] = svc.test_users  # type: ignore[attr-defined]
    rec = await svc.pull(f"{registry.host}/testbed/busybox:latest")
    svc.tag(rec.id, "mine:one")
    svc.tag("mine:one", "other/repo:two")
    assert sorted(svc.get(rec.id).repo_tags) == sorted(
        [f"{registry.host}/testbed/busybox:latest", "mine:one", "other/repo:two"]
    )
    with pytest.raises(Conflict, match="referenced in multiple repositories"):
        svc.remove(rec.id)
    assert svc.remove("mine:one") == [{"Untagged": "mine:one"}]
    out = svc.remove(f"{registry.host}/testbed/busybox:latest")
    assert out[0] == {"Untagged": f"{registry.host}/testbed/busybox:latest"}
    assert any(o.get("Untagged", "").startswith(f"{registry.host}/testbed/busybox@") for o in out)
    users[rec.id] = ["c0ffee" * 10]
    with pytest.raises(Conflict, match="container c0ffeec0ffee is using its referenced image"):
        svc.remove("other/repo:two")
    assert svc.remove("other/repo:two", force=True) == [{"Untagged": "other/repo:two"}]
    assert svc.get(rec.id).dangling  # still there: a container uses it
    assert svc.prune()["ImagesDeleted"] is None  # in use: kept
    users.clear()
    res = svc.prune()
    assert res["ImagesDeleted"] == [{"Deleted": rec.id}] and res["SpaceReclaimed"] > 0
    assert svc.list() == []
    assert list(svc.content.digests()) == [] and list(svc.snapshots.chain_ids()) == []
    # delete by id, with its snapshots and blobs
    rec = await svc.pull(f"{registry.host}/testbed/nginx:latest")
    out = svc.remove(rec.id[7:19])
    assert out[-1] == {"Deleted": rec.id}
    with pytest.raises(NotFound):
        svc.get(rec.id)
    assert list(svc.snapshots.chain_ids()) == []


_KILL_CHILD = r"""
import asyncio, json, sys, time
from pathlib import Path
from engine.images.service import ImageService

root, ref = Path(sys.argv[1]), sys.argv[2]
svc = ImageService(root, docker_config=root / "none.json", certs_dirs=(), max_concurrent_downloads=1)
completed = []

def progress(e):
    if e.get("status") == "Download complete":
        completed.append(e["id"])
    if e.get("status") == "Downloading" and completed:
        print(json.dumps({"done": completed, "partial": e["id"]}), flush=True)
        time.sleep(60)  # hold the pull mid-download until the test kills us

asyncio.run(svc.pull(ref, progress=progress))
print("finished", flush=True)
"""


@pytest.mark.timeout(120)
async def test_pull_killed_mid_download_leaves_no_half_image(registry: Registry, tmp_path: Path) -> None:
    ref = f"{registry.host}/testbed/nginx:latest"
    root = tmp_path / "root"
    env = dict(os.environ, PYTHONPATH=str(Path(engine.__file__).resolve().parent.parent))
    proc = subprocess.Popen([sys.executable, "-c", _KILL_CHILD, str(root), ref], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        state = json.loads(line)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    svc = ImageService(root, docker_config=root / "none.json", certs_dirs=())
    try:
        assert svc.list() == []
        with pytest.raises(NotFound):
            svc.get(ref)
        partial = [p for p in (root / "content/ingest").iterdir() if p.name.startswith(state["partial"])]
        assert partial and partial[0].stat().st_size > 0
        events: list[dict] = []
        rec = await svc.pull(ref, progress=events.append)
        # the blob verified before the kill is not fetched again; the partial one resumes where it stopped
        assert not any(e.get("status") == "Downloading" and e["id"] in state["done"] for e in events)
        first = next(e for e in events if e.get("status") == "Downloading" and e["id"] == state["partial"])
        assert first["progressDetail"]["current"] > 0
        assert rec.repo_tags == [ref] and len(svc.list()) == 1
        assert list((root / "content/ingest").iterdir()) == []
    finally:
        svc.close()


@pytest.fixture
async def lying_registry() -> AsyncIterator[str]:
    """A registry whose layer blob does not hash to the digest its manifest announces."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as t:
        ti = tarfile.TarInfo("hello")
        ti.size = 2
        t.addfile(ti, io.BytesIO(b"hi"))
    layer = gzip.compress(layer_tar.getvalue())
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {},
         "rootfs": {"type": "layers", "diff_ids": [digest_bytes(layer_tar.getvalue())]}}
    ).encode()
    evil = layer[:-1] + bytes([layer[-1] ^ 1])
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                    "digest": digest_bytes(config)},
         "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                     "digest": digest_bytes(layer)}]}
    ).encode()
    schema1 = json.dumps({"schemaVersion": 1, "name": "x", "tag": "old", "fsLayers": []}).encode()

    async def handle(request: web.Request) -> web.Response:
        p = request.path
        if p == "/v2/":
            return web.json_response({})
        if p.endswith("/manifests/latest"):
            return web.Response(body=manifest, content_type="application/vnd.docker.distribution.manifest.v2+json")
        if p.endswith("/manifests/old"):
            return web.Response(body=schema1, content_type="application/vnd.docker.distribution.manifest.v1+json")
        if p.endswith(digest_bytes(config)):
            return web.Response(body=config)
        if p.endswith(digest_bytes(layer)):
            return web.Response(body=evil)
        return web.json_response({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_blob_not_matching_its_digest_is_refused(svc: ImageService, lying_registry: str) -> None:
    with pytest.raises(DigestMismatch, match="filesystem layer verification failed for digest sha256:"):
        await svc.pull(f"{lying_registry}/evil/image:latest")
    assert svc.list() == []
    assert [d for d in svc.content.digests() if svc.content.size(d) > 200] == []  # the layer never got in
    with pytest.raises(Exception, match="schema 1 support has been removed"):
        await svc.pull(f"{lying_registry}/evil/image:old")


def test_docker_config_cred_helpers(tmp_path: Path) -> None:
    from engine.images.auth import DockerConfig

    helper = tmp_path / "bin" / "docker-credential-psttest"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\nread server\n"
        "echo '{\"ServerURL\":\"'$server'\",\"Username\":\"u-'$server'\",\"Secret\":\"s\"}'\n"
    )
    helper.chmod(0o755)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "auths": {"plain.example:5000": {"auth": base64.b64encode(b"alice:pw").decode()}},
        "credHelpers": {"helped.example": "psttest"},
    }))
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{helper.parent}:{old}"
    try:
        dc = DockerConfig(cfg)
        c = dc.credentials("plain.example:5000")
        assert c is not None and (c.username, c.password) == ("alice", "pw")
        c = dc.credentials("helped.example")
        assert c is not None and (c.username, c.password) == ("u-helped.example", "s")
        assert dc.credentials("nobody.example") is None
        cfg.write_text(json.dumps({"credsStore": "psttest"}))
        c = dc.credentials("docker.io")
        assert c is not None and c.username == "u-https://index.docker.io/v1/"
    finally:
        os.environ["PATH"] = old


async def test_remove_prunes_untagged_parents_unless_noprune(svc: ImageService, registry: Registry) -> None:
    base = await svc.pull(f"{registry.host}/testbed/busybox:latest")

    def commit_on(image_id: str, name: str, **kw: str) -> str:
        layer = svc.create_container_layer(f"pst-{name}-{os.urandom(4).hex()}", image_id)
        try:
            (layer.upper_dir / name).write_text(name)
            return svc.commit(layer, **kw).id
        finally:
            layer.remove()

    mid = commit_on(base.id, "mid")  # untagged, like a build's intermediate image
    child = commit_on(mid, "child", repo="pst/child", tag="1")
    assert svc.inspect("pst/child:1")["Parent"] == mid and svc.inspect(mid)["Parent"] == base.id
    assert svc.get(base.id).parent == ""
    with pytest.raises(Conflict, match=r"unable to delete [0-9a-f]{12} \(cannot be forced\) - image has dependent "
                                        r"child images"):
        svc.remove(mid, force=True)
    assert svc.remove("pst/child:1", noprune=True) == [{"Untagged": "pst/child:1"}, {"Deleted": child}]
    assert svc.get(mid).dangling  # kept: noprune
    child = commit_on(mid, "child", repo="pst/child", tag="2")
    # untagging the last tag of a parent of others keeps it (untagged); deleting its child then prunes it
    svc.tag(mid, "pst/mid:1")
    assert svc.remove("pst/mid:1") == [{"Untagged": "pst/mid:1"}]
    assert svc.remove("pst/child:2") == [{"Untagged": "pst/child:2"}, {"Deleted": child}, {"Deleted": mid}]
    assert [r.id for r in svc.list()] == [base.id]  # a tagged parent stays
    # prune takes a child and then its untagged parent (newest first)
    mid = commit_on(base.id, "mid2")
    child = commit_on(mid, "child2")
    assert {d["Deleted"] for d in svc.prune()["ImagesDeleted"] or []} == {mid, child}
    assert [r.id for r in svc.list()] == [base.id]
