"""docker-py (the `docker` package) against the daemon: the flows of its own integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import docker
import pytest
from docker.errors import APIError, NotFound

from tests.api.conftest import PortsideDaemon

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(daemon: PortsideDaemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    try:
        yield c
    finally:
        c.close()


def test_version_negotiation_and_ping(client: docker.DockerClient) -> None:
    assert client.ping() is True
    v = client.version()
    assert v["ApiVersion"] == "1.50"
    assert client.api.api_version == "1.50"
    assert client.info()["Swarm"]["LocalNodeState"] == "inactive"


def test_volumes_flow(client: docker.DockerClient) -> None:
    name = f"pst-py-vol-{os.getpid()}"
    vol = client.volumes.create(name, labels={"who": "docker-py"})
    try:
        assert vol.name == name and vol.attrs["Driver"] == "local"
        assert name in [v.name for v in client.volumes.list(filters={"label": "who=docker-py"})]
        assert client.volumes.get(name).attrs["Labels"] == {"who": "docker-py"}
    finally:
        vol.remove()
    with pytest.raises(NotFound):
        client.volumes.get(name)
    anon = client.volumes.create()
    pruned = client.volumes.prune()
    assert anon.name in (pruned["VolumesDeleted"] or [])


def test_networks_flow(client: docker.DockerClient) -> None:
    name = f"pst-py-net-{os.getpid()}"
    net = client.networks.create(name, labels={"who": "docker-py"})
    try:
        got = client.networks.get(net.id)
        assert got.name == name and got.attrs["Driver"] == "bridge"
        assert [n.name for n in client.networks.list(names=[name])] == [name]
        with pytest.raises(APIError) as e:
            client.networks.create(name)
        assert e.value.status_code == 409
    finally:
        net.remove()
    pruned = client.networks.prune()
    assert name not in (pruned.get("NetworksDeleted") or [])
    with pytest.raises(NotFound):
        client.networks.get(name)


def test_swarm_is_inactive(client: docker.DockerClient) -> None:
    with pytest.raises(APIError) as e:
        client.services.list()
    assert e.value.status_code == 503
    assert client.plugins.list() == []
