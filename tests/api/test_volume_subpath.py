"""`--mount type=volume,volume-subpath=...` (VolumeOptions.Subpath, API 1.45): a directory of a named volume is
mounted, resolved inside the volume so that neither `..` nor a symlink a container left there leads out; the
create-time errors are dockerd's."""

from __future__ import annotations

import os

import pytest

from tests.api.conftest import PortsideDaemon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_volume_subpath(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    vol, tag = f"pst-subvol-{os.getpid()}", str(os.getpid())
    assert daemon.docker("volume", "create", vol).returncode == 0
    try:
        names.append(f"pst-subsetup-{tag}")
        setup = daemon.docker("run", "--name", f"pst-subsetup-{tag}", "-v", f"{vol}:/vol", busybox, "sh", "-c",
                              "mkdir -p /vol/sub/deeper && echo inside > /vol/sub/file && ln -s /etc /vol/abs && "
                              "ln -s ../../../../etc /vol/rel")
        assert setup.returncode == 0, setup.stderr
        out = daemon.docker("run", "--rm", "--mount", f"type=volume,src={vol},dst=/data,volume-subpath=sub,readonly",
                            busybox, "sh", "-c", "cat /data/file; ls /data; touch /data/x 2>/dev/null || echo ro")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["inside", "deeper", "file", "ro"]
        # symlinks are followed as if the volume were /: /vol/abs is the volume's /etc, which does not exist
        for link in ("abs", "rel"):
            out = daemon.docker("run", "--rm", "--mount", f"type=volume,src={vol},dst=/data,volume-subpath={link}",
                                busybox, "ls", "/data")
            assert out.returncode != 0 and "cannot access path" in out.stderr, (link, out.stdout, out.stderr)
        for bad in ("../x", "/sub"):
            out = daemon.docker("create", "--mount", f"type=volume,src={vol},dst=/data,volume-subpath={bad}",
                                busybox, "true")
            assert out.returncode == 1  # `docker create` exits 1 on a daemon error (`run`: 125)
            assert 'invalid mount config for type "volume": subpath must be a relative path within the volume' in (
                out.stderr)
        out = daemon.docker("create", "--mount", "type=volume,dst=/data,volume-subpath=sub", busybox, "true")
        assert out.returncode == 1 and "must not set Subpath when using anonymous volumes" in out.stderr
    finally:
        daemon.docker("rm", "-f", f"pst-subsetup-{tag}")
        daemon.docker("volume", "rm", "-f", vol)
