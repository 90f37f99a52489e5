"""docker-py (the `docker` package) against the daemon: the flows of its own integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import docker
import pytest
from docker.errors import APIError, NotFound

from tests.api.conftest import PortsideDaemon
from tests.testbed.registry import Registry

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


@pytest.fixture(scope="module")
def py_busybox(client: docker.DockerClient, registry: Registry) -> str:
    img = client.images.pull(f"{registry.host}/testbed/busybox", tag="latest")
    img.tag("busybox", "latest")
    return "busybox:latest"


def test_containers_flow(client: docker.DockerClient, py_busybox: str) -> None:
    pytest.importorskip("engine.exec.runtime", reason="no container runtime in this tree yet")
    assert client.containers.run(py_busybox, ["echo", "hello from docker-py"], remove=True) == b"hello from docker-py\n"
    c = client.containers.create(py_busybox, ["sh", "-c", "echo out; echo err >&2; sleep 60"],
                                 name=f"pst-py-{os.getpid()}")
    try:
        c.start()
        c.reload()
        assert c.status == "running"
        for _ in range(5):  # output right at the start of an exec must survive docker-py's buffered 101 read
            res = c.exec_run(["sh", "-c", "echo $((2+3))"])
            assert (res.exit_code, res.output) == (0, b"5\n")
        missing = c.exec_run(["no-such-binary"])
        assert missing.exit_code in (126, 127) and b"executable file not found" in missing.output
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            data = b"put by docker-py\n"
            info = tarfile.TarInfo("put.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        assert c.put_archive("/tmp", buf.getvalue()) is True
        bits, stat = c.get_archive("/tmp/put.txt")
        raw = b"".join(bits)
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            member = tf.extractfile("put.txt")
            assert member is not None and member.read() == b"put by docker-py\n"
        assert stat["name"] == "put.txt"
        deadline = __import__("time").monotonic() + 10
        while b"err" not in c.logs(stdout=False, stderr=True) and __import__("time").monotonic() < deadline:
            __import__("time").sleep(0.1)
        assert c.logs(stdout=True, stderr=False) == b"out\n"
        st = c.stats(stream=False)
        assert st["memory_stats"].get("usage", 0) > 0 and "cpu_stats" in st
        img = c.commit(repository=f"pst-py-commit-{os.getpid()}", tag="v1")
        assert img.id.startswith("sha256:")
        c.kill()
        assert c.wait()["StatusCode"] == 137
    finally:
        c.remove(force=True)
    client.images.remove(f"pst-py-commit-{os.getpid()}:v1")


def test_images_push_save_load(client: docker.DockerClient, py_busybox: str, registry: Registry) -> None:
    pytest.importorskip("engine.exec.runtime", reason="no container runtime in this tree yet")
    repo = f"{registry.host}/pst/py-push-{os.getpid()}"
    img = client.images.get(py_busybox)
    assert img.tag(repo, "v1") is True
    lines = list(client.images.push(repo, tag="v1", stream=True, decode=True))
    assert not [ln for ln in lines if "error" in ln], lines
    assert any("digest" in (ln.get("status") or "") for ln in lines)
    data = b"".join(img.save(named=True))
    client.images.remove(f"{repo}:v1")
    loaded = client.images.load(data)
    assert loaded and loaded[0].id == img.id
