"""Hostile archive member names (`..`, absolute, through a symlink, hardlinks out) in `docker cp`, `import`,
`load` and a build context: a 400-class error or a write kept inside the target, never a file outside it."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import APIError, BuildError, ImageLoadError

from tests.api.conftest import PortsideDaemon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TAG = uuid.uuid4().hex[:8]
# outside every target: a write here is an escape
OUTSIDE = Path(f"/tmp/pst-escape-{TAG}")


@pytest.fixture(scope="module")
def client(daemon: PortsideDaemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(autouse=True)
def no_escape() -> Iterator[None]:
    yield
    escaped = OUTSIDE.exists() or Path("/tmp/pst-sym-" + TAG).exists()
    OUTSIDE.unlink(missing_ok=True)
    Path("/tmp/pst-sym-" + TAG).unlink(missing_ok=True)
    assert not escaped, "an archive member was written outside its target"


def _tar(members: list[tuple[str, str, bytes]]) -> bytes:
    """(kind "f"/"l"/"h", name, data or link target) -> tar bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "f":
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.SYMTYPE if kind == "l" else tarfile.LNKTYPE
                info.linkname = data.decode()
                t.addfile(info)
    return buf.getvalue()


HOSTILE = {
    "dotdot": [("f", "../../../../../../.." + str(OUTSIDE), b"x")],
    "symlink": [("l", "pst-l", b"/tmp"), ("f", f"pst-l/pst-sym-{TAG}", b"x")],
    "hardlink-out": [("h", "pst-shadow", b"../../../../etc/shadow")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_cp_into_a_container(client: docker.DockerClient, busybox: str, case: str) -> None:
    c = client.containers.create(busybox, ["true"], name=f"pst-arch-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(APIError) as e:
            c.put_archive("/", _tar(HOSTILE[case]))
        assert e.value.status_code == 400, e.value
        assert str(e.value.explanation).startswith("invalid layer: "), e.value.explanation
    finally:
        c.remove(force=True)


def test_cp_absolute_member_lands_inside(client: docker.DockerClient, busybox: str) -> None:
    c = client.containers.create(busybox, ["true"], name=f"pst-arch-{uuid.uuid4().hex[:8]}")
    try:
        assert c.put_archive("/", _tar([("f", str(OUTSIDE), b"x")]))
        _bits, st = c.get_archive(str(OUTSIDE))  # inside the container, as Docker joins it to the target
        assert st["size"] == 1
    finally:
        c.remove(force=True)


@pytest.mark.parametrize("case", ["dotdot", "hardlink-out"])
def test_import_refuses(client: docker.DockerClient, case: str) -> None:
    with pytest.raises(APIError) as e:
        client.api.import_image_from_data(_tar(HOSTILE[case]), repository=f"pst-arch-imp-{TAG}")
    assert 400 <= e.value.status_code < 500, e.value
    assert client.images.list(name=f"pst-arch-imp-{TAG}") == []


def test_load_refuses(client: docker.DockerClient) -> None:
    layer = _tar(HOSTILE["dotdot"])
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [f"pst-arch-load-{TAG}:1"],
                            "Layers": ["l/layer.tar"]}]).encode()
    archive = _tar([("f", "manifest.json", manifest), ("f", cfg_name, config), ("f", "l/layer.tar", layer)])
    # as on Docker, a load's error comes in its progress stream (errorDetail)
    with pytest.raises(ImageLoadError, match="points outside the layer"):
        client.images.load(archive)
    assert client.images.list(name=f"pst-arch-load-{TAG}") == []


def test_a_build_context_member_cannot_leave(client: docker.DockerClient, busybox: str) -> None:
    dockerfile = b"FROM busybox\nCOPY . /ctx/\nRUN ls -R /ctx\n"
    ctx = _tar([("f", "Dockerfile", dockerfile), *HOSTILE["dotdot"]])
    try:
        with pytest.raises((BuildError, APIError), match="points outside the layer"):
            client.images.build(fileobj=io.BytesIO(ctx), custom_context=True, tag=f"pst-arch-build-{TAG}", rm=True)
    finally:
        for img in client.images.list(name=f"pst-arch-build-{TAG}"):
            client.images.remove(img.id, force=True)
