"""Docker parity of networks through the real docker CLI, docker-py and the raw API: the inspect and list shapes
(null versus {} as dockerd 28 writes them), config-only networks, --internal isolation, MAC addresses and legacy
links."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.api.conftest import PortsideDaemon
from tests.net.conftest import Peer, Procs, wait_port

pytestmark = pytest.mark.integration


@pytest.fixture
def nets(daemon: PortsideDaemon) -> Iterator[list[str]]:
    """Network names a test makes; removed afterwards (after the `names` containers: fixtures unwind in reverse)."""
    made: list[str] = []
    yield made
    for n in reversed(made):
        daemon.docker("network", "rm", n)


@pytest.fixture
def client(daemon: PortsideDaemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer(secrets.token_hex(3))
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.stop()


def tag() -> str:
    return secrets.token_hex(3)


def api(daemon: PortsideDaemon, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    status, _, out = daemon.request(method, path, data, {"Content-Type": "application/json"} if data else None)
    return status, json.loads(out) if out else None


def inspect_net(daemon: PortsideDaemon, name: str) -> dict[str, Any]:
    status, out = api(daemon, "GET", f"/v1.50/networks/{name}")
    assert status == 200, out
    assert isinstance(out, dict)
    return out


def ok(out: Any) -> str:
    assert out.returncode == 0, out.stderr
    return str(out.stdout).strip()


def fetch(daemon: PortsideDaemon, ctr: str, url: str, seconds: int = 10) -> Any:
    # busybox wget's own -T crashes in the test bed's busybox: timeout(1) bounds it instead
    return daemon.docker("exec", ctr, "timeout", str(seconds), "wget", "-q", "-O", "-", url)


def free_subnet() -> str:
    return f"10.{secrets.randbelow(40) + 160}.{secrets.randbelow(250) + 1}.0/24"


# ---------------------------------------------------------------------------------------------- item 1: shapes


def test_create_with_everything_comes_back_in_dockerds_shape(daemon: PortsideDaemon, nets: list[str]) -> None:
    name = f"pst-shape-{tag()}"
    subnet = free_subnet()
    ok(daemon.docker("network", "create", "--subnet", subnet, "--ipam-opt", "pool=kept", "-o", "foo=bar",
                     "--label", "team=net", "--attachable", "--internal", "--scope", "local", name))
    nets.append(name)
    n = inspect_net(daemon, name)
    # a subnet given without a gateway shows no Gateway, as libnetwork keeps the user's config
    assert n["IPAM"] == {"Driver": "default", "Options": {"pool": "kept"}, "Config": [{"Subnet": subnet}]}
    assert n["Options"] == {"foo": "bar"} and n["Labels"] == {"team": "net"}
    assert (n["Internal"], n["Attachable"], n["Ingress"], n["EnableIPv6"], n["EnableIPv4"]) == (
        True, True, False, False, True)
    assert n["Scope"] == "local" and n["ConfigFrom"] == {"Network": ""} and n["ConfigOnly"] is False
    assert n["Containers"] == {} and n["Driver"] == "bridge"


def test_create_without_ipam_has_null_ipam_options(daemon: PortsideDaemon, client: docker.DockerClient,
                                                   nets: list[str]) -> None:
    name = f"pst-bare-{tag()}"
    client.networks.create(name)  # docker-py sends no IPAM at all
    nets.append(name)
    n = inspect_net(daemon, name)
    assert n["IPAM"]["Options"] is None
    assert set(n["IPAM"]["Config"][0]) == {"Subnet", "Gateway"}  # an allocated pool shows its gateway
    assert n["Options"] == {} and n["Labels"] == {}
    # the CLI sends IPAM with empty Options: {} comes back
    name2 = f"pst-cli-{tag()}"
    ok(daemon.docker("network", "create", name2))
    nets.append(name2)
    assert inspect_net(daemon, name2)["IPAM"]["Options"] == {}
    # EnableIPv6 false given as a field wins over its driver option, which is then not shown
    name3 = f"pst-v6off-{tag()}"
    status, out = api(daemon, "POST", "/v1.50/networks/create", {
        "Name": name3, "EnableIPv6": False, "Options": {"com.docker.network.enable_ipv6": "true"}})
    assert status == 201, out
    nets.append(name3)
    n3 = inspect_net(daemon, name3)
    assert n3["EnableIPv6"] is False and n3["Options"] == {}
    status, out = api(daemon, "POST", "/v1.50/networks/create", {
        "Name": f"pst-badopt-{tag()}", "Options": {"com.docker.network.enable_ipv6": "maybe"}})
    assert (status, out["message"]) == (400, 'driver-opt "com.docker.network.enable_ipv6" is not a valid bool')


def test_predefined_networks_shapes(daemon: PortsideDaemon) -> None:
    for name in ("host", "none"):
        n = inspect_net(daemon, name)
        assert n["IPAM"] == {"Driver": "default", "Options": None, "Config": None}, n
        assert n["Options"] == {} and n["Labels"] == {} and n["Containers"] == {}
    b = inspect_net(daemon, "bridge")
    assert b["IPAM"]["Options"] is None and set(b["IPAM"]["Config"][0]) == {"Subnet", "Gateway"}
    assert b["Options"]["com.docker.network.bridge.default_bridge"] == "true"


def test_list_leaves_containers_empty_inspect_fills_them(daemon: PortsideDaemon, busybox: str, names: list[str],
                                                         nets: list[str]) -> None:
    net, ctr = f"pst-ls-{tag()}", f"pst-ls-c-{tag()}"
    ok(daemon.docker("network", "create", net))
    nets.append(net)
    names.append(ctr)
    cid = ok(daemon.docker("run", "-d", "--name", ctr, "--network", net, busybox, "sleep", "300"))
    status, listed = api(daemon, "GET", "/v1.50/networks")
    assert status == 200
    mine = [n for n in listed if n["Name"] == net]
    assert mine and mine[0]["Containers"] == {}  # dockerd lists networks without their endpoints (API >= 1.28)
    ep = inspect_net(daemon, net)["Containers"][cid]
    assert set(ep) == {"Name", "EndpointID", "MacAddress", "IPv4Address", "IPv6Address"}
    assert ep["Name"] == ctr and ep["IPv4Address"].endswith("/" + inspect_net(daemon, net)["IPAM"]["Config"][0][
        "Subnet"].split("/")[1])


def test_ipam_validation_texts(daemon: PortsideDaemon) -> None:
    body = {"Name": f"pst-bad-{tag()}", "IPAM": {"Config": [{"Subnet": "10.77.1.5/24"}]}}
    status, out = api(daemon, "POST", "/v1.50/networks/create", body)
    assert (status, out["message"]) == (400, "invalid network config:\ninvalid subnet 10.77.1.5/24: it should be "
                                             "10.77.1.0/24")
    body = {"Name": f"pst-bad-{tag()}", "IPAM": {"Config": [{"Subnet": "10.77.1.0/24", "Gateway": "10.78.0.1",
                                                             "AuxiliaryAddresses": {"a": "10.77.2.1"}}]}}
    status, out = api(daemon, "POST", "/v1.50/networks/create", body)
    assert status == 400
    assert out["message"] == ("invalid network config:\n* invalid gateway 10.78.0.1: parent subnet 10.77.1.0/24 "
                              "doesn't contain this address\n* invalid auxiliary address a: parent subnet "
                              "10.77.1.0/24 doesn't contain this address")
    status, out = api(daemon, "POST", "/v1.50/networks/create", {"Name": f"pst-sw-{tag()}", "Scope": "swarm"})
    assert (status, out["message"]) == (403, "cannot create a swarm scoped network when swarm is not active")
    status, out = api(daemon, "POST", "/v1.50/networks/create", {"Name": f"pst-in-{tag()}", "Ingress": True})
    assert (status, out["message"]) == (403, "Ingress network can only be global scope network")
    listed = {n["Name"] for n in api(daemon, "GET", "/v1.50/networks")[1]}
    assert not any(n.startswith(("pst-bad-", "pst-sw-", "pst-in-")) for n in listed)


def test_aux_addresses_are_shown_and_never_handed_out(daemon: PortsideDaemon, busybox: str, names: list[str],
                                                      nets: list[str]) -> None:
    net = f"pst-aux-{tag()}"
    base = free_subnet().rsplit(".", 1)[0]
    ok(daemon.docker("network", "create", "--subnet", f"{base}.0/29", "--aux-address", f"r={base}.2", net))
    nets.append(net)
    assert inspect_net(daemon, net)["IPAM"]["Config"] == [
        {"Subnet": f"{base}.0/29", "AuxiliaryAddresses": {"r": f"{base}.2"}}]
    ctr = f"pst-aux-c-{tag()}"
    names.append(ctr)
    ok(daemon.docker("run", "-d", "--name", ctr, "--network", net, busybox, "sleep", "300"))
    ip = ok(daemon.docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}", ctr))
    assert ip == f"{base}.3"  # .1 the gateway, .2 reserved


def test_config_only_and_config_from(daemon: PortsideDaemon, busybox: str, names: list[str],
                                     nets: list[str]) -> None:
    cfg, user = f"pst-cfg-{tag()}", f"pst-from-{tag()}"
    subnet = free_subnet()
    ok(daemon.docker("network", "create", "--config-only", "--subnet", subnet, "--label", "from=cfg",
                     "-o", "com.docker.network.driver.mtu=1400", cfg))
    nets.append(cfg)
    c = inspect_net(daemon, cfg)
    assert (c["Driver"], c["Scope"], c["ConfigOnly"]) == ("null", "local", True)
    assert c["IPAM"]["Config"] == [{"Subnet": subnet}]
    ok(daemon.docker("network", "create", "--config-from", cfg, user))
    nets.append(user)
    u = inspect_net(daemon, user)
    assert (u["Driver"], u["ConfigFrom"], u["ConfigOnly"]) == ("bridge", {"Network": cfg}, False)
    assert u["IPAM"]["Config"] == [{"Subnet": subnet}] and u["Labels"] == {"from": "cfg"}
    assert u["Options"] == {"com.docker.network.driver.mtu": "1400"}
    ctr = f"pst-from-c-{tag()}"
    names.append(ctr)
    ok(daemon.docker("run", "-d", "--name", ctr, "--network", user, busybox, "sleep", "300"))
    assert ok(daemon.docker("exec", ctr, "cat", "/sys/class/net/eth0/mtu")) == "1400"
    out = daemon.docker("network", "rm", cfg)
    assert out.returncode == 1 and f'configuration network "{cfg}" is in use' in out.stderr
    out = daemon.docker("run", "--rm", "--network", cfg, busybox, "true")
    assert out.returncode != 0 and "cannot create endpoint on configuration-only network" in out.stderr
    # the rules dockerd checks, with its texts
    for args, text in (
        (["--config-only", "--internal"], "configuration network can only contain network specific fields"),
        (["--config-from", cfg, "--label", "x=y"], "user specified configurations are not supported"),
        (["--config-from", cfg, "-o", "a=b"], "network driver options are not supported if the network depends"),
        (["--config-from", f"pst-nope-{tag()}"], "does not exist"),
    ):
        bad = f"pst-badcfg-{tag()}"
        out = daemon.docker("network", "create", *args, bad)
        assert out.returncode == 1 and text in out.stderr, (args, out.stderr)
        assert daemon.docker("network", "inspect", bad).returncode == 1
    # prune leaves config-only networks alone, as dockerd does
    daemon.docker("rm", "-f", ctr)
    names.remove(ctr)
    ok(daemon.docker("network", "rm", user))
    nets.remove(user)
    ok(daemon.docker("network", "prune", "-f", "--filter", "label=from=cfg"))
    assert inspect_net(daemon, cfg)["ConfigOnly"] is True


# ---------------------------------------------------------------------------------------------- item 1: --internal


def _syn_received(daemon: PortsideDaemon, ctr: str) -> int:
    """Half-open connections (SYN_RECV, state 03) in a container's netns: proof that a SYN got to it."""
    text = ok(daemon.docker("exec", ctr, "cat", "/proc/net/tcp", "/proc/net/tcp6"))
    return sum(1 for line in text.splitlines()[1:] if len(line.split()) > 3 and line.split()[3] == "03")


