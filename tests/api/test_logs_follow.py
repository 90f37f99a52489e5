"""A follow stream of a container's logs holds everything the container wrote, even when the container exits
while the stream is opened or is removed before the stream is read: docker-py's `containers.run()` does both
(logs(follow=True), wait, remove, then read), and lost its output now and then."""

from __future__ import annotations

import pytest

from tests.api.conftest import PortsideDaemon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_docker_py_run_always_returns_the_output(daemon: PortsideDaemon, busybox: str) -> None:
    import docker

    client = docker.DockerClient(base_url=daemon.host, version="1.41")
    try:
        outs = [client.containers.run(busybox, ["echo", f"line-{i}"], remove=True) for i in range(60)]
    finally:
        client.close()
    assert outs == [f"line-{i}\n".encode() for i in range(60)]
