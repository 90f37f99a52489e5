"""Networks through the docker CLI: create, inspect, list, remove, prune, and their events."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.api.conftest import PortsideDaemon

pytestmark = pytest.mark.integration


def test_network_create_inspect_rm(daemon: PortsideDaemon) -> None:
    name = f"pstnet{os.getpid() % 10000}"
    since = f"{time.time() - 1:.9f}"
    out = daemon.docker("network", "create", "--subnet", "10.231.7.0/24", "--label", "t=1", name)
    assert out.returncode == 0, out.stderr
    nid = out.stdout.strip()
    try:
        insp = json.loads(daemon.docker("network", "inspect", name).stdout)[0]
        assert insp["Id"] == nid and insp["IPAM"]["Config"][0]["Subnet"] == "10.231.7.0/24"
        ls = daemon.docker("network", "ls", "--filter", "label=t=1", "--format", "{{.Name}}").stdout.split()
        assert ls == [name]
        again = daemon.docker("network", "create", name)
        assert again.returncode != 0 and "already exists" in again.stderr
        names = daemon.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert {"bridge", "host", "none"} <= set(names)
    finally:
        assert daemon.docker("network", "rm", name).returncode == 0
    gone = daemon.docker("network", "inspect", name)
    assert gone.returncode != 0
    ev = daemon.docker("events", "--since", since, "--until", f"{time.time():.9f}", "--filter", "type=network",
                       "--format", "{{.Action}} {{.Actor.Attributes.name}}")
    assert f"create {name}" in ev.stdout and f"destroy {name}" in ev.stdout


def test_predefined_networks_cannot_be_removed(daemon: PortsideDaemon) -> None:
    out = daemon.docker("network", "rm", "bridge")
    assert out.returncode != 0 and "pre-defined network" in out.stderr
