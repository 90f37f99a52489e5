"""Pulls from the test bed's real registries: every image form, platforms, layer order, auth, errors."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import EngineError, InvalidArgument, NotFound, Unauthorized
from engine.images import platform as platforms
from engine.images.service import ImageService
from tests.conftest import TestBed
from tests.testbed.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def svc() -> Iterator[ImageService]:
    root = Path(tempfile.mkdtemp(prefix="portside-test-images-"))
    s = ImageService(root, docker_config=root / "no-config.json", certs_dirs=())
    try:
        yield s
    finally:
        s.close()
        shutil.rmtree(root, ignore_errors=True)


def tree(root: Path) -> dict[str, tuple[str, str]]:
    """path -> (kind, content/target) of a directory, for comparing root filesystems."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", "")
            elif p.is_file():
                out[rel] = ("file", p.read_bytes().hex()[:64] + str(p.stat().st_size))
            else:
                out[rel] = ("other", "")
    return out


@pytest.fixture
def mounted(svc: ImageService) -> Iterator[callable]:  # type: ignore[valid-type]
    made: list[tuple[Path, object]] = []

    def mount(image: str) -> Path:
        cid = "c" + os.urandom(8).hex()
        layer = svc.create_container_layer(cid, image)
        target = svc.root / "mnt" / cid
        layer.mount(target)
        made.append((target, layer))
        return target

    try:
        yield mount
    finally:
        for target, layer in made:
            layer.unmount(target)  # type: ignore[attr-defined]
            layer.remove()  # type: ignore[attr-defined]


@pytest.mark.parametrize("tag", ["busybox:latest", "busybox:oci", "nginx:latest", "nginx:oci", "zstd:latest"])
async def test_every_form_pulls_and_runs_from_its_rootfs(
    svc: ImageService, registry: Registry, testbed: TestBed, mounted, tag: str
) -> None:
    events: list[dict] = []
    rec = await svc.pull(f"{registry.host}/testbed/{tag}", progress=events.append)
    assert rec.id.startswith("sha256:")
    assert rec.repo_tags == [f"{registry.host}/testbed/{tag}"]
    assert rec.repo_digests and rec.repo_digests[0].startswith(f"{registry.host}/testbed/")
    statuses = [e.get("status", "") for e in events]
    repo_name, _, tag_name = tag.partition(":")
    assert events[0]["status"] == f"Pulling from testbed/{repo_name}" and events[0]["id"] == tag_name
    assert "Pull complete" in statuses and "Download complete" in statuses
    assert any(s.startswith("Digest: sha256:") for s in statuses)
    assert statuses[-1] == f"Status: Downloaded newer image for {registry.host}/testbed/{tag}"
    root = mounted(rec.id)
    expected = testbed.nginx_rootfs if tag.startswith("nginx") else testbed.busybox_rootfs
    got = tree(root)
    want = tree(expected)
    # The shared rootfs may gain files from tests that run a process on it: compare what the image has.
    extra = {"etc/compression"} if tag.startswith("zstd") else set()
    assert {k: v for k, v in got.items() if k not in extra} == {k: v for k, v in want.items() if k in got}
    assert len(got) >= 0.97 * len(want) and "bin/busybox" in got
    if tag.startswith("zstd"):
        assert (root / "etc/compression").read_text() == "zstd\n"
    # a second pull finds everything in place
    events.clear()
    again = await svc.pull(f"{registry.host}/testbed/{tag}", progress=events.append)
    assert again.id == rec.id
    assert events[-1]["status"] == f"Status: Image is up to date for {registry.host}/testbed/{tag}"
    assert not any(e.get("status") == "Downloading" for e in events)


async def test_multi_platform_index_picks_host_and_requested(svc: ImageService, registry: Registry, mounted) -> None:
    host = platforms.host()
    rec = await svc.pull(f"{registry.host}/testbed/multi:latest")
    assert rec.config["architecture"] == host.architecture
    root = mounted(rec.id)
    assert (root / "etc/platform").read_text() == f"linux/{host.architecture}\n"
    other = "arm64" if host.architecture == "amd64" else "amd64"
    rec2 = await svc.pull(f"{registry.host}/testbed/multi:latest", platform=f"linux/{other}")
    assert rec2.config["architecture"] == other and rec2.id != rec.id
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        await svc.pull(f"{registry.host}/testbed/multi:latest", platform="linux/s390x")


