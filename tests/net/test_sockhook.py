"""The socket-address hook (engine/net/sockhook.py): host clients of a published port are connected straight to the
container (no DNAT), getpeername and UDP sources show the published address, containers' own connects are left
alone, map entries follow publish/unpublish, and no program stays attached once the engine is gone."""

from __future__ import annotations

import errno
import os
import secrets
import socket
import time
from pathlib import Path

import pytest

from engine import bpf
from engine.net import nft, sockhook
from engine.net.service import NetworkService, Sandbox

from .conftest import Procs, service_env, sh, wait_port
from .test_ports import UDP_ECHO, web

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def cid() -> str:
    return secrets.token_hex(32)


def host_port(sb: Sandbox, key: str = "80/tcp") -> int:
    return int(sb.network_settings["Ports"][key][0]["HostPort"])


def kernel_peer(sock: socket.socket, proto: str = "tcp") -> str:
    """The peer the kernel holds for this socket (ss), whatever getpeername shows."""
    lip, lport = sock.getsockname()
    flag = "-Htan" if proto == "tcp" else "-Huan"
    out = sh(None, "ss", flag, f"sport = :{lport}").stdout
    # other sockets may share the port number (with other addresses): pick ours by its local address
    rows = [line.split() for line in out.splitlines()]
    peers = [r[4] for r in rows if len(r) >= 5 and r[3] == f"{lip}:{lport}"]
    assert len(peers) == 1, f"sockets with local address {lip}:{lport}: {out}"
    return peers[0]


def http_get(host: str, port: int) -> tuple[bytes, socket.socket]:
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data, s


def attached(attach_type: int) -> list[int]:
    root = bpf.cgroup2_root()
    assert root is not None
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return bpf.prog_query(fd, attach_type)
    finally:
        os.close(fd)


def assert_detached(ids: dict[str, int]) -> None:
    """Every program of the hook is off the cgroup root, and its maps are freed (freeing may lag a little)."""
    for name, attach in sockhook.SockHook.ATTACH:
        assert ids[name] not in attached(attach), name
    deadline = time.monotonic() + 10  # maps are freed after an RCU grace period, later under load
    for name in ("services", "reverse"):
        while True:
            try:
                os.close(bpf.map_fd_by_id(ids[name]))
            except OSError as e:
                assert e.errno == errno.ENOENT
                break
            assert time.monotonic() < deadline, f"map {name} still exists"
            time.sleep(0.02)


def hook_keys(svc: NetworkService) -> set[bytes]:
    assert svc.hook is not None
    return set(bpf.map_keys(svc.hook.services_fd, sockhook.SERVICE_KEY))


def test_host_clients_connect_straight_to_the_container(svc: NetworkService, procs: Procs, tmp_path: Path) -> None:
    assert svc.hook is not None and svc.hook.active
    local = svc.create_sandbox(cid(), name="lo", hostname="lo", port_bindings={"80/tcp": [{"HostIp": "127.0.0.1"}]})
    every = svc.create_sandbox(cid(), name="all", hostname="all", port_bindings={"80/tcp": [{"HostPort": ""}]})
    web(procs, local, tmp_path, "local one\n")
    web(procs, every, tmp_path, "everywhere\n")
    for sb, dst, body in ((local, "127.0.0.1", b"local one\n"), (every, "127.0.0.1", b"everywhere\n"),
                          (every, "127.0.0.7", b"everywhere\n")):  # fmt: skip
        port = host_port(sb)
        data, s = http_get(dst, port)
        with s:
            assert data.endswith(body)
            # the client sees the address it asked for; the kernel's socket is connected to the container itself,
            # so no packet of it is NATed (through DNAT, ss would show dst:port)
            assert s.getpeername() == (dst, port)
            assert kernel_peer(s) == f"{sb.network_settings['IPAddress']}:80"
    assert hook_keys(svc) == {sockhook.service_key("127.0.0.1", host_port(local), "tcp"),
                              sockhook.service_key("0.0.0.0", host_port(every), "tcp")}  # fmt: skip
    # proof that the hook alone carries them: with the DNAT rules gone, host clients still get through
    nft.nft(f"flush chain ip {svc.table} published\n")
    assert sh(None, "curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{host_port(local)}/").stdout == "local one\n"
    # unpublishing (container removal) takes the entry away: nothing rewrites that port any more
    svc.remove_sandbox(local.container_id)
    assert hook_keys(svc) == {sockhook.service_key("0.0.0.0", host_port(every), "tcp")}
    r = sh(None, "curl", "-sS", "--max-time", "2", f"http://127.0.0.1:{host_port(local)}/", check=False)
    assert r.returncode != 0