def test_internal_network_has_no_way_out(daemon: PortsideDaemon, busybox: str, names: list[str], nets: list[str],
                                         peer: Peer, procs: Procs, tmp_path: Path) -> None:
    internal, outside = f"pst-int-{tag()}", f"pst-out-{tag()}"
    ok(daemon.docker("network", "create", "--internal", internal))
    ok(daemon.docker("network", "create", outside))
    nets += [internal, outside]
    a, b, o = (f"pst-int-{x}-{tag()}" for x in "abo")
    names += [a, b, o]
    for ctr, net in ((a, internal), (b, internal), (o, outside)):
        ok(daemon.docker("run", "-d", "--name", ctr, "--network", net, busybox, "sh", "-c",
                         "echo from-$HOSTNAME > /index.html; exec httpd -f -p 80 -h /"))
    # on the same internal network, by name
    assert ok(fetch(daemon, a, f"http://{b}/")).startswith("from-")
    # no route out: no default route, and the gateway shows empty, as libnetwork's bridge leaves it
    assert "default" not in ok(daemon.docker("exec", a, "ip", "route"))
    net_settings = json.loads(ok(daemon.docker("inspect", a)))[0]["NetworkSettings"]["Networks"][internal]
    assert net_settings["Gateway"] == ""
    # a server in a namespace wired to the host like another machine: the outside network reaches it, the
    # internal one does not
    (tmp_path / "peer.html").write_text("peer-ok\n")
    procs.start(peer.ns, "busybox", "httpd", "-f", "-p", "8080", "-h", str(tmp_path))
    wait_port(peer.ns, 8080)
    url = f"http://{peer.peer_ip}:8080/peer.html"
    assert ok(fetch(daemon, o, url)) == "peer-ok"
    out = fetch(daemon, a, url, 3)
    assert out.returncode != 0 and "peer-ok" not in out.stdout
    assert daemon.docker("exec", a, "ping", "-c", "1", "-W", "2", peer.peer_ip).returncode != 0
    assert ok(daemon.docker("exec", o, "ping", "-c", "1", "-W", "5", peer.peer_ip))


