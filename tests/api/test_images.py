"""Images through the docker CLI and docker-py: pull from the test registry, list, inspect, history, tag, rmi,
errors in the stream, and a client hanging up mid-pull."""

from __future__ import annotations

import json
import os
import subprocess
import time

import docker
import pytest

from tests.api.conftest import DOCKER, PortsideDaemon
from tests.testbed.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_cli_pull_tag_list_inspect_history_rmi(daemon: PortsideDaemon, registry: Registry) -> None:
    src = f"{registry.host}/testbed/busybox:oci"
    out = daemon.docker("pull", src)
    assert out.returncode == 0, out.stderr
    assert "Digest: sha256:" in out.stdout and f"{src}" in out.stdout
    tag = f"pst-img-{os.getpid()}:v1"
    assert daemon.docker("tag", src, tag).returncode == 0
    ls = daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert tag in ls and src in ls
    insp = json.loads(daemon.docker("image", "inspect", tag).stdout)[0]
    assert insp["Id"].startswith("sha256:") and tag in insp["RepoTags"]
    hist = daemon.docker("history", "-q", tag)
    assert hist.returncode == 0 and hist.stdout.strip()
    rmi = daemon.docker("rmi", tag)
    assert rmi.returncode == 0 and f"Untagged: {tag}" in rmi.stdout
    missing = daemon.docker("image", "inspect", tag)
    assert missing.returncode != 0 and "No such image" in missing.stderr


def test_pull_of_a_missing_repository_fails_in_the_stream(daemon: PortsideDaemon, registry: Registry) -> None:
    out = daemon.docker("pull", f"{registry.host}/testbed/no-such-repo:latest")
    assert out.returncode != 0
    assert "not found" in out.stderr or "does not exist" in out.stderr


def test_a_client_hanging_up_mid_pull_leaves_the_daemon_healthy(daemon: PortsideDaemon, registry: Registry) -> None:
    src = f"{registry.host}/testbed/nginx:oci"
    proc = subprocess.Popen([DOCKER, "-H", daemon.host, "pull", src], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.readline()  # the pull has started streaming
    proc.kill()
    proc.wait()
    time.sleep(0.2)
    assert daemon.request("GET", "/_ping")[0] == 200
    again = daemon.docker("pull", src)
    assert again.returncode == 0, again.stderr


def test_dockerpy_images_flow(daemon: PortsideDaemon, registry: Registry) -> None:
    c = docker.DockerClient(base_url=daemon.host, version="auto", timeout=120)
    try:
        img = c.images.pull(f"{registry.host}/testbed/busybox", tag="latest")
        assert f"{registry.host}/testbed/busybox:latest" in img.tags
        assert img.tag(f"pst-py-img-{os.getpid()}", "t1") is True
        got = c.images.get(f"pst-py-img-{os.getpid()}:t1")
        assert got.id == img.id
        assert any(img.id == i.id for i in c.images.list())
        c.images.remove(f"pst-py-img-{os.getpid()}:t1")
        with pytest.raises(docker.errors.ImageNotFound):
            c.images.get(f"pst-py-img-{os.getpid()}:t1")
        assert img.history()
    finally:
        c.close()


def test_login_and_pull_from_a_registry_with_auth(daemon: PortsideDaemon, auth_registry: Registry) -> None:
    # The daemon trusts the registry's CA through certs.d in its data root (as /etc/docker/certs.d works).
    certs = daemon.data_root / "certs.d" / auth_registry.host
    certs.mkdir(parents=True, exist_ok=True)
    assert auth_registry.ca_cert is not None
    (certs / "ca.crt").write_bytes(auth_registry.ca_cert.read_bytes())
    ref = f"{auth_registry.host}/testbed/busybox:latest"
    denied = daemon.docker("pull", ref)
    assert denied.returncode != 0
    bad = daemon.docker("login", "-u", auth_registry.username or "", "--password-stdin", auth_registry.host,
                        input="wrong-password\n")
    assert bad.returncode != 0 and "unauthorized" in bad.stderr.lower()
    login = daemon.docker("login", "-u", auth_registry.username or "", "--password-stdin", auth_registry.host,
                          input=f"{auth_registry.password}\n")
    assert login.returncode == 0, login.stderr
    assert "Login Succeeded" in login.stdout
    pull = daemon.docker("pull", ref)  # the CLI sends the stored credentials in X-Registry-Auth
    assert pull.returncode == 0, pull.stderr
    daemon.docker("rmi", ref)
