"""A malformed or out-of-range HostConfig value is dockerd's 400 at create (or update), through docker-py and the
docker CLI, and leaves no container behind; a seccomp profile is JSON (the CLI inlines a file), never a path the
daemon reads on its host."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import APIError

from tests.api.conftest import PortsideDaemon
from tests.testbed.cli import DOCKER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _name() -> str:
    return f"pst-valid-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def client(daemon: PortsideDaemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    try:
        yield c
    finally:
        c.close()


def _no_container(client: docker.DockerClient, name: str) -> None:
    assert client.containers.list(all=True, filters={"name": name}) == []


# (docker-py create kwargs, the start of dockerd's message); one per class of value that reaches a syscall
API_CASES: list[tuple[dict[str, Any], str]] = [
    ({"security_opt": ["seccomp=/etc/passwd"]},
     "Decoding seccomp profile failed: invalid character '/' looking for beginning of value"),
    ({"security_opt": ["seccomp=[]"]}, "Decoding seccomp profile failed: json: cannot unmarshal array"),
    ({"security_opt": ["bogus"]}, 'invalid --security-opt 1: "bogus"'),
    ({"cap_add": ["NOT_A_CAP"]}, 'invalid CapAdd: unknown capability: "CAP_NOT_A_CAP"'),
    ({"cap_drop": [7]}, "json: cannot unmarshal number into Go struct field HostConfig.HostConfig.CapDrop"),
    ({"oom_score_adj": 1001}, "Invalid value 1001, range for oom score adj is [-1000, 1000]"),
    ({"shm_size": -1}, "SHM size can not be less than 0"),
    ({"sysctls": {"net.ipv4/../../../sysrq-trigger": "b"}}, "is not a valid sysctl name"),
    ({"sysctls": {"kernel.hostname": "x"}}, 'sysctl "kernel.hostname" is not in a separate kernel namespace'),
    ({"tmpfs": {"/t": "size=lots"}}, 'invalid tmpfs option "size=lots"'),
    ({"tmpfs": {"/t": "uid=0,exploit=1"}}, 'invalid tmpfs option "exploit"'),
    ({"tmpfs": {"/": ""}}, "invalid specification: destination can't be '/'"),
    ({"cpuset_cpus": "0-x"}, "Invalid value 0-x for cpuset cpus: invalid format: 0-x"),
    ({"cpuset_cpus": "4096"}, "Requested CPUs are not available - requested 4096"),
    ({"devices": ["/dev/null:/dev/n:rwx"]}, "invalid device mode: rwx"),
    ({"devices": ["/dev/null:/dev/../../n:rw"]}, "/dev/../../n is not an absolute path"),
    ({"ulimits": [docker.types.Ulimit(name="nofile", soft=10, hard=5)]},
     "ulimit soft limit must be less than or equal to hard limit: 10 > 5"),
    ({"ulimits": [docker.types.Ulimit(name="bogus", soft=1, hard=1)]}, "invalid ulimit type: bogus"),
    ({"blkio_weight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"mem_limit": 64 * 2**20, "memswap_limit": 32 * 2**20},
     "Minimum memoryswap limit should be larger than memory limit"),
    ({"volumes": ["/tmp:/mnt:rw,sideways"]}, "invalid mode: rw,sideways"),
    ({"restart_policy": {"Name": "sometimes"}}, "invalid restart policy: unknown policy 'sometimes'"),
    ({"ports": {"80/tcp": "70000"}}, "invalid port"),
    ({"pid_mode": "container:"}, "invalid PID mode: container:"),
    ({"ipc_mode": "bogus"}, "invalid IPC mode: bogus"),
    ({"cgroupns": "shared"}, "invalid cgroup namespace mode: shared"),
    ({"device_cgroup_rules": ["c 1:3 rwm\n"]}, "invalid device cgroup rule format"),
    ({"environment": ["=x"]}, "invalid environment variable: =x"),
    ({"hostname": "h" * 65}, "is too long (maximum 64 bytes)"),
    ({"extra_hosts": ["pst\n1.2.3.4 evil:10.0.0.1"]}, "bad format for add-host"),
    ({"extra_hosts": {"pst": "10.0.0.300"}}, 'invalid IP address in add-host: "10.0.0.300"'),
    ({"volumes": ["/tmp:/"]}, 'type "bind": invalid specification: destination can\'t be \'/\''),
    ({"mounts": [docker.types.Mount("/", "pst-vol")]}, "invalid specification: destination can't be '/'"),
    ({"dns": ["pst-not-an-ip"]}, 'ParseAddr("pst-not-an-ip"): unable to parse IP'),
    ({"dns_search": ["example.com\nnameserver 10.6.6.6"]}, "invalid DNS search domain"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs,message", API_CASES, ids=[m[:40] for _, m in API_CASES])
def test_a_bad_value_is_a_400_at_create(client: docker.DockerClient, busybox: str, kwargs: dict[str, Any],
                                        message: str) -> None:
    name = _name()
    with pytest.raises(APIError) as e:
        client.containers.create(busybox, ["true"], name=name, **kwargs)
    assert e.value.status_code == 400, e.value
    assert message in str(e.value.explanation), e.value.explanation
    _no_container(client, name)


def test_update_checks_the_same(client: docker.DockerClient, busybox: str) -> None:
    c = client.containers.create(busybox, ["true"], name=_name())
    try:
        for kwargs, message in (({"cpuset_cpus": "1-0"}, "Invalid value 1-0 for cpuset cpus"),
                                ({"blkio_weight": 2000}, "Range of blkio weight is from 10 to 1000"),
                                ({"restart_policy": {"Name": "never"}}, "unknown policy 'never'")):
            with pytest.raises(APIError) as e:
                c.update(**kwargs)
            assert e.value.status_code == 400 and message in str(e.value.explanation), e.value.explanation
        c.reload()
        assert c.attrs["HostConfig"]["CpusetCpus"] == "" and c.attrs["HostConfig"]["BlkioWeight"] == 0
    finally:
        c.remove(force=True)


def test_cpu_shares_are_clamped_as_dockerd_does(client: docker.DockerClient, busybox: str) -> None:
    c = client.containers.create(busybox, ["true"], name=_name(), cpu_shares=1, pids_limit=-1)
    try:
        assert (c.attrs["HostConfig"]["CpuShares"], c.attrs["HostConfig"]["PidsLimit"]) == (2, 0)
    finally:
        c.remove(force=True)


CLI_CASES: list[tuple[list[str], str]] = [
    (["--cap-add", "NOT_A_CAP"], 'invalid CapAdd: unknown capability: "CAP_NOT_A_CAP"'),
    (["--oom-score-adj", "5000"], "range for oom score adj is [-1000, 1000]"),
    (["--tmpfs", "/t:mode=999"], 'invalid tmpfs option "mode=999"'),
    (["--cpuset-mems", "a"], "Invalid value a for cpuset mems: invalid format: a"),
    (["--sysctl", "net.core/../../../sysrq-trigger=b"], "is not a valid sysctl name"),
    (["--security-opt", "seccomp=/etc/passwd.json.missing"], "opening seccomp profile"),
]


@pytest.mark.parametrize("flags,message", CLI_CASES, ids=[m[:40] for _, m in CLI_CASES])
def test_the_cli_reports_it(daemon: PortsideDaemon, busybox: str, flags: list[str], message: str) -> None:
    name = _name()
    out = daemon.docker("run", "--name", name, *flags, busybox, "true")
    assert out.returncode == 125, (out.stdout, out.stderr)
    assert message in out.stderr, out.stderr
    assert daemon.docker("ps", "-aq", "--filter", f"name={name}").stdout == ""


@pytest.mark.parametrize("cli", [DOCKER, "/usr/bin/docker"], ids=["cli28", "cli2010"])
def test_a_seccomp_file_is_inlined_by_the_cli_and_applied(daemon: PortsideDaemon, busybox: str,
                                                          tmp_path: Path, cli: str) -> None:
    if not os.path.exists(cli):
        pytest.skip(f"{cli} is not installed")
    profile = tmp_path / "pst-no-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    out = daemon.docker("run", "--rm", "--security-opt", f"seccomp={profile}", busybox, "mkdir", "/tmp/d", cli=cli)
    assert out.returncode == 1 and "Operation not permitted" in out.stderr, (out.stdout, out.stderr)
    # the 20.10 CLI reads any value but `unconfined` as a file (it predates `builtin`)
    for value in ("builtin", "unconfined") if cli == DOCKER else ("unconfined",):
        out = daemon.docker("run", "--rm", "--security-opt", f"seccomp={value}", busybox, "mkdir", "/tmp/d", cli=cli)
        assert out.returncode == 0, (value, out.stderr)


def test_a_seccomp_path_is_never_read_on_the_daemon_host(client: docker.DockerClient, busybox: str,
                                                         tmp_path: Path) -> None:
    # a valid profile at a path the daemon could read: it is still a path, not JSON, so it is refused
    profile = tmp_path / "pst-allow.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    name = _name()
    with pytest.raises(APIError) as e:
        client.containers.create(busybox, ["true"], name=name, security_opt=[f"seccomp={profile}"])
    assert e.value.status_code == 400
    assert "invalid character '/' looking for beginning of value" in str(e.value.explanation)
    _no_container(client, name)


@pytest.mark.parametrize("name", ["pst-valid-nl\n", "../pst-valid", "pst valid", "-pst"])
def test_a_malformed_container_or_volume_name_is_a_400(client: docker.DockerClient, busybox: str,
                                                       name: str) -> None:
    with pytest.raises(APIError) as e:
        client.containers.create(busybox, ["true"], name=name)
    assert e.value.status_code == 400 and "Invalid container name" in str(e.value.explanation)
    with pytest.raises(APIError) as e:
        client.volumes.create(name)
    assert e.value.status_code == 400 and "includes invalid characters" in str(e.value.explanation)
    assert [v for v in client.volumes.list() if v.name == name] == []


def test_a_raw_caller_gets_the_checks_the_clients_make_themselves(daemon: PortsideDaemon, busybox: str) -> None:
    # docker-py and the CLI refuse these before sending; the daemon must too
    for hc, message in (({"UTSMode": "private"}, "invalid UTS mode: private"),
                        ({"Tmpfs": {"relative": ""}}, "invalid mount path: 'relative' mount path must be absolute")):
        body = json.dumps({"Image": busybox, "Cmd": ["true"], "HostConfig": hc}).encode()
        status, _, data = daemon.request("POST", "/v1.50/containers/create?name=pst-valid-raw", body,
                                         {"Content-Type": "application/json"})
        assert (status, json.loads(data)["message"]) == (400, message)
    assert daemon.docker("ps", "-aq", "--filter", "name=pst-valid-raw").stdout == ""


def test_add_host_forms_the_cli_sends_still_work(daemon: PortsideDaemon, busybox: str) -> None:
    out = daemon.docker("run", "--rm", "--add-host", "pst-a:10.1.2.3", "--add-host", "pst-b=10.1.2.4",
                        "--add-host", "pst-c:::1", busybox, "cat", "/etc/hosts")
    assert out.returncode == 0, out.stderr
    assert {"10.1.2.3\tpst-a", "10.1.2.4\tpst-b", "::1\tpst-c"} <= set(out.stdout.splitlines()), out.stdout


def test_docker_update_reports_it(daemon: PortsideDaemon, busybox: str, names: list[str]) -> None:
    name = _name()
    names.append(name)
    assert daemon.docker("create", "--name", name, busybox, "true").returncode == 0
    out = daemon.docker("update", "--cpuset-cpus", "0-a", name)
    assert out.returncode == 1 and "Invalid value 0-a for cpuset cpus" in out.stderr, (out.stdout, out.stderr)
    out = daemon.docker("update", "--restart", "sometimes", name)
    assert out.returncode == 1 and "unknown policy 'sometimes'" in out.stderr, (out.stdout, out.stderr)
    assert daemon.docker("inspect", "-f", "{{.HostConfig.CpusetCpus}}", name).stdout == "\n"
