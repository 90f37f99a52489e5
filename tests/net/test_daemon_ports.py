"""Port conflicts through the daemon and the docker CLI: Docker's texts, and a failed start leaves the container
created (not running) with no veth, netns or DNAT rule behind, as dockerd does."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from engine.net import nft
from engine.parts import nft_table_for
from tests.api.conftest import PortsideDaemon, new_daemon, remove_daemon_dirs
from tests.testbed.registry import Registry

from .conftest import leftovers
from .test_sockhook import http_get, kernel_peer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def dmn(registry: Registry) -> Iterator[PortsideDaemon]:
    if os.geteuid() != 0:
        pytest.skip("the daemon needs root")
    d = new_daemon()
    try:
        d.start()
        src = f"{registry.host}/testbed/busybox:latest"
        assert d.docker("pull", "-q", src).returncode == 0
        assert d.docker("tag", src, "busybox:latest").returncode == 0
        yield d
    finally:
        d.stop()
        d.cleanup_containers()
        d.destroy_network_state()
        remove_daemon_dirs(d)


def _published(table: str) -> list[object]:
    return [r for r in nft.list_rules(table) if r["chain"] == "published"]


def test_host_port_taken_by_a_host_process_or_the_engine(dmn: PortsideDaemon) -> None:
    table = nft_table_for(dmn.bridge)
    name = f"pst-busy-{os.getpid()}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = dmn.docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60")
    try:
        assert out.returncode != 0
        assert (f"driver failed programming external connectivity on endpoint {name} (" in out.stderr
                and f"Error starting userland proxy: listen tcp4 127.0.0.1:{port}: bind: address already in use"
                in out.stderr), out.stderr  # fmt: skip
        state = dmn.docker("inspect", "-f", "{{.State.Status}} {{.State.Running}}", name)
        assert state.stdout.split() == ["created", "false"], state.stdout + state.stderr
        assert _published(table) == [] and leftovers(table) == [dmn.bridge]
        # the port free again, the same container starts; a second one on its port gets the allocator's text
        assert dmn.docker("start", name).returncode == 0
        out2 = dmn.docker("run", "-d", "--name", name + "b", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60")
        assert out2.returncode != 0
        assert f"Bind for 127.0.0.1:{port} failed: port is already allocated" in out2.stderr, out2.stderr
        state = dmn.docker("inspect", "-f", "{{.State.Status}}", name + "b")
        assert state.stdout.strip() == "created"
    finally:
        dmn.docker("rm", "-f", name, name + "b")


def test_daemon_serves_host_clients_through_the_socket_hook(dmn: PortsideDaemon) -> None:
    name = f"pst-hook-{os.getpid()}"
    out = dmn.docker("run", "-d", "--name", name, "-p", "127.0.0.1::8080", "busybox", "sh", "-c",
                     "echo hooked > /tmp/index.html && exec httpd -f -p 8080 -h /tmp")  # fmt: skip
    try:
        assert out.returncode == 0, out.stderr
        port = int(dmn.docker("port", name, "8080/tcp").stdout.split(":")[-1])
        ip = dmn.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()
        deadline = time.monotonic() + 10
        while True:
            try:
                data, s = http_get("127.0.0.1", port)
                break
            except OSError:
                assert time.monotonic() < deadline, "no answer on the published port"
                time.sleep(0.05)
        with s:
            assert data.endswith(b"hooked\n")
            assert s.getpeername() == ("127.0.0.1", port)
            assert kernel_peer(s) == f"{ip}:8080"  # connected to the container itself: the daemon's hook did it
    finally:
        dmn.docker("rm", "-f", name)
