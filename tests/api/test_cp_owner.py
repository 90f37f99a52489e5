"""Who owns what `docker cp` puts in a container: the archive's uid and gid, or with `-a` (copyUIDGID) the
container's user and group resolved in its own passwd and group files, as dockerd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.api.conftest import PortsideDaemon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _owner(daemon: PortsideDaemon, name: str, path: str) -> str:
    out = daemon.docker("exec", name, "stat", "-c", "%u:%g", path)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_cp_keeps_the_archives_owner_and_a_gives_the_containers_user(daemon: PortsideDaemon, busybox: str,
                                                                     names: list[str], tmp_path: Path) -> None:
    src = tmp_path / "pst-owned"
    src.write_text("x")
    os.chown(src, 1234, 4321)
    as_nobody, as_root = f"pst-cpown-{os.getpid()}", f"pst-cpownr-{os.getpid()}"
    names += [as_nobody, as_root]
    assert daemon.docker("run", "-d", "--name", as_nobody, "--user", "nobody", busybox, "sleep", "300").returncode == 0
    assert daemon.docker("run", "-d", "--name", as_root, busybox, "sleep", "300").returncode == 0
    for name in (as_nobody, as_root):
        assert daemon.docker("cp", str(src), f"{name}:/tmp/plain").returncode == 0
        assert _owner(daemon, name, "/tmp/plain") == "1234:4321"
    assert daemon.docker("cp", "-a", str(src), f"{as_nobody}:/tmp/archive").returncode == 0
    assert _owner(daemon, as_nobody, "/tmp/archive") == "65534:65534"  # busybox's nobody:nogroup
    # no Config.User: nothing to map to, the archive's ids stay
    assert daemon.docker("cp", "-a", str(src), f"{as_root}:/tmp/archive").returncode == 0
    assert _owner(daemon, as_root, "/tmp/archive") == "1234:4321"
