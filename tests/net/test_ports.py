"""Published ports: kernel DNAT from the host (127.0.0.1 too), from another machine, hairpin, UDP, -P, conflicts."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import Conflict, InvalidArgument
from engine.net import nft
from engine.net.service import NetworkService, Sandbox

from .conftest import Peer, Procs, leftovers, sh, wait_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

UDP_ECHO = (
    "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',{port}))\n"
    "while True:\n d,a=s.recvfrom(4096);s.sendto(b'echo:'+d,a)"
)


def cid() -> str:
    return secrets.token_hex(32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def web(procs: Procs, sb: Sandbox, tmp: Path, body: str) -> None:
    """busybox httpd on :80 inside the sandbox, standing in for an nginx container."""
    root = tmp / f"www-{secrets.token_hex(2)}"
    root.mkdir()
    (root / "index.html").write_text(body)
    assert sb.netns_path is not None
    procs.start(sb.netns_path, "busybox", "httpd", "-f", "-p", "80", "-h", str(root))
    wait_port(sb.netns_path, 80)


def curl(netns: Path | None, url: str) -> str:
    return sh(netns, "curl", "-sS", "--max-time", "5", url).stdout


def host_port(sb: Sandbox, key: str = "80/tcp") -> int:
    return int(sb.network_settings["Ports"][key][0]["HostPort"])


def test_published_on_localhost_answers_curl_on_the_host(svc: NetworkService, procs: Procs, tmp_path: Path) -> None:
    sb = svc.create_sandbox(cid(), name="web", hostname="web", port_bindings={"80/tcp": [{"HostIp": "127.0.0.1"}]})
    assert sb.network_settings["Ports"]["80/tcp"][0]["HostIp"] == "127.0.0.1"
    port = host_port(sb)
    assert 32768 <= port <= 60999
    web(procs, sb, tmp_path, "hello from the container\n")
    assert curl(None, f"http://127.0.0.1:{port}/") == "hello from the container\n"
    # bound to 127.0.0.1 only: another address of the host does not forward
    rules = [str(r) for r in nft.list_rules(svc.table) if str(port) in str(r)]
    assert len(rules) == 1 and "127.0.0.1" in rules[0]


def test_published_on_all_addresses_answers_another_machine(
    svc: NetworkService, peer: Peer, procs: Procs, tmp_path: Path
) -> None:
    port = free_port()
    sb = svc.create_sandbox(cid(), name="web", hostname="web", port_bindings={"80/tcp": [{"HostPort": str(port)}]})
    assert sb.network_settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    web(procs, sb, tmp_path, "remote ok\n")
    assert curl(peer.ns, f"http://{peer.host_ip}:{port}/") == "remote ok\n"
    assert curl(None, f"http://127.0.0.1:{port}/") == "remote ok\n"
    # hairpin: the container reaches its own published port through the host; so does a neighbour
    gw = sb.network_settings["Gateway"]
    assert curl(sb.netns_path, f"http://{gw}:{port}/") == "remote ok\n"
    other = svc.create_sandbox(cid(), name="other", hostname="other")
    assert curl(other.netns_path, f"http://{gw}:{port}/") == "remote ok\n"
    # removal takes the rule away
    svc.remove_sandbox(sb.container_id)
    assert not any(str(port) in str(r) for r in nft.list_rules(svc.table))
    r = sh(None, "curl", "-sS", "--max-time", "2", f"http://127.0.0.1:{port}/", check=False)
    assert r.returncode != 0


def test_udp_reaches_an_echo_server(svc: NetworkService, peer: Peer, procs: Procs) -> None:
    sb = svc.create_sandbox(cid(), name="udp", hostname="udp", port_bindings={"5300/udp": [{"HostPort": ""}]})
    port = host_port(sb, "5300/udp")
    assert sb.netns_path is not None
    procs.start(sb.netns_path, "python3", "-c", UDP_ECHO.format(port=5300))
    wait_port(sb.netns_path, 5300, "udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"ping", ("127.0.0.1", port))
        assert s.recv(100) == b"echo:ping"
    r = sh(peer.ns, "python3", "-c",
           "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3);"
           f"s.sendto(b'far',('{peer.host_ip}',{port}));print(s.recv(100).decode())")
    assert r.stdout.strip() == "echo:far"


def test_publish_all_maps_every_exposed_port(svc: NetworkService) -> None:
    sb = svc.create_sandbox(
        cid(), name="all", hostname="all", publish_all=True, exposed_ports=["80/tcp", "53/udp", "443/tcp"],
        port_bindings={"443/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
    )
    p = sb.network_settings["Ports"]
    assert set(p) == {"80/tcp", "53/udp", "443/tcp"}
    assert p["443/tcp"][0]["HostIp"] == "127.0.0.1"
    assert p["80/tcp"][0]["HostIp"] == "0.0.0.0" and p["53/udp"][0]["HostIp"] == "0.0.0.0"
    assert len({int(v[0]["HostPort"]) for v in p.values()}) >= 2
    # exposed but not published shows null, as docker inspect does
    sb2 = svc.create_sandbox(cid(), name="x", hostname="x", exposed_ports=["8080/tcp"])
    assert sb2.network_settings["Ports"] == {"8080/tcp": None}


def test_port_conflict_gets_dockers_error_and_leaves_nothing(svc: NetworkService) -> None:
    port = free_port()
    svc.create_sandbox(cid(), name="first", hostname="first", port_bindings={"80/tcp": [{"HostPort": str(port)}]})
    before_links = sorted(leftovers(svc.table))
    before_rules = nft.list_rules(svc.table)
    netns_before = sorted((svc.exec_root / "netns").iterdir())
    second = cid()
    with pytest.raises(Conflict) as e:
        svc.create_sandbox(second, name="second", hostname="second",
                           port_bindings={"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]})
    assert e.value.status == 409
    assert e.value.message.startswith("driver failed programming external connectivity on endpoint second (")
    assert e.value.message.endswith(f"Bind for 127.0.0.1:{port} failed: port is already allocated")
    assert sorted(leftovers(svc.table)) == before_links
    assert nft.list_rules(svc.table) == before_rules
    assert sorted((svc.exec_root / "netns").iterdir()) == netns_before
    assert second not in svc.sandboxes and second not in svc.inspect("bridge")["Containers"]
    assert not (svc.files_dir / second).exists()


def test_port_held_by_a_host_process_is_refused(svc: NetworkService) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(Conflict, match=f"listen tcp4 127.0.0.1:{port}: bind: address already in use"):
            svc.create_sandbox(cid(), name="busy", hostname="busy",
                               port_bindings={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]})
    assert svc.sandboxes == {}


def test_malformed_port_bindings_are_refused_before_anything_is_made(svc: NetworkService) -> None:
    with pytest.raises(InvalidArgument, match='invalid port specification: "80/bogus"'):
        svc.create_sandbox(cid(), name="bad", hostname="bad", port_bindings={"80/bogus": [{"HostPort": "1"}]})
    with pytest.raises(InvalidArgument, match='invalid port specification: "99999"'):
        svc.create_sandbox(cid(), name="bad", hostname="bad", port_bindings={"80/tcp": [{"HostPort": "99999"}]})
    assert svc.sandboxes == {}
    assert leftovers(svc.table) == [svc.default_bridge]


@pytest.fixture
def foreign_table() -> Iterator[str]:
    """An nft table shaped like another portside engine's (a `published` chain of DNATs)."""
    name = f"pstforeign{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        nft.delete_table(name)


