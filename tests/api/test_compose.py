"""Debian's docker-compose 1.29 drives a two-service project: nginx, and a busybox client that fetches from
nginx by service name; `down` leaves no container, network or volume behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.api.conftest import PortsideDaemon
from tests.testbed.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
pytest.importorskip("engine.exec.runtime", reason="no container runtime in this tree yet")

COMPOSE = shutil.which("docker-compose")

PROJECT = """
version: "3.7"
services:
  web:
    image: nginx:latest
  client:
    image: busybox:latest
    depends_on: [web]
    command: ["sh", "-c", "until wget -q -O - http://web/ ; do sleep 0.2; done; sleep 300"]
    volumes: ["data:/data"]
volumes:
  data: {}
"""


@pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed")
def test_compose_up_ps_logs_down(daemon: PortsideDaemon, registry: Registry, tmp_path: Path) -> None:
    for image in ("busybox", "nginx"):
        src = f"{registry.host}/testbed/{image}:latest"
        assert daemon.docker("pull", src).returncode == 0
        assert daemon.docker("tag", src, f"{image}:latest").returncode == 0
    (tmp_path / "docker-compose.yml").write_text(PROJECT)
    project = f"pstcompose{os.getpid()}"
    env = dict(os.environ, DOCKER_HOST=daemon.host, COMPOSE_PROJECT_NAME=project)

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        assert COMPOSE is not None
        return subprocess.run([COMPOSE, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
                              check=False)

    try:
        up = compose("up", "-d")
        assert up.returncode == 0, up.stderr
        ps = compose("ps")
        assert ps.returncode == 0, ps.stderr
        assert "Up" in ps.stdout and f"{project}_web_1" in ps.stdout and f"{project}_client_1" in ps.stdout
        deadline = time.monotonic() + 60
        logs = ""
        while time.monotonic() < deadline:
            logs = compose("logs", "client").stdout
            if "Welcome to nginx" in logs:
                break
            time.sleep(0.5)
        assert "Welcome to nginx" in logs
    finally:
        down = compose("down", "-v")
    assert down.returncode == 0, down.stderr
    left = daemon.docker("ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "-q")
    assert left.stdout.strip() == ""
    nets = json.loads(daemon.request("GET", "/networks")[2])
    assert not [n for n in nets if n["Name"].startswith(project)]
    vols = json.loads(daemon.request("GET", "/volumes")[2])["Volumes"]
    assert not [v for v in vols if v["Name"].startswith(project)]
