"""The images part driven by the real docker CLI through the daemon: commit -> run shows the change; save | load
keeps the image runnable; push through the CLI."""

from __future__ import annotations

import os

import pytest

from tests.api.conftest import PortsideDaemon, daemon  # noqa: F401 - the session daemon fixture
from tests.testbed.registry import Registry

pytestmark = pytest.mark.integration


@pytest.mark.timeout(240)
def test_commit_then_run_shows_the_change_and_survives_save_load(
    daemon: PortsideDaemon,  # noqa: F811
    registry: Registry,
) -> None:
    img = f"{registry.host}/testbed/busybox:latest"
    name = "pst-commit-" + os.urandom(3).hex()
    tag = f"pst-committed-{os.urandom(3).hex()}:1"
    assert daemon.docker("pull", img).returncode == 0
    r = daemon.docker("run", "--name", name, "--network", "none", img, "sh", "-c",
                      "echo changed > /etc/added && rm /etc/group")
    assert r.returncode == 0, r.stderr
    try:
        diff = daemon.docker("diff", name).stdout.split("\n")
        assert "A /etc/added" in diff and "D /etc/group" in diff
        r = daemon.docker("commit", "-c", "CMD cat /etc/added", name, tag)
        assert r.returncode == 0, r.stderr
        r = daemon.docker("run", "--rm", "--network", "none", tag)
        assert (r.returncode, r.stdout) == (0, "changed\n"), r.stderr
        r = daemon.docker("run", "--rm", "--network", "none", tag, "ls", "/etc/group")
        assert r.returncode != 0
        saved = daemon.tmp / "saved.tar"
        assert daemon.docker("save", "-o", str(saved), tag).returncode == 0
        assert daemon.docker("rmi", tag).returncode == 0
        r = daemon.docker("load", "-i", str(saved))
        assert r.returncode == 0 and r.stdout.strip() == f"Loaded image: {tag}", (r.stdout, r.stderr)
        r = daemon.docker("run", "--rm", "--network", "none", tag)
        assert (r.returncode, r.stdout) == (0, "changed\n"), r.stderr
        pushed = f"{registry.host}/pst-cli-{os.urandom(3).hex()}/img:v1"
        assert daemon.docker("tag", tag, pushed).returncode == 0
        r = daemon.docker("push", pushed)
        assert r.returncode == 0 and "v1: digest: sha256:" in r.stdout, r.stderr
    finally:
        daemon.docker("rm", "-f", name)
        daemon.docker("rmi", "-f", tag)
