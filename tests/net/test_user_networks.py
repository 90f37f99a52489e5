"""User networks: records, IPAM options, embedded DNS, connect/disconnect, internal, container: mode."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from engine.errors import Conflict, Forbidden, InvalidArgument, NotFound
from engine.net import links
from engine.net.service import NetworkService, Sandbox

from .conftest import Peer, Procs, leftovers, settled_leftovers, sh, wait_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def cid() -> str:
    return secrets.token_hex(32)


def ip_of(sb: Sandbox, net: str) -> str:
    return str(sb.network_settings["Networks"][net]["IPAddress"])


def lookup(netns: Path | None, name: str, tcp: bool = False) -> list[str]:
    """Ask 127.0.0.11 inside the container's netns, with dnslib (the answer section's A records)."""
    q = DNSRecord.question(name)
    script = (
        "import sys;from dnslib import DNSRecord;"
        f"r=DNSRecord.question({name!r}).send('127.0.0.11',53,tcp={tcp},timeout=5);"
        "print(r.hex() if hasattr(r,'hex') else r)"
    )
    del q
    py = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
    r = sh(netns, str(py), "-c", script)
    reply = DNSRecord.parse(bytes.fromhex(r.stdout.strip()))
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


class _Upstream(BaseResolver):  # type: ignore[misc]
    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        if str(request.q.qname).rstrip(".") == "outside.example.test":
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.123"), ttl=60))
        return reply


@pytest.fixture
def upstream() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = DNSServer(_Upstream(), port=port, address="127.0.0.1")
    server.start_thread()
    try:
        yield port
    finally:
        server.stop()


def test_network_records_and_errors(svc: NetworkService) -> None:
    name = f"pst-net-{secrets.token_hex(2)}"
    net = svc.create_network(name, labels={"team": "a"})
    assert set(net) >= {"Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal", "Attachable",
                        "Ingress", "Containers", "Options", "Labels"}
    assert net["Scope"] == "local" and net["Driver"] == "bridge" and net["IPAM"]["Driver"] == "default"
    subnet = net["IPAM"]["Config"][0]["Subnet"]
    bridge = svc.networks[net["Id"]]["_bridge"]
    assert bridge.startswith("pst") and bridge in links.interface_names(None)
    assert svc.inspect(name)["Id"] == net["Id"] == svc.inspect(net["Id"][:12])["Id"]
    assert [n["Name"] for n in svc.list_networks({"label": ["team=a"]})] == [name]
    assert {n["Name"] for n in svc.list_networks({"type": ["builtin"]})} == {"bridge", "host", "none"}
    # Docker's errors, nothing half-made
    before = sorted(leftovers(svc.table))
    with pytest.raises(Conflict, match=f"network with name {name} already exists"):
        svc.create_network(name)
    with pytest.raises(Forbidden, match="Pool overlaps with other one on this address space"):
        svc.create_network(name + "-2", subnet=subnet)
    with pytest.raises(Forbidden, match="bridge is a pre-defined network and cannot be created"):
        svc.create_network("bridge")
    with pytest.raises(Forbidden, match="host is a pre-defined network and cannot be removed"):
        svc.remove("host")
    with pytest.raises(NotFound, match='plugin "overlay" not found'):
        svc.create_network(name + "-3", driver="overlay")
    with pytest.raises(InvalidArgument, match="invalid subnet nonsense: invalid CIDR block notation"):
        svc.create_network(name + "-4", subnet="nonsense")
    assert sorted(leftovers(svc.table)) == before
    assert len(svc.list_networks()) == 4
    # in use: refused; after the container goes, removable and the bridge is gone
    c = cid()
    svc.create_sandbox(c, name="user", hostname="user", network_mode=name)
    with pytest.raises(Forbidden, match=f"network {name} id {net['Id']} has active endpoints"):
        svc.remove(name)
    assert svc.prune() == {"NetworksDeleted": []}
    svc.remove_sandbox(c)
    svc.remove(name)
    assert bridge not in links.interface_names(None)
    assert settled_leftovers(svc.table, [svc.default_bridge]) == [svc.default_bridge]
    with pytest.raises(NotFound):
        svc.inspect(name)
    svc.create_network(name + "-p")
    assert svc.prune() == {"NetworksDeleted": [name + "-p"]}


def test_containers_reach_each_other_by_name_and_alias(
    svc_factory: tuple[Path, str, dict[str, object]], upstream: int
) -> None:
    _, _, kw = svc_factory
    svc = NetworkService(**{**kw, "dns_upstreams": [("127.0.0.1", upstream)]})  # type: ignore[arg-type]
    svc.start()
    try:
        name = f"pst-dns-{secrets.token_hex(2)}"
        svc.create_network(name)
        db = svc.create_sandbox(cid(), name="db", hostname="dbhost", network_mode=name,
                                endpoints={name: {"Aliases": ["database"]}})
        app = svc.create_sandbox(cid(), name="app", hostname="app", network_mode=name)
        assert app.resolv_conf_path.read_text().startswith("nameserver 127.0.0.11\n")
        assert f"{ip_of(db, name)}\tdbhost db database" in db.hosts_path.read_text()
        assert lookup(app.netns_path, "db") == [ip_of(db, name)]
        assert lookup(app.netns_path, "database") == [ip_of(db, name)]
        assert lookup(app.netns_path, "database", tcp=True) == [ip_of(db, name)]
        assert lookup(db.netns_path, "app") == [ip_of(app, name)]
        assert lookup(app.netns_path, db.container_id[:12]) == [ip_of(db, name)]
        sh(app.netns_path, "busybox", "ping", "-c", "1", "-W", "2", lookup(app.netns_path, "database")[0])
        # the rest goes to the upstream resolvers
        assert lookup(app.netns_path, "outside.example.test") == ["192.0.2.123"]
        assert lookup(app.netns_path, "nothing.example.test") == []
        # a container on the default bridge is not in that network's DNS
        other = svc.create_sandbox(cid(), name="lonely", hostname="lonely")
        assert lookup(app.netns_path, "lonely") == []
        assert "127.0.0.11" not in other.resolv_conf_path.read_text()
        # after removal the name is gone
        svc.remove_sandbox(db.container_id)
        assert lookup(app.netns_path, "db") == []
    finally:
        svc.destroy()


def test_subnet_gateway_ip_range_and_static_addresses(svc: NetworkService) -> None:
    x = secrets.randbelow(200) + 20
    name = f"pst-ipam-{secrets.token_hex(2)}"
    net = svc.create_network(name, subnet=f"10.{x}.77.0/24", gateway=f"10.{x}.77.254", ip_range=f"10.{x}.77.128/25")
    assert net["IPAM"]["Config"] == [
        {"Subnet": f"10.{x}.77.0/24", "Gateway": f"10.{x}.77.254", "IPRange": f"10.{x}.77.128/25"}
    ]
    a = svc.create_sandbox(cid(), name="a", hostname="a", network_mode=name)
    assert ip_of(a, name) == f"10.{x}.77.128"
    assert a.network_settings["Networks"][name]["Gateway"] == f"10.{x}.77.254"
    s = svc.create_sandbox(cid(), name="s", hostname="s", network_mode=name,
                           endpoints={name: {"IPAMConfig": {"IPv4Address": f"10.{x}.77.5"}}})
    assert ip_of(s, name) == f"10.{x}.77.5"
    sh(a.netns_path, "busybox", "ping", "-c", "1", "-W", "2", f"10.{x}.77.5")
    n_before = len(leftovers(svc.table))
    with pytest.raises(Conflict, match="Address already in use"):
        svc.create_sandbox(cid(), name="t", hostname="t", network_mode=name,
                           endpoints={name: {"IPAMConfig": {"IPv4Address": f"10.{x}.77.5"}}})
    assert len(leftovers(svc.table)) == n_before
    with pytest.raises(InvalidArgument, match="user specified IP address is supported on user defined networks only"):
        svc.create_sandbox(cid(), name="u", hostname="u",
                           endpoints={"bridge": {"IPAMConfig": {"IPv4Address": "10.0.0.1"}}})
    assert len(svc.sandboxes) == 2


def test_connect_and_disconnect_a_running_container(svc: NetworkService) -> None:
    name = f"pst-conn-{secrets.token_hex(2)}"
    svc.create_network(name)
    c = cid()
    sb = svc.create_sandbox(c, name="roamer", hostname="roamer")
    peer = svc.create_sandbox(cid(), name="peer", hostname="peer", network_mode=name)
    after = svc.connect(c, name, {"Aliases": ["wanderer"]})
    assert set(after.network_settings["Networks"]) == {"bridge", name}
    assert "eth1" in links.interface_names(sb.netns_path)
    sh(sb.netns_path, "busybox", "ping", "-c", "1", "-W", "2", ip_of(peer, name))
    assert lookup(peer.netns_path, "wanderer") == [ip_of(after, name)]
    assert ip_of(after, name) in sb.hosts_path.read_text()
    with pytest.raises(Forbidden, match=f"endpoint with name roamer already exists in network {name}"):
        svc.connect(c, name)
    svc.disconnect(c, name)
    assert "eth1" not in links.interface_names(sb.netns_path)
    assert c not in svc.inspect(name)["Containers"]
    assert lookup(peer.netns_path, "wanderer") == []
    with pytest.raises(Forbidden, match="is not connected to network"):
        svc.disconnect(c, name)
    none_c = cid()
    svc.create_sandbox(none_c, name="nobody", hostname="nobody", network_mode="none")
    with pytest.raises(Forbidden, match="cannot be connected to any other network"):
        svc.connect(none_c, name)


def test_container_mode_shares_the_namespace(svc: NetworkService, procs: Procs) -> None:
    owner = svc.create_sandbox(cid(), name="owner", hostname="owner")
    joiner = svc.create_sandbox(cid(), name="joiner", hostname="joiner", network_mode=f"container:{owner.container_id}")
    assert joiner.netns_path == owner.netns_path
    assert joiner.hosts_path == owner.hosts_path
    assert owner.netns_path is not None
    # a server in the owner answers on localhost in the joiner: one namespace
    procs.start(owner.netns_path, "busybox", "nc", "-l", "-p", "7777", "-e", "echo", "shared")
    wait_port(joiner.netns_path, 7777)
    out = sh(joiner.netns_path, "busybox", "nc", "-w", "2", "127.0.0.1", "7777").stdout
    assert out.strip() == "shared"
    svc.remove_sandbox(joiner.container_id)
    assert owner.netns_path.exists()
    with pytest.raises(Conflict, match="cannot join network of a non running container: nope"):
        svc.create_sandbox(cid(), name="x", hostname="x", network_mode="container:nope")


def test_internal_network_has_no_egress(svc: NetworkService, peer: Peer) -> None:
    name = f"pst-int-{secrets.token_hex(2)}"
    svc.create_network(name, internal=True)
    a = svc.create_sandbox(cid(), name="a", hostname="a", network_mode=name)
    b = svc.create_sandbox(cid(), name="b", hostname="b", network_mode=name)
    sh(a.netns_path, "busybox", "ping", "-c", "1", "-W", "2", ip_of(b, name))
    r = sh(a.netns_path, "busybox", "ping", "-c", "1", "-W", "1", peer.peer_ip, check=False)
    assert r.returncode != 0
    c = svc.create_sandbox(cid(), name="c", hostname="c")
    sh(c.netns_path, "busybox", "ping", "-c", "1", "-W", "2", peer.peer_ip)  # the default bridge does reach out
    # and networks are isolated from each other
    r = sh(c.netns_path, "busybox", "ping", "-c", "1", "-W", "1", ip_of(a, name), check=False)
    assert r.returncode != 0