def test_udp_through_the_hook_answers_from_the_published_address(svc: NetworkService, procs: Procs) -> None:
    sb = svc.create_sandbox(cid(), name="udp", hostname="udp", port_bindings={"5300/udp": [{"HostIp": "127.0.0.1"}]})
    port = host_port(sb, "5300/udp")
    assert sb.netns_path is not None
    procs.start(sb.netns_path, "python3", "-c", UDP_ECHO.format(port=5300))
    wait_port(sb.netns_path, 5300, "udp")
    nft.nft(f"flush chain ip {svc.table} published\n")  # only the hook can carry it now
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # unconnected: sendmsg4 and recvmsg4
        s.settimeout(3)
        s.sendto(b"ping", ("127.0.0.1", port))
        assert s.recvfrom(100) == (b"echo:ping", ("127.0.0.1", port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # connected: connect4 and getpeername4
        s.settimeout(3)
        s.connect(("127.0.0.1", port))
        s.send(b"again")
        assert s.recv(100) == b"echo:again"
        assert s.getpeername() == ("127.0.0.1", port)
        assert kernel_peer(s, "udp") == f"{sb.network_settings['IPAddress']}:5300"


def test_connects_inside_a_container_netns_are_not_rewritten(svc: NetworkService, procs: Procs, tmp_path: Path) -> None:
    sb = svc.create_sandbox(cid(), name="web", hostname="web", port_bindings={"80/tcp": [{"HostIp": "127.0.0.1"}]})
    port = host_port(sb)
    web(procs, sb, tmp_path, "the published one\n")
    other = svc.create_sandbox(cid(), name="other", hostname="other")
    assert other.netns_path is not None
    # the other container serves its own 127.0.0.1 on the same port number
    root = tmp_path / "own"
    root.mkdir()
    (root / "index.html").write_text("its own loopback\n")
    procs.start(other.netns_path, "busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(root))
    wait_port(other.netns_path, port)
    got = sh(other.netns_path, "curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{port}/").stdout
    assert got == "its own loopback\n"
    assert sh(None, "curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{port}/").stdout == "the published one\n"


def test_without_the_hook_host_clients_go_through_dnat(
    svc_factory: tuple[Path, str, dict[str, object]], procs: Procs, tmp_path: Path
) -> None:
    _, _, kw = svc_factory
    svc = NetworkService(**kw, socket_hook=False)  # type: ignore[arg-type]
    svc.start()
    try:
        assert svc.hook is None
        sb = svc.create_sandbox(cid(), name="web", hostname="web", port_bindings={"80/tcp": [{"HostIp": "127.0.0.1"}]})
        port = host_port(sb)
        web(procs, sb, tmp_path, "via dnat\n")
        data, s = http_get("127.0.0.1", port)
        with s:
            assert data.endswith(b"via dnat\n")
            assert kernel_peer(s) == f"127.0.0.1:{port}"  # the socket is the client's; conntrack did the rest
    finally:
        svc.close()


def test_the_hook_goes_with_the_service_and_comes_back_filled(
    svc_factory: tuple[Path, str, dict[str, object]], procs: Procs, tmp_path: Path
) -> None:
    _, _, kw = svc_factory
    s1 = NetworkService(**kw)  # type: ignore[arg-type]
    s1.start()
    try:
        assert s1.hook is not None
        sb = s1.create_sandbox(cid(), name="web", hostname="web", port_bindings={"80/tcp": [{"HostIp": "127.0.0.1"}]})
        ids = s1.hook.ids()
        for name, attach in sockhook.SockHook.ATTACH:
            assert ids[name] in attached(attach)
    finally:
        s1.close()
    assert s1.hook is None
    assert_detached(ids)
    # a second engine on this data (a restart) makes a new hook holding the ports of its records
    s2 = NetworkService(**kw)  # type: ignore[arg-type]
    s2.start()
    try:
        assert hook_keys(s2) == {sockhook.service_key("127.0.0.1", host_port(sb), "tcp")}
        web(procs, sb, tmp_path, "after restart\n")
        data, s = http_get("127.0.0.1", host_port(sb))
        with s:
            assert data.endswith(b"after restart\n") and kernel_peer(s) == f"{sb.network_settings['IPAddress']}:80"
        ids = s2.hook.ids() if s2.hook is not None else {}
    finally:
        s2.close()
    assert_detached(ids)


def test_two_engines_each_rewrite_only_their_own_ports(svc: NetworkService, procs: Procs, tmp_path: Path) -> None:
    with service_env() as (_, _, kw):
        other = NetworkService(**kw)  # type: ignore[arg-type]
        other.start()
        try:
            local = {"80/tcp": [{"HostIp": "127.0.0.1"}]}
            mine = svc.create_sandbox(cid(), name="a", hostname="a", port_bindings=local)
            theirs = other.create_sandbox(cid(), name="b", hostname="b", port_bindings=local)
            web(procs, mine, tmp_path, "engine one\n")
            web(procs, theirs, tmp_path, "engine two\n")
            assert hook_keys(svc) == {sockhook.service_key("127.0.0.1", host_port(mine), "tcp")}
            assert hook_keys(other) == {sockhook.service_key("127.0.0.1", host_port(theirs), "tcp")}
            for sb, body in ((mine, b"engine one\n"), (theirs, b"engine two\n")):
                data, s = http_get("127.0.0.1", host_port(sb))
                with s:
                    assert data.endswith(body) and kernel_peer(s) == f"{sb.network_settings['IPAddress']}:80"
            # one engine going away leaves the other's hook working
            other.close()
            data, s = http_get("127.0.0.1", host_port(mine))
            with s:
                assert data.endswith(b"engine one\n") and kernel_peer(s) == f"{mine.network_settings['IPAddress']}:80"
        finally:
            other.close()
            procs.stop()


def test_a_hook_that_cannot_attach_is_none_and_leaves_nothing(tmp_path: Path) -> None:
    # a directory that is no cgroup: maps and programs load, the link is refused
    fds_before = set(os.listdir("/proc/self/fd"))
    assert sockhook.SockHook.open(str(tmp_path)) is None
    # every map and program fd closed again: nothing else holds them, the kernel frees them
    assert set(os.listdir("/proc/self/fd")) <= fds_before


def test_service_key_layout() -> None:
    # what the programs build from struct bpf_sock_addr: address and port in network order, then the protocol
    assert sockhook.service_key("127.0.0.1", 8080, "tcp") == bytes([127, 0, 0, 1, 0x1F, 0x90, 6, 0])
    assert sockhook.service_value("10.0.0.2", 53) == bytes([10, 0, 0, 2, 0, 53, 0, 0])