def test_no_container_reaches_a_loopback_published_port(daemon: PortsideDaemon, busybox: str, names: list[str],
                                                         nets: list[str]) -> None:
    """A container with NET_ADMIN routes 127.0.0.1 to its gateway: the host's bridges accept loopback addresses
    (route_localnet, for host clients of 127.0.0.1:PORT), so without a guard its SYN is DNATed to a server published
    on the host's 127.0.0.1 only, or delivered to a host service bound to loopback."""
    internal, other = f"pst-lg-int-{tag()}", f"pst-lg-out-{tag()}"
    ok(daemon.docker("network", "create", "--internal", internal))
    ok(daemon.docker("network", "create", other))
    nets += [internal, other]
    srv = f"pst-lg-srv-{tag()}"
    names.append(srv)
    ok(daemon.docker("run", "-d", "--name", srv, "-p", "127.0.0.1::80", busybox, "sh", "-c",
                     "echo secret > /index.html; exec httpd -f -p 80 -h /"))
    port = ok(daemon.docker("port", srv, "80/tcp")).split(":")[-1]
    import urllib.request

    def host_fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            return str(r.read().decode().strip())

    assert host_fetch() == "secret"  # the host's own clients still get there
    for net in (internal, other):
        gw = inspect_net(daemon, net)["IPAM"]["Config"][0]["Gateway"]
        attack = (
            "ip route del local 127.0.0.0/8 dev lo table local; ip route del local 127.0.0.1 dev lo table local; "
            f"ip route add 127.0.0.1/32 via {gw} dev eth0 && ip route get 127.0.0.1; "
            f"nc -w 2 127.0.0.1 {port} </dev/null; true"
        )
        out = ok(daemon.docker("run", "--rm", "--network", net, "--cap-add", "NET_ADMIN",
                               "--sysctl", "net.ipv4.conf.all.route_localnet=1",
                               "--sysctl", "net.ipv4.conf.eth0.route_localnet=1", busybox, "sh", "-c", attack))
        assert re.search(rf"127\.0\.0\.1 via {re.escape(gw)} dev eth0", out), out  # the SYN did go to the bridge
        assert _syn_received(daemon, srv) == 0, net
    assert host_fetch() == "secret"


# ---------------------------------------------------------------------------------------------- item 2: MAC addresses


def _macs(daemon: PortsideDaemon, ctr: str) -> tuple[Any, str, dict[str, str]]:
    r = json.loads(ok(daemon.docker("inspect", ctr)))[0]
    ns = r["NetworkSettings"]
    return r["Config"].get("MacAddress"), ns["MacAddress"], {k: v["MacAddress"] for k, v in ns["Networks"].items()}


def test_run_mac_address_is_the_interfaces_and_inspects_as_dockerd(daemon: PortsideDaemon, busybox: str,
                                                                   names: list[str]) -> None:
    ctr = f"pst-mac-{tag()}"
    names.append(ctr)
    ok(daemon.docker("run", "-d", "--name", ctr, "--mac-address", "02:11:22:33:44:55", busybox, "sleep", "300"))
    assert ok(daemon.docker("exec", ctr, "cat", "/sys/class/net/eth0/address")) == "02:11:22:33:44:55"
    assert "link/ether 02:11:22:33:44:55" in ok(daemon.docker("exec", ctr, "ip", "link", "show", "eth0"))
    assert _macs(daemon, ctr) == ("02:11:22:33:44:55", "02:11:22:33:44:55", {"bridge": "02:11:22:33:44:55"})
    ok(daemon.docker("stop", "-t", "0", ctr))
    # the operational address goes with the endpoint; the configured one stays and comes back on start
    assert _macs(daemon, ctr) == ("02:11:22:33:44:55", "", {"bridge": ""})
    ok(daemon.docker("start", ctr))
    assert ok(daemon.docker("exec", ctr, "cat", "/sys/class/net/eth0/address")) == "02:11:22:33:44:55"


