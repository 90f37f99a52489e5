"""save/load (ours, Docker 20.10's and 25's archive forms), import, commit, diff, export and docker cp."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import InvalidArgument, NotFound
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
def fresh(tmp_path: Path) -> Iterator[ImageService]:
    s = ImageService(tmp_path / "fresh", docker_config=tmp_path / "none.json", certs_dirs=())
    try:
        yield s
    finally:
        s.close()


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: m for m in t.getmembers()}


def add(tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    tar.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


async def test_save_then_load_keeps_ids_and_tags(
    svc: ImageService, fresh: ImageService, registry: Registry
) -> None:
    a = await svc.pull(f"{registry.host}/testbed/nginx:latest")
    b = await svc.pull(f"{registry.host}/testbed/zstd:latest")
    svc.tag(a.id, "web:v1")
    data = b"".join(svc.save(["web:v1", f"{registry.host}/testbed/zstd:latest"]))
    names = members(data)
    assert {"manifest.json", "index.json", "oci-layout"} <= set(names)
    manifest = json.loads(tarfile.open(fileobj=io.BytesIO(data)).extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == ["web:v1"] and manifest[0]["Config"] == f"blobs/sha256/{a.id[7:]}"
    msgs = fresh.load(io.BytesIO(data))
    assert msgs == ["Loaded image: web:v1", f"Loaded image: {registry.host}/testbed/zstd:latest"]
    assert fresh.get("web:v1").id == a.id
    assert fresh.get(f"{registry.host}/testbed/zstd").id == b.id
    # the manifest (so the repo digest on push) survives too
    assert fresh.get(a.id).manifest_digest == a.manifest_digest
    with pytest.raises(NotFound):
        svc.save(["nope:nope"])


async def _busybox_layer(svc: ImageService, registry: Registry) -> tuple[bytes, bytes, str]:
    rec = await svc.pull(f"{registry.host}/testbed/busybox:latest")
    layer_digest = json.loads(svc.content.read(rec.manifest_digest))["layers"][0]["digest"]
    raw = zlib.decompress(svc.content.read(layer_digest), 31)
    return svc.content.read(rec.id), raw, rec.id


async def test_load_docker_20_10_archive(svc: ImageService, fresh: ImageService, registry: Registry) -> None:
    config, layer, image_id = await _busybox_layer(svc, registry)
    buf = io.BytesIO()
    lid = "f" * 64
    with tarfile.open(fileobj=buf, mode="w") as t:
        add(t, lid, kind=tarfile.DIRTYPE)
        add(t, f"{lid}/VERSION", b"1.0")
        add(t, f"{lid}/json", b'{"id":"' + lid.encode() + b'"}')
        add(t, f"{lid}/layer.tar", layer)
        add(t, f"{image_id[7:]}.json", config)
        add(t, "manifest.json", json.dumps(
            [{"Config": f"{image_id[7:]}.json", "RepoTags": ["old/docker:20"], "Layers": [f"{lid}/layer.tar"]}]
        ).encode())
        add(t, "repositories", json.dumps({"old/docker": {"20": lid}}).encode())
    assert fresh.load(io.BytesIO(buf.getvalue())) == ["Loaded image: old/docker:20"]
    assert fresh.get("old/docker:20").id == image_id


async def test_load_docker_25_archive_with_links(svc: ImageService, fresh: ImageService, registry: Registry) -> None:
    config, layer, image_id = await _busybox_layer(svc, registry)
    ld = digest_bytes(layer)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        add(t, "blobs/sha256/" + ld[7:], layer)
        add(t, "blobs/sha256/" + image_id[7:], config)
        add(t, f"{'e' * 64}/layer.tar", kind=tarfile.SYMTYPE, link=f"../blobs/sha256/{ld[7:]}")
        add(t, "manifest.json", json.dumps(
            [{"Config": f"blobs/sha256/{image_id[7:]}", "RepoTags": ["new/docker:25"],
              "Layers": [f"{'e' * 64}/layer.tar"]}]
        ).encode())
        add(t, "index.json", b'{"schemaVersion":2,"manifests":[]}')
        add(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    assert fresh.load(io.BytesIO(buf.getvalue())) == ["Loaded image: new/docker:25"]
    assert fresh.get("new/docker:25").id == image_id


@pytest.mark.parametrize(
    "layer_entry",
    [("../../etc/passwd", None), ("evil/layer.tar", "/etc/passwd"), ("evil/layer.tar", "../../../etc/shadow")],
)
def test_load_refuses_paths_outside_the_archive(fresh: ImageService, layer_entry: tuple[str, str | None]) -> None:
    name, link = layer_entry
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        if link is not None:
            add(t, name, kind=tarfile.SYMTYPE, link=link)
        add(t, "c.json", b'{"rootfs":{"type":"layers","diff_ids":["sha256:' + b"0" * 64 + b'"]}}')
        add(t, "manifest.json", json.dumps([{"Config": "c.json", "RepoTags": ["x:y"], "Layers": [name]}]).encode())
    with pytest.raises(InvalidArgument):
        fresh.load(io.BytesIO(buf.getvalue()))
    assert fresh.list() == []


def test_import_with_changes(svc: ImageService) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        add(t, "bin", kind=tarfile.DIRTYPE)
        add(t, "bin/tool", b"#!/bin/sh\n")
        add(t, "etc/hello", b"imported\n")
    rec = svc.import_(io.BytesIO(buf.getvalue()), repo="imported/app", tag="v2",
                      changes=['CMD ["/bin/tool", "run"]', "ENV A=1 B=two", "WORKDIR /srv", "EXPOSE 8080",
                               "LABEL team=core"], message="from a tarball")
    assert rec.repo_tags == ["imported/app:v2"]
    c = rec.container_config
    assert c["Cmd"] == ["/bin/tool", "run"] and c["Env"] == ["A=1", "B=two"] and c["WorkingDir"] == "/srv"
    assert c["ExposedPorts"] == {"8080/tcp": {}} and c["Labels"] == {"team": "core"}
    assert svc.history(rec.id)[0]["Comment"] == "from a tarball"
    layer = svc.create_container_layer("pst-import-" + os.urandom(4).hex(), rec.id)
    root = svc.root / "mnt-import"
    layer.mount(root)
    try:
        assert (root / "etc/hello").read_text() == "imported\n"
    finally:
        layer.unmount(root)
        layer.remove()
    with pytest.raises(InvalidArgument, match="RUN is not a valid change command"):
        svc.import_(io.BytesIO(buf.getvalue()), changes=["RUN true"])


async def test_commit_diff_export(svc: ImageService, registry: Registry) -> None:
    base = await svc.pull(f"{registry.host}/testbed/busybox:latest")
    layer = svc.create_container_layer("pst-commit-" + os.urandom(4).hex(), base.id)
    root = svc.root / "mnt-commit"
    layer.mount(root)
    try:
        (root / "etc/added").write_text("committed\n")
        (root / "etc/passwd").write_text((root / "etc/passwd").read_text() + "extra:x:5:5::/:/bin/sh\n")
        (root / "etc/group").unlink()
        (root / "newdir").mkdir()
    finally:
        layer.unmount(root)
    changes = {c["Path"]: c["Kind"] for c in layer.changes()}
    assert changes == {"/etc": 0, "/etc/added": 1, "/etc/passwd": 0, "/etc/group": 2, "/newdir": 1}
    exported = members(b"".join(svc.export(layer)))
    assert "etc/added" in exported and "bin/busybox" in exported and "etc/group" not in exported
    new = svc.commit(layer, repo="committed/img", tag="1", comment="my change", changes=["CMD /bin/sh"],
                     config={"Env": ["X=1"]})
    assert new.repo_tags == ["committed/img:1"] and len(new.diff_ids) == len(base.diff_ids) + 1
    assert new.container_config["Cmd"] == ["/bin/sh", "-c", "/bin/sh"] and new.container_config["Env"] == ["X=1"]
    layer.remove()
    # a container of the committed image sees the change
    l2 = svc.create_container_layer("pst-commit2-" + os.urandom(4).hex(), "committed/img:1")
    l2.mount(root)
    try:
        assert (root / "etc/added").read_text() == "committed\n"
        assert "extra:x:5:5" in (root / "etc/passwd").read_text()
        assert not (root / "etc/group").exists()
        assert (root / "bin/busybox").is_file()
    finally:
        l2.unmount(root)
        l2.remove()
    # the committed image survives save/load and pushes like any other
    data = b"".join(svc.save(["committed/img:1"]))
    assert new.id in {f"sha256:{n.split('/')[-1]}" for n in members(data)}


async def test_cp_through_symlinks_stays_inside(svc: ImageService, registry: Registry, tmp_path: Path) -> None:
    base = await svc.pull(f"{registry.host}/testbed/busybox:latest")
    layer = svc.create_container_layer("pst-cp-" + os.urandom(4).hex(), base.id)
    root = svc.root / "mnt-cp"
    layer.mount(root)
    marker = "pst-cp-" + os.urandom(6).hex()
    try:
        os.symlink("/", root / "escape")
        os.symlink("../../../../../../..", root / "up")
        os.symlink("/etc", root / "etclink")
        (root / "etc/mine").write_text("container file\n")
        # out of the container: the symlinks resolve inside its root
        st, stream = svc.archive_get(layer, "/etclink/mine", rootfs=root)
        assert st["name"] == "mine" and st["size"] == len("container file\n")
        got = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
        assert got.extractfile("mine").read() == b"container file\n"  # type: ignore[union-attr]
        _st, stream = svc.archive_get(layer, "/up/etc/passwd", rootfs=root)
        passwd = tarfile.open(fileobj=io.BytesIO(b"".join(stream))).extractfile("passwd").read()  # type: ignore[union-attr]
        assert passwd == (root / "etc/passwd").read_bytes()
        _st, stream = svc.archive_get(layer, "/etc", rootfs=root)
        assert "etc/mine" in members(b"".join(stream))
        assert svc.path_stat(layer, "/escape", rootfs=root)["linkTarget"] == "/"
        with pytest.raises(NotFound, match="Could not find the file /nope in container"):
            svc.path_stat(layer, "/nope", rootfs=root)
        # into the container: same
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            add(t, marker, b"dropped\n")
        for dest in ("/escape/tmp", "/up/tmp", "/up"):
            svc.archive_put(layer, dest, io.BytesIO(buf.getvalue()), rootfs=root)
        assert (root / "tmp" / marker).read_text() == "dropped\n" and (root / marker).exists()
        assert not Path("/tmp", marker).exists() and not Path("/", marker).exists()
        # a tar that plants a symlink and writes through it is refused
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            add(t, "lnk", kind=tarfile.SYMTYPE, link=str(tmp_path))
            add(t, f"lnk/{marker}", b"x")
        with pytest.raises(InvalidArgument):
            svc.archive_put(layer, "/tmp", io.BytesIO(buf.getvalue()), rootfs=root)
        assert not (tmp_path / marker).exists()
    finally:
        layer.unmount(root)
    # a stopped container: the layer is mounted just for the copy
    assert svc.path_stat(layer, "/etc/mine")["size"] == len("container file\n")
    layer.remove()


async def test_archives_interoperate_with_skopeo(
    svc: ImageService, fresh: ImageService, registry: Registry, tmp_path: Path
) -> None:
    """containers/image (skopeo) is an independent reader and writer of docker-archive and OCI archives."""
    import subprocess

    rec = await svc.pull(f"{registry.host}/testbed/nginx:latest")
    svc.tag(rec.id, "interop/nginx:saved")
    saved = tmp_path / "saved.tar"
    saved.write_bytes(b"".join(svc.save(["interop/nginx:saved"])))
    for transport in ("docker-archive", "oci-archive"):
        out = tmp_path / f"out-{transport}"
        subprocess.run(["skopeo", "copy", "--quiet", f"{transport}:{saved}", f"dir:{out}"], check=True,
                       capture_output=True, timeout=120)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["config"]["digest"] == rec.id
    # and an archive skopeo writes (Docker's docker-archive layout) loads here
    made = tmp_path / "skopeo.tar"
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                    f"docker://{registry.host}/testbed/layers:latest", f"docker-archive:{made}:skopeo/layers:v1"],
                   check=True, capture_output=True, timeout=120)
    assert fresh.load(io.BytesIO(made.read_bytes())) == ["Loaded image: skopeo/layers:v1"]
    pulled = await svc.pull(f"{registry.host}/testbed/layers:latest")
    assert fresh.get("skopeo/layers:v1").id == pulled.id
