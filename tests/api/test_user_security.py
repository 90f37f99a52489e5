"""A bad USER never runs as root: through the docker CLI, on `run --user`, an image's USER and `exec --user`."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import PortsideDaemon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RANGE = "uids and gids must be in range 0-2147483647"


def _name() -> str:
    return f"pst-user-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("user", ["4294967295", "2147483648", "4294967296", "1000:4294967295", "0:-1", "-1"])
def test_run_with_an_out_of_range_user_is_refused(daemon: PortsideDaemon, busybox: str, user: str) -> None:
    name = _name()
    try:
        out = daemon.docker("run", "--name", name, "--user", user, busybox, "id")
        assert out.returncode == 125, (out.stdout, out.stderr)
        assert out.stdout == ""  # `id` never ran
        assert RANGE in out.stderr or "unable to find user -1" in out.stderr, out.stderr
        state = daemon.docker("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", name)
        assert state.stdout.split() == ["created", "0"], state
    finally:
        daemon.docker("rm", "-f", name)


@pytest.mark.parametrize("user,expect", [
    ("2147483647", "uid=2147483647 gid=0(root)"), ("65534", "uid=65534(nobody) gid=65534(nogroup)"),
    ("1000:2147483647", "uid=1000(user) gid=2147483647"),
])
def test_the_boundary_itself_runs(daemon: PortsideDaemon, busybox: str, user: str, expect: str) -> None:
    out = daemon.docker("run", "--rm", "--user", user, busybox, "id")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(expect), out.stdout


def test_an_image_user_out_of_range_is_refused(daemon: PortsideDaemon, busybox: str) -> None:
    src, image, name = _name(), f"pst-user-img-{uuid.uuid4().hex[:8]}", _name()
    try:
        assert daemon.docker("create", "--name", src, busybox, "true").returncode == 0
        out = daemon.docker("commit", "--change", "USER 4294967295", src, image)
        assert out.returncode == 0, out.stderr
        assert daemon.docker("inspect", "-f", "{{.Config.User}}", image).stdout.strip() == "4294967295"
        out = daemon.docker("run", "--name", name, image, "id")
        assert out.returncode == 125 and RANGE in out.stderr, (out.stdout, out.stderr)
        # the request's --user overrides the image's, as on Docker
        out = daemon.docker("run", "--rm", "--user", "1000", image, "id", "-u")
        assert (out.returncode, out.stdout) == (0, "1000\n"), out.stderr
    finally:
        daemon.docker("rm", "-f", src, name)
        daemon.docker("rmi", image)


def test_exec_with_an_out_of_range_user_is_refused(daemon: PortsideDaemon, busybox: str) -> None:
    name = _name()
    try:
        assert daemon.docker("run", "-d", "--name", name, busybox, "sleep", "60").returncode == 0
        # as on Docker, an exec that cannot start exits 126 with the runtime's error in its output
        for user in ("4294967295", "1000:4294967295"):
            out = daemon.docker("exec", "--user", user, name, "id")
            assert out.returncode == 126, (out.stdout, out.stderr)
            assert RANGE in out.stdout + out.stderr and "uid=" not in out.stdout, (out.stdout, out.stderr)
        out = daemon.docker("exec", "--user", "2147483647", name, "id", "-u")
        assert (out.returncode, out.stdout) == (0, "2147483647\n"), out.stderr
    finally:
        daemon.docker("rm", "-f", name)