def test_endpoint_mac_address_on_api_1_44(daemon: PortsideDaemon, busybox: str, names: list[str],
                                          nets: list[str]) -> None:
    net, ctr = f"pst-macnet-{tag()}", f"pst-macep-{tag()}"
    ok(daemon.docker("network", "create", net))
    nets.append(net)
    names.append(ctr)
    body = {"Image": busybox, "Cmd": ["sleep", "300"], "HostConfig": {"NetworkMode": net},
            "NetworkingConfig": {"EndpointsConfig": {net: {"MacAddress": "02-AB-CD-EF-01-23"}}}}
    status, out = api(daemon, "POST", f"/v1.44/containers/create?name={ctr}", body)
    assert status == 201, out
    assert out["Warnings"] == []
    ok(daemon.docker("start", ctr))
    assert ok(daemon.docker("exec", ctr, "cat", "/sys/class/net/eth0/address")) == "02:ab:cd:ef:01:23"
    # Config shows the address as asked, the endpoint the interface's; NetworkSettings.MacAddress is the default
    # bridge's only
    assert _macs(daemon, ctr) == ("02-AB-CD-EF-01-23", "", {net: "02:ab:cd:ef:01:23"})
    # connect with an address of its own: the new interface gets it
    status, out = api(daemon, "POST", "/v1.50/networks/bridge/connect",
                      {"Container": ctr, "EndpointConfig": {"MacAddress": "02:00:00:00:be:ef"}})
    assert status == 200, out
    assert ok(daemon.docker("exec", ctr, "cat", "/sys/class/net/eth1/address")) == "02:00:00:00:be:ef"
    status, out = api(daemon, "POST", f"/v1.50/networks/{net}/disconnect", {"Container": ctr})
    assert status == 200, out
    status, out = api(daemon, "POST", f"/v1.50/networks/{net}/connect",
                      {"Container": ctr, "EndpointConfig": {"MacAddress": "nope"}})
    assert (status, out["message"]) == (400, "invalid MAC address nope")


def test_container_wide_mac_address_by_api_version(daemon: PortsideDaemon, busybox: str, names: list[str],
                                                   client: docker.DockerClient) -> None:
    from tests.testbed.cli import docker as docker_cli

    old = f"pst-mac41-{tag()}"
    names.append(old)
    # the 20.10 CLI speaks API 1.41: Config.MacAddress, applied to the primary endpoint
    out = docker_cli(daemon.host, daemon.tmp / "cli", "run", "-d", "--name", old, "--mac-address",
                     "02:41:41:41:41:41", busybox, "sleep", "300", cli="/usr/bin/docker")
    assert out.returncode == 0, out.stderr
    assert ok(daemon.docker("exec", old, "cat", "/sys/class/net/eth0/address")) == "02:41:41:41:41:41"
    out = docker_cli(daemon.host, daemon.tmp / "cli", "run", "--rm", "--network", "host", "--mac-address",
                     "02:41:41:41:41:42", busybox, "true", cli="/usr/bin/docker")
    assert out.returncode == 125 and "conflicting options: mac-address and the network mode" in out.stderr
    # from 1.44 the container-wide field is moved to the endpoint, with dockerd's warning; a different one is refused
    new = f"pst-mac50-{tag()}"
    names.append(new)
    body = {"Image": busybox, "Cmd": ["sleep", "300"], "MacAddress": "02:50:50:50:50:50"}
    status, out = api(daemon, "POST", f"/v1.50/containers/create?name={new}", body)
    assert status == 201, out
    assert out["Warnings"] == ["The container-wide MacAddress field is now deprecated. It should be specified in "
                               "EndpointsConfig instead."]
    ok(daemon.docker("start", new))
    assert ok(daemon.docker("exec", new, "cat", "/sys/class/net/eth0/address")) == "02:50:50:50:50:50"
    body = {"Image": busybox, "MacAddress": "02:50:50:50:50:51",
            "NetworkingConfig": {"EndpointsConfig": {"bridge": {"MacAddress": "02:50:50:50:50:52"}}}}
    status, out = api(daemon, "POST", f"/v1.50/containers/create?name=pst-macbad-{tag()}", body)
    assert (status, out["message"]) == (400, "the container-wide MAC address must match the endpoint-specific MAC "
                                              "address for the main network, or be left empty")


def test_malformed_mac_address_is_refused_and_leaves_nothing(daemon: PortsideDaemon, busybox: str,
                                                             client: docker.DockerClient) -> None:
    bad = f"pst-macbad-{tag()}"
    body = {"Image": busybox, "NetworkingConfig": {"EndpointsConfig": {"bridge": {"MacAddress": "02:11:22:33:44:zz"}}}}
    status, out = api(daemon, "POST", f"/v1.50/containers/create?name={bad}", body)
    assert (status, out["message"]) == (400, "invalid config for network bridge: invalid MAC address "
                                             "02:11:22:33:44:zz")
    # docker-py sends the container-wide field: moved to the endpoint, then refused the same way
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create(busybox, name=bad, mac_address="02:11:22:33:44")
    assert e.value.status_code == 400
    assert e.value.explanation == "invalid config for network bridge: invalid MAC address 02:11:22:33:44"
    # the CLI checks it itself, as docker 28 does
    out = daemon.docker("run", "--rm", "--name", bad, "--mac-address", "zz:11", busybox, "true")
    assert out.returncode == 125 and "zz:11 is not a valid mac address" in out.stderr
    assert daemon.docker("inspect", bad).returncode == 1


# ---------------------------------------------------------------------------------------------- item 3: legacy links