async def test_layers_apply_in_order_with_whiteouts_and_opaque_dirs(
    svc: ImageService, registry: Registry, mounted
) -> None:
    rec = await svc.pull(f"{registry.host}/testbed/layers:latest")
    assert len(rec.diff_ids) == 3
    root = mounted(rec.id)
    assert (root / "data/keep").read_text() == "keep\n"
    assert (root / "data/hard").read_text() == "keep\n"
    assert not (root / "data/gone").exists() and not (root / "data/gone").is_symlink()
    assert not (root / "data/gonedir").exists()
    assert sorted(os.listdir(root / "opaque")) == ["new"]
    assert (root / "filedir").is_dir() and (root / "filedir/now-a-dir").read_text() == "dir now\n"
    assert os.readlink(root / "dirlink") == "data"
    assert (root / "added").stat().st_mode & 0o777 == 0o755
    assert (root / "bin/busybox").is_file()


async def test_records_inspect_history_list(svc: ImageService, registry: Registry) -> None:
    rec = await svc.pull(f"{registry.host}/testbed/nginx:latest")
    info = svc.inspect(f"{registry.host}/testbed/nginx")
    assert info["Id"] == rec.id
    assert info["RootFS"]["Layers"] == rec.diff_ids and len(rec.diff_ids) == 2
    assert info["Os"] == "linux" and info["Architecture"]
    assert info["Config"]["Cmd"] and "Env" in info["Config"]
    assert info["Size"] > 1_000_000
    assert svc.get(rec.id[7:19]).id == rec.id  # short id
    hist = svc.history(rec.id)
    assert hist[0]["Id"] == rec.id and len(hist) == 2 and sum(h["Size"] for h in hist) == info["Size"]
    [summary] = [r.summary() for r in svc.list()]
    assert summary["RepoTags"] == [f"{registry.host}/testbed/nginx:latest"]
    with pytest.raises(NotFound, match="No such image: nope"):
        svc.get("nope")


async def test_missing_tag_and_repository_give_docker_errors(svc: ImageService, registry: Registry) -> None:
    with pytest.raises(NotFound, match="manifest unknown"):
        await svc.pull(f"{registry.host}/testbed/busybox:no-such-tag")
    with pytest.raises(NotFound, match="not found"):
        await svc.pull(f"{registry.host}/testbed/no-such-repo:latest")
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        await svc.pull("UPPER/Case:tag!")
    assert svc.list() == []


def _docker_config(path: Path, host: str, user: str, password: str) -> Path:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


async def test_tls_basic_auth_registry_with_docker_config(auth_registry: Registry, tmp_path: Path) -> None:
    certs = tmp_path / "certs.d"
    (certs / auth_registry.host).mkdir(parents=True)
    assert auth_registry.ca_cert is not None
    shutil.copy(auth_registry.ca_cert, certs / auth_registry.host / "ca.crt")
    assert auth_registry.username and auth_registry.password
    good = _docker_config(tmp_path / "good.json", auth_registry.host, auth_registry.username, auth_registry.password)
    bad = _docker_config(tmp_path / "bad.json", auth_registry.host, auth_registry.username, "wrong-password")
    ref = f"{auth_registry.host}/testbed/busybox:latest"
    # 127.0.0.1 counts as insecure (as in Docker) unless we say otherwise; verify the CA for real here.
    svc = ImageService(tmp_path / "root", docker_config=good, certs_dirs=[certs])
    svc.hosts.is_insecure = lambda host: False  # type: ignore[method-assign]
    try:
        rec = await svc.pull(ref)
        assert rec.repo_tags == [ref]
    finally:
        svc.close()
    svc = ImageService(tmp_path / "root2", docker_config=bad, certs_dirs=[certs])
    svc.hosts.is_insecure = lambda host: False  # type: ignore[method-assign]
    try:
        with pytest.raises(Unauthorized) as e:
            await svc.pull(ref)
        assert e.value.status == 401 and "unauthorized" in e.value.message
        # no credentials at all: Docker's "pull access denied" wording
        anon = ImageService(tmp_path / "root3", docker_config=tmp_path / "none.json", certs_dirs=[certs])
        anon.hosts.is_insecure = lambda host: False  # type: ignore[method-assign]
        try:
            with pytest.raises(EngineError, match="may require 'docker login'"):
                await anon.pull(ref)
        finally:
            anon.close()
        # credentials of X-Registry-Auth win over the config file
        rec = await svc.pull(
            ref, auth={"username": auth_registry.username, "password": auth_registry.password}
        )
        assert rec.repo_tags == [ref]
    finally:
        svc.close()
    # without the CA the certificate is refused
    svc = ImageService(tmp_path / "root4", docker_config=good, certs_dirs=[])
    svc.hosts.is_insecure = lambda host: False  # type: ignore[method-assign]
    try:
        with pytest.raises(EngineError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await svc.pull(ref)
    finally:
        svc.close()
