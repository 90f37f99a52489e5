"""`--pid`, `--ipc`, `--uts` and `--cgroupns` through the real docker CLI: host and container:NAME modes give the
namespaces they name (compared by the namespace files' inodes), and the errors are dockerd's."""

from __future__ import annotations

import json
import os

import pytest

from tests.api.conftest import PortsideDaemon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _ns(daemon: PortsideDaemon, name: str, kind: str) -> str:
    """The namespace a running container's init is in, e.g. `pid:[4026531836]`."""
    out = daemon.docker("inspect", "-f", "{{.State.Pid}}", name)
    assert out.returncode == 0, out.stderr
    return os.readlink(f"/proc/{int(out.stdout)}/ns/{kind}")


def _run(daemon: PortsideDaemon, names: list[str], name: str, *args: str) -> None:
    names.append(name)
    out = daemon.docker("run", "-d", "--name", name, *args)
    assert out.returncode == 0, out.stderr


def test_host_modes_share_the_hosts_namespaces(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    base = f"pst-ns-{os.getpid()}"
    _run(daemon, names, base + "-own", busybox, "sleep", "300")
    _run(daemon, names, base + "-host", "--pid", "host", "--ipc", "host", "--uts", "host", "--cgroupns", "host",
         busybox, "sleep", "300")
    for kind in ("pid", "ipc", "uts", "cgroup"):
        mine = os.readlink(f"/proc/self/ns/{kind}")
        assert _ns(daemon, base + "-host", kind) == mine, kind
        assert _ns(daemon, base + "-own", kind) != mine, kind
    # the host's processes are seen, the host's name is kept (and shown in Config.Hostname), /dev/shm is the host's
    ps = daemon.docker("exec", base + "-host", "cat", f"/proc/{os.getpid()}/cmdline")
    assert ps.returncode == 0 and "pytest" in ps.stdout, ps.stderr
    own = daemon.docker("exec", base + "-own", "test", "-e", f"/proc/{os.getpid()}/cmdline")
    assert own.returncode == 1 or os.getpid() < 3  # its own pid namespace has no such process
    hostname = daemon.docker("exec", base + "-host", "hostname")
    assert hostname.stdout.strip() == os.uname().nodename
    assert json.loads(daemon.docker("inspect", base + "-host").stdout)[0]["Config"]["Hostname"] == os.uname().nodename
    marker = f"pst-shm-{os.getpid()}"
    try:
        with open(f"/dev/shm/{marker}", "w") as f:
            f.write("x")
        assert daemon.docker("exec", base + "-host", "cat", f"/dev/shm/{marker}").stdout == "x"
        assert daemon.docker("exec", base + "-own", "test", "-e", f"/dev/shm/{marker}").returncode == 1
    finally:
        os.unlink(f"/dev/shm/{marker}")
    # the container's exit takes its processes with it although it has no pid namespace of its own
    pid = int(daemon.docker("inspect", "-f", "{{.State.Pid}}", base + "-host").stdout)
    assert daemon.docker("rm", "-f", base + "-host").returncode == 0
    assert not os.path.exists(f"/proc/{pid}")


def test_container_modes_join_the_donors_namespaces(daemon: PortsideDaemon, busybox: str,
                                                    names: list[str]) -> None:
    base = f"pst-nsc-{os.getpid()}"
    _run(daemon, names, base + "-donor", "--ipc", "shareable", busybox, "sh", "-c",
         "echo shared > /dev/shm/pst-mark; exec sleep 300")
    _run(daemon, names, base + "-guest", "--pid", f"container:{base}-donor", "--ipc", f"container:{base}-donor",
         busybox, "sleep", "300")
    for kind in ("pid", "ipc"):
        assert _ns(daemon, base + "-guest", kind) == _ns(daemon, base + "-donor", kind), kind
    assert _ns(daemon, base + "-guest", "uts") != _ns(daemon, base + "-donor", "uts")
    # the donor's processes are seen and its /dev/shm is shared
    ps = daemon.docker("exec", base + "-guest", "ps", "-o", "args")
    assert ps.returncode == 0 and "sh -c echo shared" not in ps.stdout and ps.stdout.count("sleep 300") == 2, ps.stdout
    assert daemon.docker("exec", base + "-guest", "cat", "/dev/shm/pst-mark").stdout == "shared\n"


def test_namespace_mode_errors_are_dockerds(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    base = f"pst-nse-{os.getpid()}"
    out = daemon.docker("run", "--rm", "--uts", "host", "-h", "pst-name", busybox, "true")
    assert out.returncode == 125
    assert "conflicting options: hostname and the UTS mode" in out.stderr
    _run(daemon, names, base + "-private", busybox, "sleep", "300")
    names.append(base + "-ipc")
    out = daemon.docker("run", "-d", "--name", base + "-ipc", "--ipc", f"container:{base}-private", busybox, "true")
    assert out.returncode != 0
    assert "non-shareable IPC (hint: use IpcMode:shareable for the donor container)" in out.stderr
    names.append(base + "-stopped")
    assert daemon.docker("create", "--name", base + "-stopped", busybox, "true").returncode == 0
    names.append(base + "-pid")
    out = daemon.docker("run", "-d", "--name", base + "-pid", "--pid", f"container:{base}-stopped", busybox, "true")
    assert out.returncode != 0
    assert "failed to join PID namespace: Container " in out.stderr and "is not running" in out.stderr
    # nothing of the failed starts is left running
    st = json.loads(daemon.docker("inspect", base + "-pid").stdout)[0]["State"]
    assert (st["Running"], st["Pid"]) == (False, 0)


def test_cgroup_parent_places_the_containers_cgroup(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    """`--cgroup-parent` puts the cgroup at <parent>/<id> (as dockerd's cgroupfs driver), `..` cannot climb above the
    hierarchy's root, and the limits are applied there."""
    from engine.exec import cgroups

    name, parent = f"pst-cgp-{os.getpid()}", f"pst-cgparent-{os.getpid()}"
    names.append(name)
    try:
        out = daemon.docker("run", "-d", "--name", name, "--cgroup-parent", f"../../{parent}", "-m", "64m", busybox,
                            "sleep", "300")
        assert out.returncode == 0, out.stderr
        cid = out.stdout.strip()
        pid = int(daemon.docker("inspect", "-f", "{{.State.Pid}}", name).stdout)
        with open(f"/proc/{pid}/cgroup") as f:
            paths = {line.strip().split(":", 2)[2] for line in f if line.strip()}
        assert f"/{parent}/{cid}" in paths, paths
        cg = cgroups.Cgroup(f"{parent}/{cid}")
        limit_file = "memory.max" if cg.version == 2 else "memory.limit_in_bytes"
        with open(f"{cg.dir('memory')}/{limit_file}") as f:
            assert int(f.read()) == 64 * 1024 * 1024
        assert json.loads(daemon.docker("inspect", name).stdout)[0]["HostConfig"]["CgroupParent"] == f"../../{parent}"
        assert daemon.docker("rm", "-f", name).returncode == 0
        assert not any(os.path.exists(d) for d in cg.dirs())
    finally:
        daemon.docker("rm", "-f", name)
        for d in cgroups.Cgroup(parent).dirs():
            if os.path.isdir(d):
                os.rmdir(d)