def test_link_on_the_default_bridge_hosts_env_and_rm_link(daemon: PortsideDaemon, busybox: str,
                                                          names: list[str]) -> None:
    db, web = f"pst-lnk-db-{tag()}", f"pst-lnk-web-{tag()}"
    names += [web, db]
    db_id = ok(daemon.docker("run", "-d", "--name", db, "-e", "DB_PASS=s3cret", "--expose", "5432",
                             "--expose", "80", "--expose", "81", "--expose", "53/udp", busybox, "sleep", "300"))
    ok(daemon.docker("run", "-d", "--name", web, "--link", f"{db}:db", busybox, "sleep", "300"))
    db_ip = ok(daemon.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", db))
    hosts = ok(daemon.docker("exec", web, "cat", "/etc/hosts")).splitlines()
    # dockerd's line: the alias, the child's hostname (its id prefix) and its name
    assert f"{db_ip}\tdb {db_id[:12]} {db}" in hosts
    for name in ("db", db, db_id[:12]):
        assert ok(daemon.docker("exec", web, "ping", "-c", "1", "-W", "3", name)).startswith(f"PING {name} ({db_ip})")
    env = dict(line.split("=", 1) for line in ok(daemon.docker("exec", web, "env")).splitlines() if "=" in line)
    link_env = {k: v for k, v in env.items() if k.startswith("DB_")}
    assert link_env == {
        "DB_PORT": f"tcp://{db_ip}:80",
        "DB_PORT_80_TCP": f"tcp://{db_ip}:80", "DB_PORT_80_TCP_ADDR": db_ip, "DB_PORT_80_TCP_PORT": "80",
        "DB_PORT_80_TCP_PROTO": "tcp",
        "DB_PORT_81_TCP": f"tcp://{db_ip}:81", "DB_PORT_81_TCP_ADDR": db_ip, "DB_PORT_81_TCP_PORT": "81",
        "DB_PORT_81_TCP_PROTO": "tcp",
        # 80 and 81 are consecutive: dockerd adds the range
        "DB_PORT_80_TCP_START": f"tcp://{db_ip}:80", "DB_PORT_80_TCP_PORT_START": "80",
        "DB_PORT_80_TCP_END": f"tcp://{db_ip}:81", "DB_PORT_80_TCP_PORT_END": "81",
        "DB_PORT_5432_TCP": f"tcp://{db_ip}:5432", "DB_PORT_5432_TCP_ADDR": db_ip, "DB_PORT_5432_TCP_PORT": "5432",
        "DB_PORT_5432_TCP_PROTO": "tcp",
        "DB_PORT_53_UDP": f"udp://{db_ip}:53", "DB_PORT_53_UDP_ADDR": db_ip, "DB_PORT_53_UDP_PORT": "53",
        "DB_PORT_53_UDP_PROTO": "udp",
        "DB_NAME": f"/{web}/db",
        "DB_ENV_DB_PASS": "s3cret",
    }
    assert json.loads(ok(daemon.docker("inspect", "-f", "{{json .HostConfig.Links}}", web))) == [f"/{db}:/{web}/db"]
    # the child is listed under its link name too (`docker ps --no-trunc` shows both; truncated, only its own)
    listed = ok(daemon.docker("ps", "--no-trunc", "--filter", f"id={db_id}", "--format", "{{.Names}}"))
    assert listed == f"{db},{web}/db"
    assert ok(daemon.docker("ps", "--filter", f"id={db_id}", "--format", "{{.Names}}")) == db
    # the child restarts with another address: the parent's hosts line follows it (dockerd's parent update)
    ok(daemon.docker("restart", "-t", "0", db))
    new_ip = ok(daemon.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", db))
    assert f"{new_ip}\tdb {db_id[:12]} {db}" in ok(daemon.docker("exec", web, "cat", "/etc/hosts")).splitlines()
    # docker rm --link takes the link away, from inspect and from the running parent's /etc/hosts
    assert ok(daemon.docker("rm", "--link", f"/{web}/db")) == f"/{web}/db"
    assert json.loads(ok(daemon.docker("inspect", "-f", "{{json .HostConfig.Links}}", web))) is None
    assert "\tdb " not in ok(daemon.docker("exec", web, "cat", "/etc/hosts"))
    out = daemon.docker("rm", "--link", f"{web}/db")
    assert out.returncode == 1 and f"No such container: {web}/db" in out.stderr
    # docker-py's remove_container("/web/db", link=True) sends the name quoted (%2F), dockerd routes it all the same
    ok(daemon.docker("rm", "-f", web))
    ok(daemon.docker("run", "-d", "--name", web, "--link", f"{db}:db", busybox, "sleep", "300"))
    client = docker.APIClient(base_url=daemon.host, version="auto")
    try:
        client.remove_container(f"/{web}/db", link=True)
    finally:
        client.close()
    assert json.loads(ok(daemon.docker("inspect", "-f", "{{json .HostConfig.Links}}", web))) is None
    out = daemon.docker("rm", "--link", db)
    assert out.returncode == 1 and "Conflict, cannot remove the default link name of the container" in out.stderr
    assert ok(daemon.docker("inspect", "-f", "{{.State.Running}}", db)) == "true"


def test_link_to_a_missing_or_stopped_container(daemon: PortsideDaemon, busybox: str, names: list[str],
                                                client: docker.DockerClient) -> None:
    missing = f"pst-lnk-none-{tag()}"
    out = daemon.docker("run", "--rm", "--link", f"{missing}:x", busybox, "true")
    assert out.returncode == 125
    assert f"could not get container for {missing}: No such container: {missing}" in out.stderr
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create(busybox, links={missing: "x"})
    assert e.value.status_code == 400
    assert e.value.explanation == f"could not get container for {missing}: No such container: {missing}"
    stopped, parent = f"pst-lnk-stop-{tag()}", f"pst-lnk-par-{tag()}"
    names += [parent, stopped]
    ok(daemon.docker("create", "--name", stopped, busybox, "sleep", "300"))
    ok(daemon.docker("create", "--name", parent, "--link", stopped, busybox, "sleep", "300"))
    out = daemon.docker("start", parent)
    assert out.returncode == 1
    assert f"Cannot link to a non running container: /{stopped} AS /{parent}/{stopped}" in out.stderr
    out = daemon.docker("run", "--rm", "--network", "host", "--link", stopped, busybox, "true")
    assert out.returncode == 125 and "conflicting options: host type networking can't be used with links" in out.stderr


def test_links_on_a_user_network_are_dns_aliases_of_that_container(daemon: PortsideDaemon, busybox: str,
                                                                    names: list[str], nets: list[str]) -> None:
    net = f"pst-lnk-net-{tag()}"
    ok(daemon.docker("network", "create", net))
    nets.append(net)
    db, app, other = (f"pst-lnk-{x}-{tag()}" for x in ("udb", "app", "oth"))
    names += [app, other, db]
    ok(daemon.docker("run", "-d", "--name", db, "--network", net, busybox, "sleep", "300"))
    db_ip = ok(daemon.docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}", db))
    ok(daemon.docker("run", "-d", "--name", app, busybox, "sleep", "300"))
    ok(daemon.docker("run", "-d", "--name", other, "--network", net, "--link", f"{db}:store", busybox, "sleep",
                     "300"))
    # docker network connect --link: the alias resolves by the network's DNS in that container only
    ok(daemon.docker("network", "connect", "--link", f"{db}:dbalias", net, app))
    assert ok(daemon.docker("exec", app, "ping", "-c", "1", "-W", "3", "dbalias")).startswith(
        f"PING dbalias ({db_ip})")
    assert daemon.docker("exec", other, "ping", "-c", "1", "-W", "2", "dbalias").returncode != 0
    links = json.loads(ok(daemon.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", app)))
    assert links[net]["Links"] == [f"{db}:dbalias"] and links["bridge"]["Links"] is None
    # docker run --network NET --link: the same, and no hosts line, no registered link (dockerd's inspect: null)
    assert ok(daemon.docker("exec", other, "ping", "-c", "1", "-W", "3", "store")).startswith(f"PING store ({db_ip})")
    assert "store" not in ok(daemon.docker("exec", other, "cat", "/etc/hosts"))
    assert json.loads(ok(daemon.docker("inspect", "-f", "{{json .HostConfig.Links}}", other))) is None


def test_prune_honours_until_and_label_not(daemon: PortsideDaemon, nets: list[str]) -> None:
    t = tag()
    old, keep, new = f"pst-pr-old-{t}", f"pst-pr-keep-{t}", f"pst-pr-new-{t}"
    ok(daemon.docker("network", "create", "--label", f"pst-prune={t}", old))
    ok(daemon.docker("network", "create", "--label", f"pst-prune={t}", "--label", "keep=1", keep))
    nets += [old, keep]
    created = inspect_net(daemon, keep)["Created"]
    ok(daemon.docker("network", "create", "--label", f"pst-prune={t}", new))
    nets.append(new)
    # created after `until`: kept (dockerd's localNetworksPrune); a Go duration counts back from now
    out = ok(daemon.docker("network", "prune", "-f", "--filter", f"label=pst-prune={t}", "--filter", "until=1h"))
    assert old not in out and new not in out
    assert inspect_net(daemon, new)["Name"] == new
    # label!: a network with the label stays
    out = ok(daemon.docker("network", "prune", "-f", "--filter", f"label=pst-prune={t}", "--filter", "label!=keep",
                           "--filter", f"until={created}"))
    assert old in out and keep not in out and new not in out
    assert {n["Name"] for n in api(daemon, "GET", "/v1.50/networks")[1]} >= {keep, new}
    nets.remove(old)
    status, body = api(daemon, "POST", '/v1.50/networks/prune?filters={"until":["1h","2h"]}')
    assert (status, body["message"]) == (400, "more than one until filter specified")


def test_internal_only_container_publishes_nothing(daemon: PortsideDaemon, busybox: str, names: list[str],
                                                   nets: list[str]) -> None:
    """libnetwork programs published ports on the gateway endpoint; an --internal network has none, so a
    container only on it publishes nothing (no way in either) until it joins a network with a gateway."""
    internal, outside = f"pst-ipub-int-{tag()}", f"pst-ipub-out-{tag()}"
    ok(daemon.docker("network", "create", "--internal", internal))
    ok(daemon.docker("network", "create", outside))
    nets += [internal, outside]
    ctr = f"pst-ipub-{tag()}"
    names.append(ctr)
    ok(daemon.docker("run", "-d", "--name", ctr, "--network", internal, "-p", "127.0.0.1::80", busybox, "sh", "-c",
                     "echo inside > /index.html; exec httpd -f -p 80 -h /"))
    ports = json.loads(ok(daemon.docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", ctr)))
    assert ports == {"80/tcp": None}
    assert ok(daemon.docker("port", ctr)) == ""
    ok(daemon.docker("network", "connect", outside, ctr))
    bound = json.loads(ok(daemon.docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", ctr)))["80/tcp"]
    assert bound and bound[0]["HostIp"] == "127.0.0.1"
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{bound[0]['HostPort']}/", timeout=5) as r:
        assert r.read().decode().strip() == "inside"


def test_endpoints_config_rules_of_dockerds_router(daemon: PortsideDaemon, busybox: str) -> None:
    bad = f"pst-epbad-{tag()}"
    body = {"Image": busybox, "NetworkingConfig": {"EndpointsConfig": {"bridge": {}, "host": {}}}}
    status, out = api(daemon, "POST", f"/v1.43/containers/create?name={bad}", body)
    assert (status, out["message"]) == (400, "Container cannot be created with multiple network endpoints: bridge, "
                                             "host")
    body = {"Image": busybox, "NetworkingConfig": {"EndpointsConfig": {"bridge": None}}}
    status, out = api(daemon, "POST", f"/v1.50/containers/create?name={bad}", body)
    assert (status, out["message"]) == (400, "invalid config for network bridge: EndpointsConfig is nil")
    assert daemon.docker("inspect", bad).returncode == 1


# ---------------------------------------------------------------------------------------------- IPv6


def ula64() -> str:
    """A random /64 of fd00::/8 (a ULA no other network here uses)."""
    # canonical form (no leading zeros), as inspect prints the addresses taken from it
    return str(ipaddress.IPv6Network((int(ipaddress.IPv6Address("fd00::")) + (secrets.randbits(56) << 64), 64)))


def test_ipv6_network_shapes_addresses_and_traffic(daemon: PortsideDaemon, busybox: str, names: list[str],
                                                    nets: list[str]) -> None:
    """`docker network create --ipv6 --subnet` and two containers on it (one with --ip6): dockerd 28's shapes, and
    IPv6 between them over the bridge; IPv4 port publishing still works on such a network."""
    name, sub6 = f"pst-v6-{tag()}", ula64()
    prefix = sub6.removesuffix("/64")
    ok(daemon.docker("network", "create", "--ipv6", "--subnet", sub6, name))
    nets.append(name)
    n = inspect_net(daemon, name)
    assert n["EnableIPv6"] is True and n["EnableIPv4"] is True
    # dockerd 28's buildIPAMResources: the configured pools as given (no Gateway), then the allocated IPv4 pool
    # (dockerd 20.10 listed IPv4 first)
    assert n["IPAM"]["Options"] == {} and n["IPAM"]["Config"][0] == {"Subnet": sub6}
    assert len(n["IPAM"]["Config"]) == 2 and set(n["IPAM"]["Config"][1]) == {"Subnet", "Gateway"}
    a, b = f"pst-v6a-{tag()}", f"pst-v6b-{tag()}"
    names += [a, b]
    ok(daemon.docker("run", "-d", "--name", a, "--network", name, "--ip6", f"{prefix}f00d", busybox, "top"))
    ok(daemon.docker("run", "-d", "--name", b, "--network", name, "-p", "127.0.0.1::80", busybox, "sh", "-c",
                     "echo v4-published > /index.html; exec httpd -f -p 80 -h /"))
    ia, ib = (json.loads(ok(daemon.docker("inspect", c)))[0]["NetworkSettings"] for c in (a, b))
    ea, eb = ia["Networks"][name], ib["Networks"][name]
    assert ea["IPAMConfig"] == {"IPv6Address": f"{prefix}f00d"}
    assert (ea["GlobalIPv6Address"], ea["GlobalIPv6PrefixLen"], ea["IPv6Gateway"]) == (f"{prefix}f00d", 64,
                                                                                       f"{prefix}1")
    assert eb["GlobalIPv6Address"] == f"{prefix}2" and eb["IPAMConfig"] is None
    # a user network's endpoint is not the top-level (default bridge) one
    assert ia["GlobalIPv6Address"] == "" and ia["IPv6Gateway"] == ""
    containers = inspect_net(daemon, name)["Containers"]
    assert {c["Name"]: c["IPv6Address"] for c in containers.values()} == {a: f"{prefix}f00d/64", b: f"{prefix}2/64"}
    assert f"default via {prefix}1 dev eth0" in ok(daemon.docker("exec", a, "ip", "-6", "route"))
    assert ok(daemon.docker("exec", a, "ping", "-6", "-c", "1", "-W", "3", f"{prefix}2"))
    assert "v4-published" in ok(fetch(daemon, a, f"http://[{prefix}2]/"))
    # IPv4 publishing is untouched by IPv6 on the network
    import urllib.request

    port = json.loads(ok(daemon.docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", b)))["80/tcp"][0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port['HostPort']}/", timeout=5) as r:
        assert r.read().decode().strip() == "v4-published"


def test_ipv6_without_subnet_gets_a_ula_and_checks(daemon: PortsideDaemon, busybox: str, nets: list[str]) -> None:
    name = f"pst-v6ula-{tag()}"
    ok(daemon.docker("network", "create", "--ipv6", name))
    nets.append(name)
    cfg = inspect_net(daemon, name)["IPAM"]["Config"]
    assert len(cfg) == 2 and ":" not in cfg[0]["Subnet"]
    v6 = ipaddress.IPv6Network(cfg[1]["Subnet"])
    # dockerd's deriveULABaseNetwork: fd00::/8 with the 40 low bits of sha256(engine id)'s first 8 bytes as the
    # Global ID, a /48 cut into /64s
    status, info = api(daemon, "GET", "/v1.50/info")
    gid = int.from_bytes(hashlib.sha256(info["ID"].encode()).digest()[:8], "big") & ((1 << 40) - 1)
    base = ipaddress.IPv6Network((int(ipaddress.IPv6Address("fd00::")) + (gid << 80), 48))
    assert v6.prefixlen == 64 and v6.subnet_of(base), (v6, base)
    assert cfg[1]["Gateway"] == str(v6.network_address + 1)
    # dockerd's EndpointIPAMConfig.Validate at container create, per network, its errors joined
    bad = f"pst-v6badip-{tag()}"
    out = daemon.docker("create", "--name", bad, "--network", name, "--ip6", "10.0.0.1", "busybox")
    assert out.returncode != 0 and f"invalid config for network {name}: invalid IPv6 address: 10.0.0.1" in out.stderr
    status, msg = api(daemon, "POST", f"/v1.50/containers/create?name={bad}", {
        "Image": "busybox", "HostConfig": {"NetworkMode": name}, "NetworkingConfig": {"EndpointsConfig": {
            name: {"IPAMConfig": {"IPv4Address": "fd00::1", "IPv6Address": "::"}}}}})
    assert (status, msg["message"]) == (400, f"invalid config for network {name}: * invalid IPv4 address: fd00::1\n"
                                             "* invalid IPv6 address: ::")
    assert daemon.docker("inspect", bad).returncode == 1
    # ValidateIPAM's texts for an IPv6 pool, joined with the IPv4 pool's
    status, out = api(daemon, "POST", "/v1.50/networks/create", {
        "Name": f"pst-v6bad-{tag()}", "EnableIPv6": True, "IPAM": {"Config": [
            {"Subnet": "10.99.0.0/24", "Gateway": "10.98.0.1"},
            {"Subnet": "fd00:1::/64", "Gateway": "10.1.1.1", "IPRange": "fd00:1::1/96"}]}})
    assert (status, out["message"]) == (400, "invalid network config:\n"
                                             "* invalid gateway 10.98.0.1: parent subnet 10.99.0.0/24 doesn't contain "
                                             "this address\n"
                                             "* invalid ip-range fd00:1::1/96: it should be fd00:1::/96\n"
                                             "* invalid gateway 10.1.1.1: parent subnet is an IPv6 block")
    # an IPv6 pool of a network without IPv6 is kept and shown, not checked (and "::0" is as good as "::")
    off = f"pst-v6off-{tag()}"
    status, out = api(daemon, "POST", "/v1.50/networks/create", {
        "Name": off, "IPAM": {"Config": [{"Subnet": "2001:db8:7::/64", "IPRange": "2001:db8:7::0/96"}]}})
    assert status == 201, out
    nets.append(off)
    n = inspect_net(daemon, off)
    assert n["EnableIPv6"] is False and n["IPAM"]["Config"][0] == {"Subnet": "2001:db8:7::/64",
                                                                   "IPRange": "2001:db8:7::0/96"}


def test_ipv6_internal_network_has_no_ipv6_route_out(daemon: PortsideDaemon, busybox: str, names: list[str],
                                                      nets: list[str]) -> None:
    name = f"pst-v6int-{tag()}"
    ok(daemon.docker("network", "create", "--ipv6", "--internal", "--subnet", ula64(), name))
    nets.append(name)
    a, b = f"pst-v6ia-{tag()}", f"pst-v6ib-{tag()}"
    names += [a, b]
    for c in (a, b):
        ok(daemon.docker("run", "-d", "--name", c, "--network", name, busybox, "top"))
    ea = json.loads(ok(daemon.docker("inspect", a)))[0]["NetworkSettings"]["Networks"][name]
    eb = json.loads(ok(daemon.docker("inspect", b)))[0]["NetworkSettings"]["Networks"][name]
    assert ea["IPv6Gateway"] == "" and ea["GlobalIPv6Address"]
    assert "default" not in ok(daemon.docker("exec", a, "ip", "-6", "route"))
    assert ok(daemon.docker("exec", a, "ping", "-6", "-c", "1", "-W", "3", eb["GlobalIPv6Address"]))


def test_dockerpy_ipv6_and_endpoint_driver_opts(daemon: PortsideDaemon, busybox: str, client: docker.DockerClient,
                                                names: list[str], nets: list[str]) -> None:
    """docker-py's own IPv6 and driver-option calls (its api_network_test cases) against dockerd 28's answers."""
    from docker.types import IPAMConfig, IPAMPool

    name = f"pst-v6py-{tag()}"
    net = client.networks.create(name, enable_ipv6=True, ipam=IPAMConfig(pool_configs=[
        IPAMPool(subnet="fd00:389::/64", iprange="fd00:389::0/96", gateway="fd00:389::ffff")]))
    nets.append(name)
    net.reload()
    assert net.attrs["EnableIPv6"] is True
    assert net.attrs["IPAM"]["Config"][0] == {"Subnet": "fd00:389::/64", "IPRange": "fd00:389::0/96",
                                              "Gateway": "fd00:389::ffff"}
    ctr = f"pst-v6py-{tag()}"
    names.append(ctr)
    c = client.containers.create(busybox, "top", name=ctr, network=name)
    net.disconnect(c)
    net.connect(c, ipv6_address="fd00:389::f00d", driver_opt={"com.docker-py.setting": "on"})
    c.start()
    c.reload()
    ep = c.attrs["NetworkSettings"]["Networks"][name]
    assert ep["IPAMConfig"] == {"IPv6Address": "fd00:389::f00d"}
    assert ep["GlobalIPv6Address"] == "fd00:389::f00d" and ep["IPv6Gateway"] == "fd00:389::ffff"
    assert ep["DriverOpts"] == {"com.docker-py.setting": "on"}


def _ipam_shape(n: dict[str, Any], configured: set[str]) -> list[dict[str, str]]:
    """IPAM Config with allocated pools (which differ by engine) as placeholders, IPv4 first."""
    out = []
    for c in n["IPAM"]["Config"]:
        if c["Subnet"] in configured:
            out.append(dict(c))
        else:
            fam = "v6" if ":" in c["Subnet"] else "v4"
            out.append({"Subnet": f"<allocated {fam}>", **({"Gateway": "<its gateway>"} if "Gateway" in c else {})})
    return sorted(out, key=lambda c: ":" in c["Subnet"] or "v6" in c["Subnet"])


def test_ipv6_network_shapes_match_dockerd_2010(daemon: PortsideDaemon, nets: list[str]) -> None:
    """The same `docker network create` calls against the real dockerd 20.10: the same fields and values, except
    for what dockerd changed since (API 1.50 is dockerd 28's): 28 lists configured pools before allocated ones
    (20.10: IPv4 first), and 28 gives --ipv6 without a subnet a ULA /64 where 20.10 refuses."""
    from tests.testbed import dockerd as testbed_dockerd

    if not testbed_dockerd.available():
        pytest.skip("dockerd is not installed, or we are not root")
    sub6, sub6b, sub4 = ula64(), ula64(), free_subnet()
    p6b = sub6b.removesuffix("/64")
    cases = [
        ("sub", ["--ipv6", "--subnet", sub6]),
        ("off", ["--subnet", "2001:db8:5::/64"]),
        ("both", ["--ipv6", "--internal", "--subnet", sub4, "--subnet", sub6b, "--ip-range", f"{p6b}/96",
                  "--gateway", f"{p6b}ffff", "--label", "k=v", "-o", "foo=bar", "--ipam-opt", "x=y"]),
    ]
    with testbed_dockerd.running() as d:
        for i, (case, args) in enumerate(cases):
            name = f"pst-v6cmp-{case}-{tag()}"
            shapes = []
            for engine, run in (("dockerd", d.docker), ("portside", daemon.docker)):
                # a recognisable bridge name on both (dockerd makes a real bridge too)
                ok(run("network", "create", "-o", f"com.docker.network.bridge.name=pstc{i}{tag()[:4]}", *args, name))
                if engine == "portside":
                    nets.append(name)
                n = json.loads(ok(run("network", "inspect", name)))[0]
                if engine == "dockerd":
                    ok(run("network", "rm", name))
                configured = {args[j + 1] for j, a in enumerate(args) if a == "--subnet"}
                n["Options"].pop("com.docker.network.bridge.name")
                shapes.append({"EnableIPv6": n["EnableIPv6"], "Internal": n["Internal"], "Labels": n["Labels"],
                               "Options": n["Options"], "IPAMOptions": n["IPAM"]["Options"],
                               "Config": _ipam_shape(n, configured)})
            assert shapes[0] == shapes[1], case
        # dockerd 20.10 refuses --ipv6 without an IPv6 subnet (dockerd 28 takes a ULA: see the test above)
        r = d.docker("network", "create", "--ipv6", f"pst-v6cmp-none-{tag()}")
        assert r.returncode != 0 and "could not find an available, non-overlapping IPv6 address pool" in r.stderr
