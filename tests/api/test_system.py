"""System endpoints and the server core, through the docker 28 CLI and raw HTTP on the socket."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time

import pytest

from engine.version import API_VERSION
from tests.api.conftest import PortsideDaemon, new_daemon, remove_daemon_dirs

pytestmark = pytest.mark.integration


def test_docker_version_reports_the_api(daemon: PortsideDaemon) -> None:
    out = daemon.docker("version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [API_VERSION, "1.24"]


def test_docker_info_is_a_non_swarm_engine(daemon: PortsideDaemon) -> None:
    out = daemon.docker("info", "--format", "{{json .}}")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["DockerRootDir"] == str(daemon.data_root)
    assert info["OSType"] == "linux" and info["NCPU"] >= 1 and info["MemTotal"] > 0


def test_socket_mode_is_0660(daemon: PortsideDaemon) -> None:
    st = os.stat(daemon.sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660


def test_ping_head_and_get_carry_the_api_version(daemon: PortsideDaemon) -> None:
    for method in ("HEAD", "GET"):
        status, headers, body = daemon.request(method, "/v1.41/_ping")
        assert status == 200
        assert headers["api-version"] == API_VERSION
        assert body == (b"OK" if method == "GET" else b"")


def test_versions_out_of_range_get_dockerds_400(daemon: PortsideDaemon) -> None:
    status, _, body = daemon.request("GET", "/v1.12/version")
    assert status == 400
    assert json.loads(body)["message"].startswith("client version 1.12 is too old. Minimum supported API version")
    status, _, body = daemon.request("GET", "/v9.99/version")
    assert status == 400 and "is too new" in json.loads(body)["message"]
    status, _, body = daemon.request("GET", "/v1.24/version")
    assert status == 200 and json.loads(body)["ApiVersion"] == API_VERSION


def test_unknown_route_is_404_and_bad_json_is_400(daemon: PortsideDaemon) -> None:
    status, headers, body = daemon.request("GET", "/v1.50/no/such/thing")
    assert status == 404 and json.loads(body) == {"message": "page not found"}
    assert headers["content-type"] == "application/json"
    status, _, body = daemon.request("POST", "/volumes/create", body=b"{not json",
                                     headers={"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["message"].startswith("invalid JSON")


def test_swarm_answers_like_a_non_swarm_docker(daemon: PortsideDaemon) -> None:
    out = daemon.docker("service", "ls")
    assert out.returncode != 0
    assert "This node is not a swarm manager" in out.stderr
    assert daemon.docker("plugin", "ls", "-q").stdout.strip() == ""


def test_volume_lifecycle_and_its_events(daemon: PortsideDaemon) -> None:
    name = f"pst-vol-{os.getpid()}"
    since = f"{time.time() - 1:.9f}"
    assert daemon.docker("volume", "create", "--label", "k=v", name).stdout.strip() == name
    try:
        ls = daemon.docker("volume", "ls", "--filter", "label=k=v", "--format", "{{.Name}}")
        assert name in ls.stdout.split()
        insp = json.loads(daemon.docker("volume", "inspect", name).stdout)[0]
        assert insp["Driver"] == "local" and insp["Labels"] == {"k": "v"}
        assert os.path.isdir(insp["Mountpoint"]) and insp["Mountpoint"].startswith(str(daemon.data_root))
        bad = daemon.docker("volume", "create", "bad/name")
        assert bad.returncode != 0 and "includes invalid characters" in bad.stderr
    finally:
        assert daemon.docker("volume", "rm", name).returncode == 0
    missing = daemon.docker("volume", "inspect", name)
    assert missing.returncode == 1 and f"get {name}: no such volume" in missing.stderr
    ev = daemon.docker("events", "--since", since, "--until", f"{time.time():.9f}", "--filter", "type=volume",
                       "--format", "{{.Action}} {{.Actor.ID}}")
    assert ev.returncode == 0, ev.stderr
    assert f"create {name}" in ev.stdout and f"destroy {name}" in ev.stdout


def test_events_stream_live_and_survive_a_hang_up(daemon: PortsideDaemon) -> None:
    name, live = f"pst-ev-{os.getpid()}", f"pst-ev-live-{os.getpid()}"
    # --since now: the first create is seen however late the CLI subscribes (a loaded machine can take seconds)
    proc = subprocess.Popen(["docker", "-H", daemon.host, "events", "--since", f"{time.time():.9f}", "--filter",
                             "type=volume", "--format", "{{.Action}} {{.Actor.ID}}"], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        daemon.docker("volume", "create", name)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"create {name}"
        # the stream is surely subscribed now: this one has to come live
        daemon.docker("volume", "create", live)
        assert proc.stdout.readline().strip() == f"create {live}"
    finally:
        proc.kill()
        proc.wait()
        daemon.docker("volume", "rm", name, live)
    assert daemon.request("GET", "/_ping")[0] == 200


def test_system_df_lists_volumes(daemon: PortsideDaemon) -> None:
    name = f"pst-df-{os.getpid()}"
    daemon.docker("volume", "create", name)
    try:
        out = daemon.docker("system", "df", "-v", "--format", "{{json .}}")
        assert out.returncode == 0, out.stderr
        assert name in out.stdout
    finally:
        daemon.docker("volume", "rm", name)


def test_a_second_daemon_on_the_same_data_root_is_refused(daemon: PortsideDaemon) -> None:
    other = new_daemon()
    try:
        other.tmp.rmdir()
        other.tmp = daemon.tmp
        env_cmd = other.command()
        env_cmd[env_cmd.index("-H") + 1] = f"unix://{daemon.tmp}/second.sock"
        from tests.api.conftest import ENGINE_PARENT

        out = subprocess.run(env_cmd, capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, PYTHONPATH=ENGINE_PARENT), check=False)
        assert out.returncode == 1
        assert "in use by another portside engine" in out.stderr
        assert not (daemon.tmp / "second.sock").exists()
    finally:
        if other.exec_dir is not None:
            shutil.rmtree(other.exec_dir, ignore_errors=True)


def test_tcp_on_a_public_address_without_tls_is_refused() -> None:
    d = new_daemon()
    try:
        d.extra_args = ["-H", "tcp://0.0.0.0:23750"]
        with pytest.raises(RuntimeError, match="without TLS client verification"):
            d.start(timeout=30)
    finally:
        d.stop()
        d.destroy_network_state()
        remove_daemon_dirs(d)


def test_embedded_daemon_thread_serves_the_cli() -> None:
    from engine.daemon import DaemonConfig, DaemonThread

    d = new_daemon()
    cfg = DaemonConfig(data_root=d.data_root, exec_root=d.exec_root, hosts=[d.host], bridge=d.bridge,
                       ip_forward=False, cgroup_parent=f"portside-test-{d.bridge}")
    try:
        with DaemonThread(cfg):
            out = d.docker("version", "--format", "{{.Server.Version}}")
            assert out.returncode == 0, out.stderr
        assert not d.sock.exists()
        # The lock is released: a new engine can take the data root.
        with DaemonThread(cfg):
            assert d.request("GET", "/_ping")[0] == 200
    finally:
        d.destroy_network_state()
        remove_daemon_dirs(d)


DEBIAN_DOCKER = "/usr/bin/docker"


@pytest.mark.skipif(not os.path.exists(DEBIAN_DOCKER), reason="Debian's docker.io is not installed")
def test_debian_docker_20_10_cli_speaks_1_41(daemon: PortsideDaemon) -> None:
    out = daemon.docker("version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}}", cli=DEBIAN_DOCKER)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1.41", API_VERSION]
    name = f"pst-old-{os.getpid()}"
    assert daemon.docker("volume", "create", name, cli=DEBIAN_DOCKER).returncode == 0
    ls = daemon.docker("volume", "ls", "-q", cli=DEBIAN_DOCKER)
    assert name in ls.stdout.split()
    assert daemon.docker("volume", "rm", name, cli=DEBIAN_DOCKER).returncode == 0


def test_pidfile_and_daemon_json() -> None:
    d = new_daemon()
    try:
        cfg = d.tmp / "daemon.json"
        cfg.write_text(json.dumps({"insecure-registries": ["registry.pst.test:5000"], "log-level": "warn"}))
        pidfile = d.tmp / "portside.pid"
        d.extra_args = ["--pidfile", str(pidfile), "--config-file", str(cfg)]
        d.start()
        assert d.proc is not None and pidfile.read_text().strip() == str(d.proc.pid)
        info = json.loads(d.docker("info", "--format", "{{json .}}").stdout)
        assert info["RegistryConfig"]["IndexConfigs"]["registry.pst.test:5000"]["Secure"] is False
        d.stop()
        assert not pidfile.exists()
        # a directive both in the file and on the command line is refused, as dockerd does
        d.extra_args += ["--log-level", "debug"]
        with pytest.raises(RuntimeError, match="both as a flag and in the configuration file"):
            d.start(timeout=30)
    finally:
        d.stop()
        d.destroy_network_state()
        remove_daemon_dirs(d)
