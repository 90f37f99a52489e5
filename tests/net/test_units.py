"""Unit tests: port specs, IPAM, files, nft rendering (no kernel state touched)."""

from __future__ import annotations

import ipaddress

import pytest

from engine.errors import Conflict, Forbidden, InvalidArgument
from engine.net import files, ipam, nft, ports


@pytest.mark.parametrize(
    ("spec", "bindings"),
    [
        ("80", {"80/tcp": [{"HostIp": "", "HostPort": ""}]}),
        ("8080:80", {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}),
        ("127.0.0.1::80", {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}),
        ("127.0.0.1:8080:80/udp", {"80/udp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}),
        ("7000-7001:8000-8001", {"8000/tcp": [{"HostIp": "", "HostPort": "7000"}],
                                 "8001/tcp": [{"HostIp": "", "HostPort": "7001"}]}),
        ("9000-9010:80", {"80/tcp": [{"HostIp": "", "HostPort": "9000-9010"}]}),
    ],
)
def test_port_spec_grammar(spec: str, bindings: dict[str, list[dict[str, str]]]) -> None:
    got, exposed = ports.parse_port_spec(spec)
    assert got == bindings
    assert exposed == list(bindings)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("abc", "invalid containerPort: abc"),
        ("x:80", "invalid hostPort: x"),
        ("1.2.3.999:80:80", "invalid IP address: 1.2.3.999"),
        ("80/xyz", "invalid proto: xyz"),
        ("8080-8081:80-82", "invalid ranges specified for container and host Ports: 80-82 and 8080-8081"),
        ("127.0.0.1:8080:", "no port specified: 127.0.0.1:8080:<empty>"),
        ("70000", "invalid containerPort: 70000"),
    ],
)
def test_malformed_port_specs_get_dockers_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        ports.parse_port_spec(spec)
    assert e.value.message == message
    assert e.value.status == 400


def test_port_bindings_validation() -> None:
    with pytest.raises(InvalidArgument, match='invalid port specification: "abc/tcp"'):
        ports.requests_from({"abc/tcp": [{"HostPort": "1"}]}, False, [])
    with pytest.raises(InvalidArgument, match='invalid port specification: "x1"'):
        ports.requests_from({"80/tcp": [{"HostPort": "x1"}]}, False, [])
    with pytest.raises(InvalidArgument, match='invalid port specification: "80/xyz"'):
        ports.check_port_bindings(None, ["80/xyz"])
    ports.check_port_bindings({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}, ["53/udp"])
    reqs = ports.requests_from({"80/tcp": [{"HostIp": "", "HostPort": ""}]}, True, ["80/tcp", "53/udp"])
    assert [(r.proto, r.container_port, r.host_lo) for r in reqs] == [("tcp", 80, 0), ("udp", 53, 0)]


def test_allocator_conflicts_and_all_or_nothing() -> None:
    a = ports.PortAllocator()
    a.allocate("c1", [ports.Request("tcp", "0.0.0.0", 47001, 47001, 80)])
    with pytest.raises(Conflict) as e:
        a.allocate("c2", [ports.Request("tcp", "127.0.0.1", 47001, 47001, 80)])
    assert e.value.message == "Bind for 127.0.0.1:47001 failed: port is already allocated"
    # same port, other protocol is fine; a failing second request releases the first
    with pytest.raises(Conflict):
        a.allocate("c3", [ports.Request("udp", "0.0.0.0", 47001, 47001, 53),
                          ports.Request("tcp", "0.0.0.0", 47001, 47001, 80)])
    assert not a.taken("udp", "0.0.0.0", 47001)
    m = a.allocate("c4", [ports.Request("tcp", "0.0.0.0", 0, 0, 80)])[0]
    lo, hi = ports.ephemeral_range()
    assert lo <= m.host_port <= hi
    a.release_owner("c1")
    assert not a.taken("tcp", "0.0.0.0", 47001)


def test_ipam() -> None:
    used = [ipaddress.IPv4Network("172.17.0.0/16"), ipaddress.IPv4Network("172.18.5.0/24")]
    assert str(ipam.choose_subnet(used)) == "172.19.0.0/16"
    net = ipaddress.IPv4Network("10.9.0.0/29")
    taken = {"10.9.0.1"}
    ip1 = ipam.allocate(net, net, taken, None)
    assert ip1 == "10.9.0.2"
    # a released address is not reused at once: allocation continues after the cursor
    assert ipam.allocate(net, net, taken, ip1) == "10.9.0.3"
    with pytest.raises(Forbidden):
        ipam.allocate(net, net, {f"10.9.0.{i}" for i in range(1, 7)}, None)
    with pytest.raises(Conflict):
        ipam.allocate(net, net, taken, None, requested="10.9.0.1")
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"
    with pytest.raises(InvalidArgument):
        ipam.check_pool(net, "10.10.0.0/24", None)


def test_resolv_conf_rules() -> None:
    host = files.parse_resolv_conf("nameserver 127.0.0.53\nsearch a.test\noptions edns0\n")
    text = files.container_resolv_conf(host, embedded_dns=False)
    assert "nameserver 8.8.8.8" in text and "127.0.0.53" not in text and "search a.test" in text
    text = files.container_resolv_conf(host, embedded_dns=True)
    assert text.startswith("nameserver 127.0.0.11\n") and "ndots:0" in text
    text = files.container_resolv_conf(host, embedded_dns=False, dns=["9.9.9.9"], dns_options=["ndots:2"])
    assert "nameserver 9.9.9.9" in text and "options ndots:2" in text


def test_hosts_file() -> None:
    text = files.hosts_file([("10.0.0.2", ["web", "web", "alias1"])], ["db:10.0.0.9"])
    assert "10.0.0.2\tweb alias1\n" in text and "10.0.0.9\tdb\n" in text and text.startswith("127.0.0.1\tlocalhost")


def test_nft_render_has_every_rule_kind() -> None:
    text = nft.render(
        "portside-x",
        [nft.BridgeRules("br-a", "10.1.0.0/16", False), nft.BridgeRules("br-b", "10.2.0.0/16", True)],
        [nft.PortRule("tcp", "127.0.0.1", 8080, "10.1.0.2", 80), nft.PortRule("udp", "0.0.0.0", 53, "10.1.0.2", 53)],
    )
    assert "ip daddr 127.0.0.1 tcp dport 8080 dnat to 10.1.0.2:80" in text
    assert "\n    udp dport 53 dnat to 10.1.0.2:53" in text
    assert 'ip saddr 10.1.0.0/16 oifname != "br-a" masquerade' in text
    assert 'ip saddr 10.2.0.0/16 oifname != "br-b" masquerade' not in text  # internal: no egress
    assert 'iifname "br-b" oifname != "br-b" drop' in text
    with pytest.raises(ValueError):
        nft.render("bad name;", [], [])
