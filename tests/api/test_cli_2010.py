"""The issue's docker CLI list again, through Debian's docker.io 20.10 CLI (API 1.41): what it sends differs from
the docker 28 CLI (older create and attach shapes, other query parameters), so each step runs here too."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.api.conftest import PortsideDaemon
from tests.api.test_containers import _pty_run
from tests.testbed.registry import Registry

CLI = "/usr/bin/docker"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not os.path.exists(CLI), reason="Debian's docker.io is not installed"),
]


def _d(daemon: PortsideDaemon, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return daemon.docker(*args, cli=CLI, timeout=timeout)


def _ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_2010_run_detached_logs_exec_stats_top_events_rm(daemon: PortsideDaemon, busybox: str,
                                                          registry: Registry) -> None:
    pid = os.getpid()
    web, box = f"pst-20web-{pid}", f"pst-20box-{pid}"
    since = f"{time.time():.3f}"
    try:
        src = f"{registry.host}/testbed/nginx:latest"
        _ok(_d(daemon, "pull", "-q", src))
        _ok(_d(daemon, "run", "-d", "-p", "127.0.0.1::80", "--name", web, src))
        port = _ok(_d(daemon, "port", web, "80")).split()[0]
        body = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and b"Welcome to nginx" not in body:
            try:
                body = urllib.request.urlopen(f"http://{port}/", timeout=2).read()
            except OSError:
                time.sleep(0.1)
        assert b"Welcome to nginx" in body

        _ok(_d(daemon, "run", "-d", "--name", box, busybox, "sh", "-c",
               "i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.2; done"))
        # logs -f streams: the CLI is killed after a few lines have arrived
        proc = subprocess.Popen([CLI, "-H", daemon.host, "logs", "-f", box], stdout=subprocess.PIPE,
                                env=dict(os.environ, DOCKER_CONFIG=str(daemon.tmp / "cli")))
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(3)]
        finally:
            proc.kill()
            proc.wait()
        assert lines == [b"line-1\n", b"line-2\n", b"line-3\n"]

        out, code = _pty_run([CLI, "-H", daemon.host, "exec", "-it", box, "sh"], b"echo ex-$((40+2)); exit 5\r")
        assert b"ex-42" in out and code == 5
        stats = json.loads(_ok(_d(daemon, "stats", "--no-stream", "--format", "{{json .}}", box)))
        assert not stats["MemUsage"].startswith("0B")
        assert "while true" in _ok(_d(daemon, "top", box))

        _ok(_d(daemon, "rm", "-f", box))
        assert _d(daemon, "inspect", box).returncode != 0
        ev = _ok(_d(daemon, "events", "--since", since, "--until", f"{time.time():.3f}", "--filter",
                    f"container={box}", "--format", "{{.Action}}"))
        for action in ("create", "start", "die", "destroy"):
            assert action in ev.split(), ev
    finally:
        _d(daemon, "rm", "-f", web, box)


def test_2010_cp_commit_diff_save_load_push_pull(daemon: PortsideDaemon, busybox: str, registry: Registry,
                                                 tmp_path: Path) -> None:
    pid = os.getpid()
    name, image = f"pst-20cp-{pid}", f"pst-20commit-{pid}:v1"
    ref = f"{registry.host}/pst/pushed20-{pid}:v1"
    try:
        _ok(_d(daemon, "run", "-d", "--name", name, busybox, "sleep", "60"))
        src = tmp_path / "in.txt"
        src.write_text("from the 20.10 cli\n")
        _ok(_d(daemon, "cp", str(src), f"{name}:/root/"))
        _ok(_d(daemon, "cp", f"{name}:/root/in.txt", str(tmp_path / "out.txt")))
        assert (tmp_path / "out.txt").read_text() == "from the 20.10 cli\n"
        assert "A /root/in.txt" in _ok(_d(daemon, "diff", name)).splitlines()

        _ok(_d(daemon, "commit", name, image))
        assert _ok(_d(daemon, "run", "--rm", image, "cat", "/root/in.txt")) == "from the 20.10 cli\n"
        image_id = _ok(_d(daemon, "image", "inspect", "--format", "{{.Id}}", image)).strip()
        tar = tmp_path / "saved.tar"
        _ok(_d(daemon, "save", "-o", str(tar), image))
        _ok(_d(daemon, "rmi", image))
        assert image in _ok(_d(daemon, "load", "-i", str(tar)))
        assert _ok(_d(daemon, "image", "inspect", "--format", "{{.Id}}", image)).strip() == image_id

        _ok(_d(daemon, "tag", image, ref))
        assert "digest: sha256:" in _ok(_d(daemon, "push", ref))
        _ok(_d(daemon, "rmi", ref))
        _ok(_d(daemon, "pull", ref))
        assert _ok(_d(daemon, "image", "inspect", "--format", "{{.Id}}", ref)).strip() == image_id
    finally:
        _d(daemon, "rm", "-f", name)
        _d(daemon, "rmi", ref, image)


def test_2010_networks_volumes_df_info(daemon: PortsideDaemon, busybox: str) -> None:
    pid = os.getpid()
    net, vol, a = f"pst20n{pid % 100000}", f"pst-20vol-{pid}", f"pst-20a-{pid}"
    try:
        _ok(_d(daemon, "network", "create", net))
        _ok(_d(daemon, "run", "-d", "--name", a, busybox, "sleep", "60"))
        _ok(_d(daemon, "network", "connect", net, a))
        nets = json.loads(_ok(_d(daemon, "inspect", a)))[0]["NetworkSettings"]["Networks"]
        assert net in nets and nets[net]["IPAddress"]
        _ok(_d(daemon, "run", "--rm", "-v", f"{vol}:/data", busybox, "sh", "-c", "echo kept > /data/f"))
        assert _ok(_d(daemon, "run", "--rm", "-v", f"{vol}:/data", busybox, "cat", "/data/f")) == "kept\n"
        assert "Local Volumes" in _ok(_d(daemon, "system", "df"))
        info = json.loads(_ok(_d(daemon, "info", "--format", "{{json .}}")))
        assert info["ContainersRunning"] >= 1 and info["OperatingSystem"]
        assert _d(daemon, "run", "--rm", busybox, "sh", "-c", "exit 3").returncode == 3
    finally:
        _d(daemon, "rm", "-f", a)
        _d(daemon, "network", "rm", net)
        _d(daemon, "volume", "rm", vol)
