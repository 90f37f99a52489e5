"""Containers outlive the daemon: a new daemon re-adopts running ones and applies restart policies to the ones
that died while no daemon was up."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.api.conftest import PortsideDaemon, new_daemon, remove_daemon_dirs
from tests.testbed.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
pytest.importorskip("engine.exec.runtime", reason="no container runtime in this tree yet")


def _state(d: PortsideDaemon, name: str) -> dict:
    return json.loads(d.docker("inspect", name).stdout)[0]


def test_restart_readopts_running_and_restarts_dead_always_containers(registry: Registry) -> None:
    d = new_daemon()
    try:
        d.start()
        src = f"{registry.host}/testbed/busybox:latest"
        assert d.docker("pull", "-q", src).returncode == 0
        assert d.docker("run", "-d", "--name", "plain", src, "sleep", "300").returncode == 0
        assert d.docker("run", "-d", "--restart", "always", "--name", "always", src, "sleep", "300").returncode == 0
        plain_pid = _state(d, "plain")["State"]["Pid"]
        always_pid = _state(d, "always")["State"]["Pid"]
        d.stop()
        os.kill(plain_pid, 0)  # still running without a daemon
        os.kill(always_pid, signal.SIGKILL)  # dies while no daemon watches
        time.sleep(0.3)
        d.start()
        plain = _state(d, "plain")
        assert plain["State"]["Running"] is True and plain["State"]["Pid"] == plain_pid
        deadline = time.monotonic() + 20
        always = _state(d, "always")
        while time.monotonic() < deadline and not (always["State"]["Running"] and always["State"]["Pid"] != always_pid):
            time.sleep(0.2)
            always = _state(d, "always")
        assert always["State"]["Running"] is True and always["State"]["Pid"] != always_pid
        # the re-adopted container is fully managed: stop gets its exit
        assert d.docker("stop", "-t", "1", "plain").returncode == 0
        assert _state(d, "plain")["State"]["Status"] == "exited"
        assert d.docker("rm", "-f", "plain", "always").returncode == 0
    finally:
        d.stop()
        d.cleanup_containers()
        d.destroy_network_state()
        remove_daemon_dirs(d)
