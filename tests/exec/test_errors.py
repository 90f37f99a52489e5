"""Bad input gets Docker's message and exit code, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.containers import validate
from engine.errors import InvalidArgument
from engine.exec import cgroups, spec
from engine.exec.runtime import ContainerStartError, Runtime
from tests.exec.conftest import MakeBundle, new_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _nothing_left(rt: Runtime, cid: str) -> None:
    assert not (rt.exec_root / cid).exists()
    cg = cgroups.Cgroup(f"{rt.cgroup_parent}/{cid}")
    assert not cg.exists()


async def _start_fails(rt: Runtime, b_dir: Path, log: Path) -> tuple[ContainerStartError, str]:
    cid = new_id()
    with pytest.raises(ContainerStartError) as exc:
        await rt.create(cid, b_dir, log_path=log)
        try:
            await rt.start(cid)
        finally:
            await rt.delete(cid, force=True)
    return exc.value, cid


async def test_missing_executable_is_127(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["nosuch"])
    err, cid = await _start_fails(runtime, b.dir, b.log)
    assert 'exec: "nosuch": executable file not found in $PATH' in err.message
    assert err.exit_code == 127 and err.status == 400
    _nothing_left(runtime, cid)


async def test_missing_path_is_127(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["/no/such"])
    err, cid = await _start_fails(runtime, b.dir, b.log)
    assert "no such file or directory" in err.message and err.exit_code == 127
    _nothing_left(runtime, cid)


async def test_non_executable_file_is_126(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["/etc/passwd"])
    err, cid = await _start_fails(runtime, b.dir, b.log)
    assert 'exec: "/etc/passwd": permission denied' in err.message
    assert err.exit_code == 126
    _nothing_left(runtime, cid)


def test_unknown_user_and_group(tmp_path: Path, testbed: object) -> None:
    rootfs = testbed.busybox_rootfs  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgument, match="unable to find user nosuch: no matching entries in passwd file"):
        spec.build({"Cmd": ["true"], "User": "nosuch"}, {}, {}, rootfs=rootfs)
    with pytest.raises(InvalidArgument, match="unable to find group nosuchgroup: no matching entries in group file"):
        spec.build({"Cmd": ["true"], "User": "user:nosuchgroup"}, {}, {}, rootfs=rootfs)
    built = spec.build({"Cmd": ["true"], "User": "1234:5678"}, {}, {}, rootfs=rootfs)
    assert built["process"]["user"] == {"uid": 1234, "gid": 5678, "additionalGids": []}
    built = spec.build({"Cmd": ["true"], "User": "user"}, {}, {}, rootfs=rootfs)
    assert built["process"]["user"]["uid"] == 1000 and built["process"]["user"]["gid"] == 1000


def test_malformed_memory_values(testbed: object) -> None:
    rootfs = testbed.busybox_rootfs  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgument, match="invalid size: '12x'"):
        spec.parse_memory("12x")
    assert spec.parse_memory("512m") == 512 * 1024 * 1024
    assert spec.parse_memory("1g") == 1 << 30
    with pytest.raises(
        InvalidArgument, match=r"cannot unmarshal string into Go struct field HostConfig\.HostConfig\.Memory"
    ):
        spec.build({"Cmd": ["true"]}, {"Memory": "12x"}, {}, rootfs=rootfs)
    with pytest.raises(InvalidArgument, match="Minimum memory limit allowed is 6MB"):
        validate.check_resources({"Memory": 1024})  # at create and update, before any spec is built
    with pytest.raises(InvalidArgument, match='unknown capability: "CAP_NOPE"'):
        spec.build({"Cmd": ["true"]}, {"CapAdd": ["NOPE"]}, {}, rootfs=rootfs)
    with pytest.raises(InvalidArgument, match="No command specified"):
        spec.build({}, {}, {}, rootfs=rootfs)


async def test_deleting_a_created_container_leaves_nothing(runtime: Runtime, make_bundle: MakeBundle) -> None:
    b = make_bundle(["sleep", "100"], {}, {"Memory": 64 * 1024 * 1024})
    cid = new_id()
    pid = await runtime.create(cid, b.dir, log_path=b.log)
    assert runtime.state(cid).status == "created"
    assert Path(f"/proc/{pid}").exists()  # the init waits for start
    await runtime.delete(cid)  # not running: no force needed
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    _nothing_left(runtime, cid)
