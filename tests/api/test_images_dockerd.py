"""Images between portside and a real dockerd 20.10 (save in one, load in the other: same id, tags, a container
runs), plus rmi's --no-prune of untagged parents and cp's refusal to put a directory over a file or the reverse."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import PortsideDaemon
from tests.testbed import dockerd as testbed_dockerd
from tests.testbed.dockerd import Dockerd
from tests.testbed.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def dockerd(registry: Registry) -> Iterator[Dockerd]:
    """A private dockerd on temp roots (no iptables, no bridge)."""
    if not testbed_dockerd.available():
        pytest.skip("dockerd is not installed, or we are not root")
    with testbed_dockerd.running(insecure_registries=(registry.host,)) as d:
        yield d


def test_portside_save_loads_in_dockerd_and_runs(daemon: PortsideDaemon, dockerd: Dockerd, registry: Registry,
                                                 tmp_path: Path) -> None:
    src = f"{registry.host}/testbed/busybox:latest"
    tag = f"pst-interop-{os.urandom(3).hex()}:v1"
    assert daemon.docker("pull", src).returncode == 0
    assert daemon.docker("tag", src, tag).returncode == 0
    image_id = json.loads(daemon.docker("image", "inspect", tag).stdout)[0]["Id"]
    archive = tmp_path / "from-portside.tar"
    try:
        out = daemon.docker("save", "-o", str(archive), tag)
        assert out.returncode == 0, out.stderr
        load = dockerd.docker("load", "-i", str(archive))
        assert load.returncode == 0, load.stderr
        assert f"Loaded image: {tag}" in load.stdout
        insp = json.loads(dockerd.docker("image", "inspect", tag).stdout)[0]
        assert insp["Id"] == image_id and insp["RepoTags"] == [tag]
        run = dockerd.docker("run", "--rm", "--network", "none", tag, "echo", "hello from dockerd")
        assert run.returncode == 0, run.stderr
        assert run.stdout == "hello from dockerd\n"
    finally:
        dockerd.docker("rmi", "-f", tag)
        daemon.docker("rmi", tag)


def test_dockerd_save_loads_in_portside_with_the_same_id(daemon: PortsideDaemon, dockerd: Dockerd,
                                                         registry: Registry, tmp_path: Path) -> None:
    src = f"{registry.host}/testbed/nginx:latest"
    tag = f"pst-fromdockerd-{os.urandom(3).hex()}:v2"
    pull = dockerd.docker("pull", src)
    assert pull.returncode == 0, pull.stderr
    assert dockerd.docker("tag", src, tag).returncode == 0
    image_id = json.loads(dockerd.docker("image", "inspect", tag).stdout)[0]["Id"]
    archive = tmp_path / "from-dockerd.tar"
    try:
        out = dockerd.docker("save", "-o", str(archive), tag)
        assert out.returncode == 0, out.stderr
        load = daemon.docker("load", "-i", str(archive))
        assert load.returncode == 0, load.stderr
        assert f"Loaded image: {tag}" in load.stdout
        insp = json.loads(daemon.docker("image", "inspect", tag).stdout)[0]
        assert insp["Id"] == image_id and tag in insp["RepoTags"]
        run = daemon.docker("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", tag, "-c",
                            "test -x /usr/sbin/nginx && echo ok")
        assert run.returncode == 0 and run.stdout == "ok\n", run.stderr
    finally:
        dockerd.docker("rmi", "-f", tag, src)
        daemon.docker("rmi", tag)


def test_rmi_no_prune_keeps_untagged_parents(daemon: PortsideDaemon, registry: Registry) -> None:
    src = f"{registry.host}/testbed/busybox:latest"
    assert daemon.docker("pull", src).returncode == 0
    made: list[str] = []

    def commit(image: str, repo: str = "") -> str:
        name = f"pst-np-{os.urandom(4).hex()}"
        made.append(name)
        assert daemon.docker("create", "--name", name, image, "true").returncode == 0
        out = daemon.docker("commit", name, *([repo] if repo else []))
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    child_tag = f"pst-np-child-{os.urandom(3).hex()}:1"
    try:
        mid = commit(src)
        child = commit(mid, child_tag)
        assert json.loads(daemon.docker("image", "inspect", child_tag).stdout)[0]["Parent"] == mid
        listed = daemon.docker("images", "-q", "--no-trunc").stdout.split()
        assert mid not in listed and mid in daemon.docker("images", "-a", "-q", "--no-trunc").stdout.split()
        for name in made:
            daemon.docker("rm", name)
        rmi = daemon.docker("rmi", "--no-prune", child_tag)
        assert rmi.returncode == 0, rmi.stderr
        assert f"Deleted: {child}" in rmi.stdout and f"Deleted: {mid}" not in rmi.stdout
        assert daemon.docker("image", "inspect", mid).returncode == 0  # kept, untagged
        child = commit(mid, child_tag)
        daemon.docker("rm", made[-1])
        rmi = daemon.docker("rmi", child_tag)
        assert rmi.returncode == 0, rmi.stderr
        assert f"Deleted: {child}" in rmi.stdout and f"Deleted: {mid}" in rmi.stdout
    finally:
        for name in made:
            daemon.docker("rm", "-f", name)
        daemon.docker("rmi", "-f", child_tag)


def _tar(*entries: tuple[str, bool]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, is_dir in entries:
            ti = tarfile.TarInfo(name)
            if is_dir:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size, ti.mode = 2, 0o644
                tf.addfile(ti, io.BytesIO(b"x\n"))
    return buf.getvalue()


def test_cp_no_overwrite_dir_non_dir(daemon: PortsideDaemon, registry: Registry) -> None:
    src = f"{registry.host}/testbed/busybox:latest"
    assert daemon.docker("pull", src).returncode == 0
    name = f"pst-cpnod-{os.urandom(4).hex()}"
    assert daemon.docker("create", "--name", name, src, "true").returncode == 0
    try:
        put = f"/containers/{name}/archive?path=/&noOverwriteDirNonDir=1"
        status, _, body = daemon.request("PUT", put, _tar(("etc", False)))
        assert status == 500, body
        assert json.loads(body)["message"] == 'cannot overwrite directory "/etc" with non-directory "/"'
        status, _, body = daemon.request("PUT", put, _tar(("etc/passwd", True)))
        assert status == 500, body
        assert json.loads(body)["message"] == 'cannot overwrite non-directory "/etc/passwd" with directory "/"'
        # allowed: new entries, and a directory over a directory
        status, _, body = daemon.request("PUT", put, _tar(("etc", True), ("etc/pst-new", False)))
        assert status == 200, body
        # without the flag a file replaces a directory, as in Docker
        status, _, body = daemon.request("PUT", f"/containers/{name}/archive?path=/tmp", _tar(("d", True)))
        assert status == 200, body
        status, _, body = daemon.request("PUT", f"/containers/{name}/archive?path=/tmp", _tar(("d", False)))
        assert status == 200, body
    finally:
        daemon.docker("rm", "-f", name)
