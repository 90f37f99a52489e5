"""The cgroup v2 device filter (eBPF): rule folding, and real enforcement on this hybrid host's cgroup2 mount.

A BPF_CGROUP_DEVICE program attaches to any cgroup2 directory whatever its controllers, so the kernel enforces it
here exactly as on a pure v2 host: processes moved into the test cgroup get EPERM for what the rules deny.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from engine.exec import cgroups, devicefilter, spec
from engine.exec.runtime import Runtime
from tests.exec.conftest import MakeBundle, new_id, run

UNIFIED = "/sys/fs/cgroup/unified"
DEFAULT_RULES = spec._DEFAULT_DEVICE_RULES
PRIVILEGED_RULES = [{"allow": True, "access": "rwm"}]
C, B = devicefilter.DEV_CHAR, devicefilter.DEV_BLOCK
M, R, W = devicefilter.ACC_MKNOD, devicefilter.ACC_READ, devicefilter.ACC_WRITE

needs_v2 = pytest.mark.skipif(not os.path.exists(UNIFIED + "/cgroup.procs"), reason="no cgroup2 mount at " + UNIFIED)


# --- rule folding and the program (unit) ---


def test_docker_defaults_deny_by_default_with_exceptions() -> None:
    allow, exc = devicefilter.fold(DEFAULT_RULES)
    assert allow is False
    assert exc[(C, -1, -1)] == M and exc[(B, -1, -1)] == M  # mknod of anything
    assert exc[(C, 1, 3)] == M | R | W and exc[(C, 136, -1)] == M | R | W  # /dev/null, /dev/pts/*
    assert (C, 1, 11) not in exc  # /dev/kmsg


def test_a_wildcard_rule_resets_and_later_rules_take_access_away() -> None:
    assert devicefilter.fold(PRIVILEGED_RULES) == (True, {})
    assert devicefilter.fold([*DEFAULT_RULES, {"allow": True, "access": "rwm"}]) == (True, {})
    allow, exc = devicefilter.fold([{"allow": False, "access": "rwm"},
                                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                                    {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}])  # fmt: skip
    assert (allow, exc) == (False, {(C, 1, 3): M | R})
    # in allow-all mode a deny rule is the exception
    assert devicefilter.fold([{"allow": False, "type": "b", "access": "rw"}]) == (True, {(B, -1, -1): R | W})
    with pytest.raises(ValueError):
        devicefilter.fold([{"allow": True, "type": "c", "access": "x"}])


def test_device_cgroup_rules_become_rules() -> None:
    _, rules = spec._devices({"DeviceCgroupRules": ["c 1:11 r", "b *:* rw"]})
    assert rules == [{"allow": True, "type": "c", "access": "r", "major": 1, "minor": 11},
                     {"allow": True, "type": "b", "access": "rw"}]  # fmt: skip
    allow, exc = devicefilter.fold([*DEFAULT_RULES, *rules])
    assert allow is False and exc[(C, 1, 11)] == R and exc[(B, -1, -1)] == M | R | W
    # 'a *:* ...' is everything, as the v1 kernel reads it
    _, rules = spec._devices({"DeviceCgroupRules": ["a *:* rwm"]})
    assert devicefilter.fold([*DEFAULT_RULES, *rules]) == (True, {})
    for bad in ("c 1:11", "x 1:1 r", "c 1:1 rx", "c a:1 r"):
        with pytest.raises(Exception, match="invalid device cgroup rule format"):
            spec._devices({"DeviceCgroupRules": [bad]})


def test_program_shape() -> None:
    prog = devicefilter.compile_rules(PRIVILEGED_RULES)
    assert len(prog) == 8 * 8  # 6 loads of the context, r0 = 1, exit
    assert prog[-16:-8] == bytes([0xB4, 0, 0, 0, 1, 0, 0, 0]) and prog[-8] == 0x95
    prog = devicefilter.compile_rules(DEFAULT_RULES)
    assert len(prog) % 8 == 0 and prog[-12:-8] == b"\0\0\0\0"  # the default: deny


# --- enforcement on real processes ---


@pytest.fixture
def v2_cgroup() -> Iterator[str]:
    path = f"{UNIFIED}/portside-test-dev-{uuid.uuid4().hex[:8]}"
    os.mkdir(path)
    try:
        yield path
    finally:
        _remove_cgroup(path)


def _remove_cgroup(path: str) -> None:
    if not os.path.isdir(path):
        return
    with contextlib.suppress(OSError):
        with open(path + "/cgroup.procs") as f:
            pids = [int(p) for p in f.read().split()]
        for pid in pids:  # only our own forked probes can be there
            with contextlib.suppress(OSError), open(UNIFIED + "/cgroup.procs", "w") as f:
                f.write(str(pid))
    deadline = time.monotonic() + 5
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@pytest.fixture
def node_dir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="portside-test-devnodes-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _probe(cgroup: str, ops: list[tuple[str, str, str, int, int]]) -> list[str]:
    """Forks a child that joins `cgroup`, then runs ops (verb "mknod"/"open-r"/"open-w", path, type, major, minor);
    each result is "ok" or the errno name."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            with open(cgroup + "/cgroup.procs", "w") as f:
                f.write(str(os.getpid()))
            out = []
            for verb, path, kind, major, minor in ops:
                try:
                    if verb == "mknod":
                        mode = (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | 0o600
                        os.mknod(path, mode, os.makedev(major, minor))
                    else:
                        os.close(os.open(path, os.O_RDONLY if verb == "open-r" else os.O_WRONLY))
                    out.append("ok")
                except OSError as e:
                    out.append(errno.errorcode.get(e.errno or 0, str(e.errno)))
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    return list(json.loads(data))


def _nodes(d: str) -> list[tuple[str, str, str, int, int]]:
    """mknod + open of /dev/null (1:3), /dev/kmsg (1:11) and loop0 (7:0, a block device) in `d`."""
    ops: list[tuple[str, str, str, int, int]] = []
    for name, kind, major, minor in (("null", "c", 1, 3), ("kmsg", "c", 1, 11), ("loop", "b", 7, 0)):
        ops.append(("mknod", f"{d}/{name}", kind, major, minor))
        ops.append(("open-r", f"{d}/{name}", kind, major, minor))
    return ops


@pytest.mark.integration
@needs_v2
@pytest.mark.timeout(60)
def test_docker_defaults_allow_the_default_devices_and_mknod_only(v2_cgroup: str, node_dir: str) -> None:
    # before: nothing filters (what a pure v2 host had without this module)
    assert _probe(v2_cgroup, [("mknod", f"{node_dir}/m0", "c", 1, 11), ("open-r", f"{node_dir}/m0", "c", 1, 11)]) == [
        "ok", "ok"]  # fmt: skip
    devicefilter.apply(v2_cgroup, DEFAULT_RULES)
    # null: mknod + open; kmsg: mknod ("c *:* m") but no open; a block device: the same
    assert _probe(v2_cgroup, _nodes(node_dir)) == ["ok", "ok", "ok", "EPERM", "ok", "EPERM"]
    assert _probe(v2_cgroup, [("open-r", f"{node_dir}/m0", "c", 1, 11), ("open-w", "/dev/null", "c", 1, 3),
                              ("open-r", "/dev/zero", "c", 1, 5), ("open-r", "/dev/urandom", "c", 1, 9)]) == [
        "EPERM", "ok", "ok", "ok"]  # fmt: skip


@pytest.mark.integration
@needs_v2
@pytest.mark.timeout(60)
def test_devices_and_privileged_widen_it_and_mknod_follows_the_rules(v2_cgroup: str, node_dir: str) -> None:
    # --device /dev/loop0 (rwm) and a read-only --device for kmsg (CgroupPermissions "r")
    rules = [*DEFAULT_RULES, {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]  # fmt: skip
    devicefilter.apply(v2_cgroup, rules)
    assert _probe(v2_cgroup, _nodes(node_dir)) == ["ok", "ok", "ok", "ok", "ok", "ok"]
    assert _probe(v2_cgroup, [("open-w", f"{node_dir}/kmsg", "c", 1, 11)]) == ["EPERM"]
    # no mknod rule: making a node is denied, using the allowed one is not
    devicefilter.apply(v2_cgroup, [{"allow": False, "access": "rwm"},
                                   {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}])  # fmt: skip
    assert _probe(v2_cgroup, [("mknod", f"{node_dir}/null2", "c", 1, 3), ("open-r", f"{node_dir}/null", "c", 1, 3),
                              ("open-r", f"{node_dir}/loop", "b", 7, 0)]) == ["EPERM", "ok", "EPERM"]  # fmt: skip
    # privileged: everything
    devicefilter.apply(v2_cgroup, PRIVILEGED_RULES)
    assert _probe(v2_cgroup, [("mknod", f"{node_dir}/kmsg2", "c", 1, 11), ("open-w", f"{node_dir}/kmsg", "c", 1, 11),
                              ("open-r", f"{node_dir}/loop", "b", 7, 0)]) == ["ok", "ok", "ok"]  # fmt: skip


@pytest.mark.integration
@needs_v2
@pytest.mark.timeout(60)
def test_apply_replaces_the_program_and_remove_detaches(v2_cgroup: str) -> None:
    fd = os.open(v2_cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        first = devicefilter.apply(v2_cgroup, DEFAULT_RULES)
        assert devicefilter.attached(fd) == [first]
        second = devicefilter.apply(v2_cgroup, PRIVILEGED_RULES)
        assert second != first and devicefilter.attached(fd) == [second]
        devicefilter.remove(v2_cgroup)
        assert devicefilter.attached(fd) == []
    finally:
        os.close(fd)


@pytest.mark.integration
@needs_v2
@pytest.mark.timeout(60)
def test_cgroup_v2_path_attaches_the_filter(v2_cgroup: str, node_dir: str) -> None:
    cg = cgroups.Cgroup("c1", v2_root=v2_cgroup)
    cg.create()
    try:
        cg.set_resources({"devices": DEFAULT_RULES})
        assert _probe(cg.dir(), _nodes(node_dir)) == ["ok", "ok", "ok", "EPERM", "ok", "EPERM"]
        cg.set_resources({"pids": {"limit": 5}})  # an update without device rules keeps the filter
        assert _probe(cg.dir(), [("open-r", f"{node_dir}/kmsg", "c", 1, 11)]) == ["EPERM"]
    finally:
        _remove_cgroup(cg.dir())


# --- real containers through the runtime, forced onto the v2 path ---


async def _run_in_v2(rt: Runtime, make_bundle: MakeBundle, parent: str, script: str,
                     host_config: dict[str, Any] | None = None) -> tuple[int, str]:  # fmt: skip
    b = make_bundle(["sh", "-c", script], {}, host_config or {})
    cid = new_id()
    # a cgroupsPath inside the hybrid host's cgroup2 mount: the container gets only that cgroup, as on pure v2
    b.spec["linux"]["cgroupsPath"] = f"{parent}/{cid}"
    (b.dir / "config.json").write_text(json.dumps(b.spec))
    await rt.create(cid, b.dir, log_path=b.log)
    try:
        await rt.start(cid)
        st = await asyncio.wait_for(rt.wait(cid), 60)
    finally:
        await rt.delete(cid, force=True)
    assert not os.path.exists(f"{parent}/{cid}"), "the container's cgroup2 directory was left"
    return st.exit_code or 0, b.stream("stdout") + b.stream("stderr")


@pytest.mark.integration
@needs_v2
@pytest.mark.timeout(120)
async def test_busybox_container_on_the_v2_path(runtime: Runtime, make_bundle: MakeBundle, node_dir: str) -> None:
    # /dev/fuse (10:229) as the char device: opening it needs no capability, so EPERM can only be the filter's
    parent = f"{UNIFIED}/portside-test-devc-{uuid.uuid4().hex[:8]}"
    os.mkdir(parent)
    loop = f"{node_dir}/loop0"  # the host node --device names (no need for a /dev/loop0 on the host)
    os.mknod(loop, stat.S_IFBLK | 0o600, os.makedev(7, 0))
    try:
        script = ("head -c1 /dev/zero | wc -c; echo x > /dev/null && echo null-ok;"
                  " mknod /tmp/fuse c 10 229 && echo mknod-ok; head -c0 /tmp/fuse && echo fuse-r-ok;"
                  " mknod /tmp/loop b 7 0 && head -c0 /tmp/loop && echo loop-ok; exit 0")  # fmt: skip
        code, out = await _run_in_v2(runtime, make_bundle, parent, script)
        assert code == 0, out
        assert "null-ok" in out and "mknod-ok" in out and out.split()[0] == "1"
        assert "head: /tmp/fuse: Operation not permitted" in out and "fuse-r-ok" not in out, out
        assert "head: /tmp/loop: Operation not permitted" in out and "loop-ok" not in out, out
        # --device <loop node>: that one block device is usable, fuse still is not
        code, out = await _run_in_v2(runtime, make_bundle, parent, script,
                                     {"Devices": [{"PathOnHost": loop, "PathInContainer": "/dev/loop0",
                                                   "CgroupPermissions": "rwm"}]})  # fmt: skip
        assert "loop-ok" in out and "/tmp/fuse: Operation not permitted" in out, out
        # --device-cgroup-rule 'c 10:229 r': reading that char device is allowed, writing it is not
        code, out = await _run_in_v2(runtime, make_bundle, parent, script.replace("exit 0", "echo x > /tmp/fuse"),
                                     {"DeviceCgroupRules": ["c 10:229 r"]})  # fmt: skip
        assert "fuse-r-ok" in out and "/tmp/loop: Operation not permitted" in out, out
        assert "can't create /tmp/fuse: Operation not permitted" in out, out
        # privileged: all devices
        code, out = await _run_in_v2(runtime, make_bundle, parent, script, {"Privileged": True})
        assert "loop-ok" in out and "fuse-r-ok" in out and "Operation not permitted" not in out, out
    finally:
        _remove_cgroup(parent)


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_device_cgroup_rule_on_the_hosts_own_cgroup_path(runtime: Runtime, make_bundle: MakeBundle) -> None:
    """The same rules through the runtime's default cgroup (the v1 devices controller here, the filter on v2)."""
    script = "mknod /tmp/fuse c 10 229 && head -c0 /tmp/fuse && echo fuse-r-ok; exit 0"
    b = make_bundle(["sh", "-c", script])
    assert (await run(runtime, b)).exit_code == 0
    assert "head: /tmp/fuse: Operation not permitted" in b.stream("stderr"), b.logs()
    b = make_bundle(["sh", "-c", script], {}, {"DeviceCgroupRules": ["c 10:229 r"]})
    assert (await run(runtime, b)).exit_code == 0
    assert "fuse-r-ok" in b.stream("stdout"), b.logs()