def _foreign_dnat(table: str, *rules: str) -> None:
    body = "\n".join(f"    {r}" for r in rules)
    nft.nft(f"table ip {table} {{\n  chain published {{\n{body}\n  }}\n}}\n")


def test_ports_published_by_another_engine_are_not_handed_out(svc: NetworkService, foreign_table: str) -> None:
    # where the allocator would go next: one allocation moves its cursor past that port
    first = svc.create_sandbox(cid(), name="a", hostname="a", port_bindings={"80/tcp": [{"HostIp": "127.0.0.1"}]})
    nxt = host_port(first) + 1
    _foreign_dnat(foreign_table, f"tcp dport {nxt} dnat to 10.255.255.2:80",
                  f"ip daddr 127.0.0.1 tcp dport {nxt + 1} dnat to 10.255.255.2:81")  # fmt: skip
    sb = svc.create_sandbox(cid(), name="b", hostname="b", port_bindings={"80/tcp": [{"HostIp": "127.0.0.1"}]})
    assert host_port(sb) not in (nxt, nxt + 1)
    # a fixed HostPort another engine publishes: dockerd's allocator text, and nothing half-made
    before_links, before_rules = sorted(leftovers(svc.table)), nft.list_rules(svc.table)
    third = cid()
    with pytest.raises(Conflict, match=f"Bind for 0.0.0.0:{nxt + 1} failed: port is already allocated"):
        svc.create_sandbox(third, name="c", hostname="c", port_bindings={"80/tcp": [{"HostPort": str(nxt + 1)}]})
    assert sorted(leftovers(svc.table)) == before_links and nft.list_rules(svc.table) == before_rules
    assert third not in svc.sandboxes and not (svc.exec_root / "netns" / third).exists()
    # udp on the same number is another port
    svc.create_sandbox(cid(), name="d", hostname="d", port_bindings={"80/udp": [{"HostPort": str(nxt)}]})


def test_run_time_dnat_rules_are_added_and_removed_one_container_at_a_time(svc: NetworkService) -> None:
    a = svc.create_sandbox(cid(), name="a", hostname="a", port_bindings={"80/tcp": [{"HostIp": "127.0.0.1"}]})
    b_id = cid()
    b = svc.create_sandbox(b_id, name="b", hostname="b", port_bindings={"80/udp": [{"HostPort": ""}]})
    dports = sorted(r["expr"][-2]["match"]["right"] for r in nft.list_rules(svc.table) if r["chain"] == "published")
    assert dports == sorted([host_port(a), host_port(b, "80/udp")])
    svc.remove_sandbox(b_id)
    left = [r for r in nft.list_rules(svc.table) if r["chain"] == "published"]
    assert [r["expr"][-2]["match"]["right"] for r in left] == [host_port(a)]
    assert left[0]["expr"][-1]["dnat"] == {"addr": a.network_settings["IPAddress"], "port": 80}
