"""kill -9 at every named point of pull, commit, build, container create/start/stop/rm, cp, volume create/rm and
network create/connect/rm: after a restart the operation either fully happened or left nothing visible, nothing
half-done is trusted, and a container that was running before still runs, re-adopted."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.reliability.conftest import KEEPER, CrashDaemon, mounts_below, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
pytest.importorskip("engine.exec.runtime", reason="no container runtime in this tree yet")

PULL_POINTS = ["pull.layer.downloading", "pull.layer.downloaded", "pull.layer.unpacking", "snapshot.create.rename",
               "pull.record", "image.record"]


def _ids(c: CrashDaemon, *args: str) -> set[str]:
    return set(c.ok(*args).split())


@pytest.mark.parametrize("point", PULL_POINTS)
def test_pull_killed_leaves_no_image_and_pulls_again(crash: CrashDaemon, point: str) -> None:
    ref = f"{crash.registry.host}/testbed/nginx:latest"
    images_before = _ids(crash, "images", "-aq", "--no-trunc")
    code, _out, _err = crash.crash_during(point, "pull", ref)
    assert code != 0  # the CLI saw its daemon go away
    code, _out, err = crash.docker("image", "inspect", ref)
    assert code != 0 and "No such image" in err
    assert _ids(crash, "images", "-aq", "--no-trunc") == images_before
    crash.check_whole()
    ingest = crash.d.data_root / "image" / "content" / "ingest"
    if point == "pull.layer.downloading":
        # the partial download is kept for a resume, under the digest it must match, not as a blob
        partial = [p for p in ingest.iterdir() if p.stat().st_size > 0]
        assert partial and all(len(p.name) == 64 for p in partial)
        assert not any((ingest.parent / "blobs" / "sha256" / p.name).exists() for p in partial)
    crash.ok("pull", ref)
    try:
        assert list(ingest.iterdir()) == []  # resumed and committed (or started over): nothing half is left
        out = crash.ok("run", "--rm", ref, "nginx", "-v")
        assert out == "" or "nginx" in out
        crash.check_whole()
    finally:
        crash.ok("rmi", ref)


def test_rmi_killed_before_its_gc_is_collected_at_start(crash: CrashDaemon) -> None:
    ref = f"{crash.registry.host}/testbed/nginx:latest"
    blobs = crash.d.data_root / "image" / "content" / "blobs" / "sha256"
    snaps = crash.d.data_root / "image" / "snapshots"
    before = ({p.name for p in blobs.iterdir()}, {p.name for p in snaps.iterdir()})
    crash.ok("pull", ref)
    code, _o, _e = crash.crash_during("image.rm.gc", "rmi", ref)
    assert code != 0
    assert crash.docker("image", "inspect", ref)[0] != 0  # the removal's records were one transaction
    assert ({p.name for p in blobs.iterdir()}, {p.name for p in snaps.iterdir()}) == before
    assert "unreferenced blobs and snapshots" in crash.recovery_log()
    crash.check_whole()


def test_commit_killed_before_its_record(crash: CrashDaemon) -> None:
    crash.ok("run", "-d", "--name", "pst-commit-src", "busybox", "sh", "-c", "echo x > /made; sleep 600")
    try:
        images_before = _ids(crash, "images", "-aq", "--no-trunc")
        code, _o, _e = crash.crash_during("image.record", "commit", "--pause=false", "pst-commit-src",
                                          "pst-crash-commit:1")
        assert code != 0
        assert crash.docker("image", "inspect", "pst-crash-commit:1")[0] != 0
        assert _ids(crash, "images", "-aq", "--no-trunc") == images_before
        crash.check_whole()
        assert json.loads(crash.ok("inspect", "pst-commit-src"))[0]["State"]["Running"] is True
        crash.ok("commit", "--pause=false", "pst-commit-src", "pst-crash-commit:1")
        assert crash.ok("run", "--rm", "pst-crash-commit:1", "cat", "/made").strip() == "x"
        crash.ok("rmi", "pst-crash-commit:1")
    finally:
        crash.docker("rm", "-f", "pst-commit-src")


@pytest.mark.parametrize("point", ["build.run", "build.commit"])
def test_build_killed_leaves_no_image(crash: CrashDaemon, point: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\nRUN echo {point} > /step && sleep 1\n")
    images_before = _ids(crash, "images", "-aq", "--no-trunc")
    containers_before = _ids(crash, "ps", "-aq", "--no-trunc")
    os.environ["DOCKER_BUILDKIT"] = "0"
    try:
        code, _o, _e = crash.crash_during(point, "build", "-t", "pst-crash-build", str(tmp_path))
    finally:
        os.environ.pop("DOCKER_BUILDKIT", None)
    assert code != 0
    assert crash.docker("image", "inspect", "pst-crash-build")[0] != 0
    assert _ids(crash, "images", "-aq", "--no-trunc") == images_before
    # The step's container is a whole record (Docker keeps it too after a crash): stopped, and removable.
    left = _ids(crash, "ps", "-aq", "--no-trunc") - containers_before
    for cid in left:
        crash.ok("rm", "-f", cid)
    crash.check_whole()
    build_root = crash.d.data_root / "build"
    assert list(build_root.iterdir()) == []  # the interrupted build's scratch went at start-up


def test_create_killed_before_its_record(crash: CrashDaemon) -> None:
    code, _o, _e = crash.crash_during("container.create.record", "create", "--name", "pst-crash-create", "busybox",
                                      "true")
    assert code != 0
    code, _o, err = crash.docker("inspect", "pst-crash-create")
    assert code != 0 and "No such" in err
    crash.check_whole()  # no layer, no directory, no record for it
    assert "container layer" in crash.recovery_log() and "no container record" in crash.recovery_log()
    crash.ok("create", "--name", "pst-crash-create", "busybox", "true")  # the name is free
    crash.ok("rm", "pst-crash-create")


def test_start_killed_before_the_process_releases_what_it_made(crash: CrashDaemon) -> None:
    crash.ok("create", "--name", "pst-crash-start", "-p", "127.0.0.1::80", "busybox", "sleep", "600")
    try:
        cid = json.loads(crash.ok("inspect", "pst-crash-start"))[0]["Id"]
        links, rules = crash.net_state()
        code, _o, _e = crash.crash_during("container.start.prepared", "start", "pst-crash-start")
        assert code != 0
        state = json.loads(crash.ok("inspect", "pst-crash-start"))[0]["State"]
        assert state["Running"] is False and state["Pid"] == 0
        # its rootfs mount, netns, veth and port rules were made before the crash, and released at start-up
        assert not [m for m in mounts_below(crash.d.exec_root) if cid in m]
        assert not (crash.d.exec_root / "bundles" / cid).exists()
        assert crash.net_state() == (links, rules)
        crash.check_whole()
        crash.ok("start", "pst-crash-start")
        port = crash.ok("port", "pst-crash-start", "80").strip()
        assert port.startswith("127.0.0.1:")
    finally:
        crash.docker("rm", "-f", "pst-crash-start")


def test_stop_killed_after_the_signal_records_the_exit_at_start(crash: CrashDaemon) -> None:
    # a process that ends on SIGTERM (a bare sleep as pid 1 would ignore it and wait for the SIGKILL that the
    # dead engine never sends: then the stop did not happen and the container runs on, re-adopted, like the keeper)
    crash.ok("run", "-d", "--name", "pst-crash-stop", "-p", "127.0.0.1::80", "busybox", "sh", "-c",
             "trap 'exit 3' TERM; sleep 600 & wait")
    try:
        cid = json.loads(crash.ok("inspect", "pst-crash-stop"))[0]["Id"]
        code, _o, _e = crash.crash_during("container.stop.signalled", "stop", "-t", "5", "pst-crash-stop")
        assert code != 0
        # it exits while no engine watches; the new one records the exit and releases the rest (the wait ends
        # at once then; it also covers an exit that comes a moment after the restart)
        assert crash.ok("wait", "pst-crash-stop").strip() == "3"
        state = json.loads(crash.ok("inspect", "pst-crash-stop"))[0]["State"]
        assert state["Running"] is False and state["Status"] == "exited" and state["ExitCode"] == 3
        assert not [m for m in mounts_below(crash.d.exec_root) if cid in m]
        crash.check_whole()
        crash.ok("start", "pst-crash-stop")
    finally:
        crash.docker("rm", "-f", "pst-crash-stop")


def test_rm_killed_after_cleanup_keeps_a_removable_container(crash: CrashDaemon) -> None:
    crash.ok("run", "-d", "--name", "pst-crash-rm", "busybox", "sleep", "600")
    code, _o, _e = crash.crash_during("container.rm.cleaned", "rm", "-f", "pst-crash-rm")
    assert code != 0
    # killed and released, not yet removed: a whole, stopped container that rm finishes
    state = json.loads(crash.ok("inspect", "pst-crash-rm"))[0]["State"]
    assert state["Running"] is False
    crash.check_whole()
    crash.ok("rm", "pst-crash-rm")
    assert crash.docker("inspect", "pst-crash-rm")[0] != 0


def test_rm_killed_after_its_layer_is_finished_at_start(crash: CrashDaemon) -> None:
    crash.ok("run", "-d", "--name", "pst-crash-rm2", "busybox", "sleep", "600")
    code, _o, _e = crash.crash_during("container.rm.layer", "rm", "-f", "pst-crash-rm2")
    assert code != 0
    code, _o, err = crash.docker("inspect", "pst-crash-rm2")
    assert code != 0 and "No such" in err
    assert "its layer was already removed" in crash.recovery_log()
    crash.check_whole()
    crash.ok("create", "--name", "pst-crash-rm2", "busybox", "true")
    crash.ok("rm", "pst-crash-rm2")


def test_cp_into_a_stopped_container_killed_while_mounted(crash: CrashDaemon, tmp_path: Path) -> None:
    crash.ok("create", "--name", "pst-crash-cp", "-v", "pst-crash-cpvol:/v", "busybox", "true")
    try:
        (tmp_path / "f").write_text("copied\n")
        code, _o, _e = crash.crash_during("container.cp.mounted", "cp", str(tmp_path / "f"), "pst-crash-cp:/v/f")
        assert code != 0
        assert not [m for m in mounts_below(crash.d.exec_root) if "/cp-" in m]  # layer and volume unmounted
        assert not [p for p in crash.d.exec_root.iterdir() if p.name.startswith("cp-")]
        assert "scratch mount cp-" in crash.recovery_log()
        crash.check_whole()
        crash.ok("cp", str(tmp_path / "f"), "pst-crash-cp:/v/f")
        out = crash.ok("run", "--rm", "-v", "pst-crash-cpvol:/v", "busybox", "cat", "/v/f")
        assert out == "copied\n"
    finally:
        crash.docker("rm", "-f", "-v", "pst-crash-cp")
        crash.docker("volume", "rm", "pst-crash-cpvol")


def test_volume_create_killed_before_its_record(crash: CrashDaemon) -> None:
    code, _o, _e = crash.crash_during("volume.create.record", "volume", "create", "pst-crash-vol")
    assert code != 0
    assert "pst-crash-vol" not in crash.ok("volume", "ls", "-q").split()
    assert not (crash.d.data_root / "volumes" / "pst-crash-vol").exists()
    crash.check_whole()
    crash.ok("volume", "create", "pst-crash-vol")
    crash.ok("volume", "rm", "pst-crash-vol")


def test_volume_rm_killed_midway_is_finished_at_start(crash: CrashDaemon) -> None:
    crash.ok("volume", "create", "pst-crash-vol2")
    crash.ok("run", "--rm", "-v", "pst-crash-vol2:/v", "busybox", "sh", "-c", "echo data > /v/f")
    code, _o, _e = crash.crash_during("volume.rm.record", "volume", "rm", "pst-crash-vol2")
    assert code != 0
    assert "pst-crash-vol2" not in crash.ok("volume", "ls", "-q").split()
    assert [p.name for p in (crash.d.data_root / "volumes").iterdir() if "pst-crash-vol2" in p.name] == []
    assert "finished its interrupted removal" in crash.recovery_log()
    crash.check_whole()


def test_network_create_killed_before_its_record(crash: CrashDaemon) -> None:
    links, rules = crash.net_state()
    code, _o, _e = crash.crash_during("network.create.bridge", "network", "create", "pst-crash-net")
    assert code != 0
    assert "pst-crash-net" not in crash.ok("network", "ls", "--format", "{{.Name}}").split()
    # its bridge and its nft rules were made before the crash: the bridge went at start-up, named in the log, and
    # the rules were rewritten from the records
    assert crash.net_state() == (links, rules)
    assert "recovery: dropped bridge" in crash.recovery_log()
    crash.check_whole()
    crash.ok("network", "create", "pst-crash-net")  # the name (and a subnet) are free
    assert crash.ok("run", "--rm", "--network", "pst-crash-net", "busybox", "true") == ""
    crash.ok("network", "rm", "pst-crash-net")
    assert crash.net_state() == (links, rules)


def test_network_connect_killed_before_the_sandbox_is_saved(crash: CrashDaemon) -> None:
    crash.ok("network", "create", "pst-crash-conn")
    crash.ok("run", "-d", "--name", "pst-crash-conn-c", "busybox", "sleep", "600")
    try:
        links, rules = crash.net_state()
        pid = json.loads(crash.ok("inspect", "pst-crash-conn-c"))[0]["State"]["Pid"]
        code, _o, _e = crash.crash_during("network.connect.attached", "network", "connect", "pst-crash-conn",
                                          "pst-crash-conn-c")
        assert code != 0
        # the container runs on, re-adopted, without the half-made endpoint: no veth, no address reservation
        state = json.loads(crash.ok("inspect", "pst-crash-conn-c"))[0]
        assert state["State"]["Running"] is True and state["State"]["Pid"] == pid
        assert list(state["NetworkSettings"]["Networks"]) == ["bridge"]
        net = json.loads(crash.ok("network", "inspect", "pst-crash-conn"))[0]
        assert net["Containers"] == {}
        assert crash.net_state() == (links, rules)
        assert "eth1" not in crash.ok("exec", "pst-crash-conn-c", "cat", "/proc/net/dev")
        assert "address reservation" in crash.recovery_log()
        crash.check_whole()
        crash.ok("network", "connect", "pst-crash-conn", "pst-crash-conn-c")
        assert "eth1" in crash.ok("exec", "pst-crash-conn-c", "cat", "/proc/net/dev")
        crash.ok("network", "disconnect", "pst-crash-conn", "pst-crash-conn-c")
    finally:
        crash.docker("rm", "-f", "pst-crash-conn-c")
    crash.ok("network", "rm", "pst-crash-conn")  # no endpoint is left on it


def test_network_rm_killed_midway_leaves_a_whole_network(crash: CrashDaemon) -> None:
    links, rules = crash.net_state()
    crash.ok("network", "create", "pst-crash-nrm")
    code, _o, _e = crash.crash_during("network.rm.record", "network", "rm", "pst-crash-nrm")
    assert code != 0
    # the record was still there: the network is whole again (its bridge and rules remade) and works
    assert "pst-crash-nrm" in crash.ok("network", "ls", "--format", "{{.Name}}").split()
    assert crash.ok("run", "--rm", "--network", "pst-crash-nrm", "busybox", "true") == ""
    crash.check_whole()
    crash.ok("network", "rm", "pst-crash-nrm")
    assert crash.net_state() == (links, rules)


def _cgroups_of(crash: CrashDaemon, cid: str) -> list[Path]:
    return sorted(Path("/sys/fs/cgroup").glob(f"*/portside-test-{crash.d.bridge}/{cid}"))


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_daemon(crash: CrashDaemon) -> None:
    assert crash.d.proc is not None
    crash.d.proc.kill()
    crash.d.proc.wait(30)


def test_start_up_reclaims_a_running_container_whose_record_was_lost(crash: CrashDaemon) -> None:
    links, rules = crash.net_state()
    crash.ok("run", "-d", "--name", "pst-crash-lost", "-p", "127.0.0.1::80", "busybox", "sleep", "600")
    info = json.loads(crash.ok("inspect", "pst-crash-lost"))[0]
    cid, pid = info["Id"], info["State"]["Pid"]
    assert _cgroups_of(crash, cid) and crash.net_state() != (links, rules)
    _kill_daemon(crash)
    shutil.rmtree(crash.d.data_root / "containers" / cid)  # its record gone (written, then lost)
    crash.restart()
    # its process, runtime state, mounts, cgroup, veth, netns and port rules: reclaimed, and said so
    poll(lambda: not _alive(pid), what="the container's process to be killed")
    assert _cgroups_of(crash, cid) == []
    assert crash.net_state() == (links, rules)
    assert not [m for m in mounts_below(crash.d.exec_root) if cid in m]
    assert not (crash.d.exec_root / "netns" / cid).exists()
    assert f"container process {cid[:12]}: no record" in crash.d.log.read_text()
    assert crash.docker("inspect", "pst-crash-lost")[0] != 0
    crash.check_whole()


def test_start_up_reclaims_the_cgroup_of_a_container_whose_runtime_state_was_lost(crash: CrashDaemon) -> None:
    links, rules = crash.net_state()
    crash.ok("run", "-d", "--name", "pst-crash-nostate", "-p", "127.0.0.1::80", "busybox", "sleep", "600")
    try:
        info = json.loads(crash.ok("inspect", "pst-crash-nostate"))[0]
        cid, pid = info["Id"], info["State"]["Pid"]
        _kill_daemon(crash)
        shutil.rmtree(crash.d.exec_root / "rt" / cid)  # the runtime's state of it gone, its cgroup and process not
        crash.restart()
        state = json.loads(crash.ok("inspect", "pst-crash-nostate"))[0]["State"]
        assert state["Running"] is False and state["Status"] == "exited"
        poll(lambda: not _alive(pid), what="the container's process to be killed")
        assert _cgroups_of(crash, cid) == []
        assert crash.net_state() == (links, rules)
        assert f"cgroup portside-test-{crash.d.bridge}/{cid}" in crash.d.log.read_text()
        crash.check_whole()
        crash.ok("start", "pst-crash-nostate")  # and it starts again, in a new cgroup
        assert _cgroups_of(crash, cid)
    finally:
        crash.docker("rm", "-f", "pst-crash-nostate")


def test_keeper_survived_every_crash(crash: CrashDaemon) -> None:
    """Last in the module: the container started before the first crash is still the same process."""
    crash.check_whole()
    crash.ok("stop", "-t", "1", KEEPER)
    assert json.loads(crash.ok("inspect", KEEPER))[0]["State"]["Status"] == "exited"
    crash.ok("start", KEEPER)
    crash.keeper_pid = json.loads(crash.ok("inspect", KEEPER))[0]["State"]["Pid"]
