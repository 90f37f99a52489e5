"""IPv6 on user-defined bridge networks (--ipv6): pools, addresses, routes, isolation, per-interface sysctls.

Traffic only flows between namespaces these tests make (the containers' and, for the disabled-host case, a
namespace standing in for the host); the pools are ULAs (fd00::/8) picked at random per test.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, DNSRecord

from engine.errors import Forbidden, InvalidArgument
from engine.net import ipam, links, nsutil
from engine.net.service import NetworkService, Sandbox

from .conftest import Procs, leftovers, service_kwargs, sh, wait_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def cid() -> str:
    return secrets.token_hex(32)


def ula64() -> str:
    """A random /64 of fd00::/8 for one test (no other network on this machine uses it)."""
    return str(ipaddress.IPv6Network((int(ipaddress.IPv6Address("fd00::")) + (secrets.randbits(56) << 64), 64)))


def v6_of(sb: Sandbox, net: str) -> str:
    return str(sb.network_settings["Networks"][net]["GlobalIPv6Address"])


def addrs6(netns: Path | None, ifname: str) -> list[str]:
    out = json.loads(sh(netns, "ip", "-j", "-6", "addr", "show", "dev", ifname, "scope", "global").stdout)
    return [f"{a['local']}/{a['prefixlen']}" for i in out for a in i["addr_info"] if "local" in a]


def routes6(netns: Path | None) -> list[dict[str, Any]]:
    return list(json.loads(sh(netns, "ip", "-j", "-6", "route", "show").stdout))


def lookup(netns: Path | None, name: str, qtype: str) -> list[str]:
    """Ask the embedded DNS (127.0.0.11) inside the container's netns; the answers of that type."""
    script = ("from dnslib import DNSRecord;"
              f"print(DNSRecord.question({name!r}, {qtype!r}).send('127.0.0.11', 53, timeout=5).hex())")
    py = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
    reply = DNSRecord.parse(bytes.fromhex(sh(netns, str(py), "-c", script).stdout.strip()))
    return [str(rr.rdata) for rr in reply.rr if QTYPE[rr.rtype] == qtype]


def test_ipv6_network_addresses_routes_and_traffic(svc: NetworkService, procs: Procs) -> None:
    name = f"pst-v6-{secrets.token_hex(2)}"
    sub6 = ula64()
    gw6 = str(ipaddress.IPv6Network(sub6).network_address + 1)
    net = svc.create_network(name, enable_ipv6=True, subnet6=sub6)
    assert net["EnableIPv6"] is True
    # dockerd: the allocated IPv4 pool (nobody configured one) comes after the configured IPv6 one
    cfg = net["IPAM"]["Config"]
    assert cfg[0] == {"Subnet": sub6}
    assert set(cfg[1]) == {"Subnet", "Gateway"} and ":" not in cfg[1]["Subnet"]
    bridge = svc.networks[net["Id"]]["_bridge"]
    assert f"{gw6}/64" in addrs6(None, bridge)
    assert links.get_sysctl(f"net/ipv6/conf/{bridge}/disable_ipv6") == "0"

    a = svc.create_sandbox(cid(), name="a", hostname="a", network_mode=name)
    b = svc.create_sandbox(cid(), name="b", hostname="b", network_mode=name)
    ep = a.network_settings["Networks"][name]
    prefix = str(ipaddress.IPv6Network(sub6).network_address)
    assert ep["GlobalIPv6Address"] == prefix + "2"
    assert ep["GlobalIPv6PrefixLen"] == 64
    assert ep["IPv6Gateway"] == gw6
    assert v6_of(b, name) == prefix + "3"
    assert addrs6(a.netns_path, "eth0") == [f"{prefix}2/64"]
    default = [r for r in routes6(a.netns_path) if r["dst"] == "default"]
    assert [(r["gateway"], r["dev"]) for r in default] == [(gw6, "eth0")]
    shown = svc.inspect(name)["Containers"]
    assert shown[a.container_id]["IPv6Address"] == f"{prefix}2/64"
    assert f"{prefix}3\tb" in b.hosts_path.read_text()

    # container to container over the bridge, by IPv6 (no DAD wait: the addresses are usable at once)
    sh(a.netns_path, "busybox", "ping", "-6", "-c", "1", "-W", "2", v6_of(b, name))
    procs.start(b.netns_path, "busybox", "nc", "-l", "-p", "8080", "-e", "echo", "hello-v6")
    wait_port(b.netns_path, 8080)
    r = sh(a.netns_path, "busybox", "nc", "-w", "2", v6_of(b, name), "8080")
    assert r.stdout.strip() == "hello-v6"
    # the embedded DNS answers AAAA with the IPv6 address, A as before
    assert lookup(a.netns_path, "b", "AAAA") == [v6_of(b, name)]
    assert lookup(a.netns_path, "b", "A") == [b.network_settings["Networks"][name]["IPAddress"]]
    # IPv4 still works alongside
    sh(a.netns_path, "busybox", "ping", "-c", "1", "-W", "2", b.network_settings["Networks"][name]["IPAddress"])

    # a released address is not handed out again at once; the next one follows the cursor
    svc.remove_sandbox(b.container_id)
    c = svc.create_sandbox(cid(), name="c", hostname="c", network_mode=name)
    assert v6_of(c, name) == prefix + "4"
    for sb in (a, c):
        svc.remove_sandbox(sb.container_id)
    svc.remove(name)
    assert bridge not in [link.name for link in links.list_links()]


def test_ipv6_pool_from_the_hosts_ula(svc: NetworkService) -> None:
    """Without an IPv6 subnet, dockerd 27+ hands out the next /64 of a ULA /48 derived from its host id."""
    n1, n2 = (f"pst-v6a-{secrets.token_hex(2)}" for _ in range(2))
    one = svc.create_network(n1, enable_ipv6=True)
    two = svc.create_network(n2, enable_ipv6=True)
    base = ipam.ula_base(svc.host_id)
    assert base.prefixlen == 48 and base.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    v6 = [next(c for c in n["IPAM"]["Config"] if ":" in c["Subnet"]) for n in (one, two)]
    subnets = [ipaddress.IPv6Network(c["Subnet"]) for c in v6]
    assert all(s.prefixlen == 64 and s.subnet_of(base) for s in subnets)
    assert subnets[0] != subnets[1]
    assert v6[0]["Gateway"] == str(subnets[0].network_address + 1)
    # IPv4 first, both as allocated (no user config)
    assert ":" not in one["IPAM"]["Config"][0]["Subnet"] and len(one["IPAM"]["Config"]) == 2
    # an overlapping configured subnet is refused as dockerd does
    with pytest.raises(Forbidden, match="Pool overlaps with other one on this address space"):
        svc.create_network(f"pst-v6b-{secrets.token_hex(2)}", enable_ipv6=True, subnet6=str(subnets[0]))
    svc.remove(n1)
    svc.remove(n2)


def test_ipv6_requested_address_and_checks(svc: NetworkService) -> None:
    name = f"pst-v6r-{secrets.token_hex(2)}"
    sub6 = ula64()
    prefix = str(ipaddress.IPv6Network(sub6).network_address)
    svc.create_network(name, enable_ipv6=True, subnet6=sub6, ip_range6=f"{prefix}/96", gateway6=f"{prefix}ffff")
    a = svc.create_sandbox(cid(), name="a", hostname="a", network_mode=name,
                           endpoints={name: {"IPAMConfig": {"IPv6Address": f"{prefix}f00d"}}})
    ep = a.network_settings["Networks"][name]
    assert ep["GlobalIPv6Address"] == f"{prefix}f00d"
    assert ep["IPv6Gateway"] == f"{prefix}ffff"
    assert ep["IPAMConfig"] == {"IPv6Address": f"{prefix}f00d"}
    with pytest.raises(InvalidArgument, match=f"^{re.escape('invalid IPv6 address: 10.0.0.1')}$"):
        svc.create_sandbox(cid(), name="b", hostname="b", network_mode=name,
                           endpoints={name: {"IPAMConfig": {"IPv6Address": "10.0.0.1"}}})
    outside = re.escape("no configured subnet or ip-range contain the IP address fd01::5")
    with pytest.raises(InvalidArgument, match=outside):
        svc.create_sandbox(cid(), name="b", hostname="b", network_mode=name,
                           endpoints={name: {"IPAMConfig": {"IPv6Address": "fd01::5"}}})
    with pytest.raises(InvalidArgument, match="user specified IP address is supported on user defined networks only"):
        svc.create_sandbox(cid(), name="b", hostname="b",
                           endpoints={"bridge": {"IPAMConfig": {"IPv6Address": "fd01::5"}}})
    svc.remove_sandbox(a.container_id)

    # an IPv6 pool on a network without IPv6: kept and shown as dockerd does, unchecked, no address handed out
    off = f"pst-v6o-{secrets.token_hex(2)}"
    net = svc.create_network(off, subnet6="2001:db8:1::/64", gateway6="2001:db8:1::ffff")
    assert net["EnableIPv6"] is False
    assert net["IPAM"]["Config"][0] == {"Subnet": "2001:db8:1::/64", "Gateway": "2001:db8:1::ffff"}
    b = svc.create_sandbox(cid(), name="b", hostname="b", network_mode=off,
                           endpoints={off: {"IPAMConfig": {"IPv6Address": "2001:db8:1::f00d"}}})
    ep = b.network_settings["Networks"][off]
    assert ep["IPAMConfig"] == {"IPv6Address": "2001:db8:1::f00d"} and ep["GlobalIPv6Address"] == ""
    assert addrs6(b.netns_path, "eth0") == []
    svc.remove_sandbox(b.container_id)
    # dockerd's ValidateIPAM texts for the IPv6 pool of an IPv6 network
    with pytest.raises(InvalidArgument, match=re.escape("invalid gateway 10.1.1.1: parent subnet is an IPv6 block")):
        svc.create_network(f"pst-v6x-{secrets.token_hex(2)}", enable_ipv6=True, subnet6=ula64(),
                           gateway6="10.1.1.1")
    for n in (name, off):
        svc.remove(n)


def test_ipv6_internal_network_has_no_way_out(svc: NetworkService) -> None:
    name = f"pst-v6i-{secrets.token_hex(2)}"
    sub6 = ula64()
    net = svc.create_network(name, enable_ipv6=True, subnet6=sub6, internal=True)
    a = svc.create_sandbox(cid(), name="a", hostname="a", network_mode=name)
    b = svc.create_sandbox(cid(), name="b", hostname="b", network_mode=name)
    ep = a.network_settings["Networks"][name]
    assert ep["IPv6Gateway"] == "" and ep["GlobalIPv6Address"]
    assert [r for r in routes6(a.netns_path) if r["dst"] == "default"] == []
    sh(a.netns_path, "busybox", "ping", "-6", "-c", "1", "-W", "2", v6_of(b, name))  # inside the bridge: fine
    # the ip6 table cuts the bridge off: nothing forwarded in or out, no masquerade
    bridge = svc.networks[net["Id"]]["_bridge"]
    text = sh(None, "nft", "list", "table", "ip6", svc.table).stdout
    assert f'iifname "{bridge}" oifname != "{bridge}" drop' in text
    assert f'oifname "{bridge}" iifname != "{bridge}" drop' in text
    assert "masquerade" not in text
    for sb in (a, b):
        svc.remove_sandbox(sb.container_id)
    svc.remove(name)
    # no IPv6 network left: no ip6 table either
    assert sh(None, "nft", "list", "table", "ip6", svc.table, check=False).returncode != 0


@contextlib.contextmanager
def standin_host(ipv6_off: bool = True) -> Iterator[Path]:
    """A namespace standing in for a host; `ipv6_off`: one with IPv6 disabled by sysctl (all and default
    disable_ipv6=1)."""
    d = Path(tempfile.mkdtemp(prefix="portside-test-v6host-"))
    ns = d / f"pst-v6host-{secrets.token_hex(3)}"
    nsutil.create_netns(ns)
    try:
        for key in ("all", "default") if ipv6_off else ():
            sh(ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1")
        yield ns
    finally:
        nsutil.remove_netns(ns)
        shutil.rmtree(d, ignore_errors=True)


_OFF_HOST_SCRIPT = """
import json, secrets, sys
from pathlib import Path
from engine.net import links
from engine.net.service import NetworkService
kw = json.loads(sys.argv[1])
kw = {**kw, "data_root": Path(kw["data_root"]), "exec_root": Path(kw["exec_root"]),
      "host_resolv_conf": Path(kw["host_resolv_conf"]), "dns_upstreams": [tuple(u) for u in kw["dns_upstreams"]]}
svc = NetworkService(**kw)
out = {}
try:
    svc.start()
    net = svc.create_network("pst-v6d", enable_ipv6=True, subnet6=sys.argv[2])
    a = svc.create_sandbox(secrets.token_hex(32), name="a", hostname="a", network_mode="pst-v6d")
    b = svc.create_sandbox(secrets.token_hex(32), name="b", hostname="b", network_mode="pst-v6d")
    br = svc.networks[net["Id"]]["_bridge"]
    out["sysctls"] = {k: links.get_sysctl(f"net/ipv6/conf/{k}/disable_ipv6") for k in ("all", "default", "lo", br)}
    out["bridge"] = br
    out["a"] = str(a.netns_path)
    out["b_ip"] = b.network_settings["Networks"]["pst-v6d"]["GlobalIPv6Address"]
    import subprocess
    r = subprocess.run(["nsenter", f"--net={a.netns_path}", "busybox", "ping", "-6", "-c", "1", "-W", "2",
                        out["b_ip"]], capture_output=True, text=True)
    out["ping"] = r.returncode
    out["addrs"] = subprocess.run(["ip", "-6", "-o", "addr", "show", "dev", br, "scope", "global"],
                                  capture_output=True, text=True).stdout
finally:
    svc.destroy()
print(json.dumps(out))
"""


def in_standin_host(host: Path, script: str, *args: str, **service: object) -> dict[str, Any]:
    """Run `script` (given the service's keyword arguments as JSON, then `args`) in a child process inside the
    namespace `host` that plays the host, with a mount namespace of its own whose /sys shows that namespace's
    links; its last output line is JSON. Its engine's state lives in a temp root, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="portside-test-net-"))
    try:
        kw = {**service_kwargs(root, secrets.token_hex(3)), "socket_hook": False, **service}  # BPF hooks: host's
        kw_json = json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()})
        repo = Path(__file__).resolve().parents[2]
        py = repo / ".venv" / "bin" / "python"
        r = sh(None, "nsenter", f"--net={host}", "unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t sysfs sysfs /sys && cd "$0" && exec "$@"', str(repo), str(py), "-c", script,
               kw_json, *args, timeout=45)
        out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
        assert leftovers(str(kw["nft_table"])) == []  # nothing of it landed on the real host
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_ipv6_network_on_a_host_with_ipv6_disabled() -> None:
    """IPv6 is switched on for the network's bridge alone (dockerd's per-interface disable_ipv6=0): the host's
    defaults stay off, and containers still talk IPv6 over the bridge. The engine runs inside a namespace that
    plays the host, so the real host's settings are never touched."""
    with standin_host() as host:
        out = in_standin_host(host, _OFF_HOST_SCRIPT, ula64())
    br = out["bridge"]
    assert out["sysctls"] == {"all": "1", "default": "1", "lo": "1", br: "0"}
    assert "nodad" in out["addrs"] and "/64" in out["addrs"]
    assert out["ping"] == 0


_ROUTED_SCRIPT = """
import json, secrets, subprocess, sys, time
from pathlib import Path
from engine.net import links, nsutil
from engine.net.service import NetworkService
kw = json.loads(sys.argv[1])
kw = {**kw, "data_root": Path(kw["data_root"]), "exec_root": Path(kw["exec_root"]),
      "host_resolv_conf": Path(kw["host_resolv_conf"]), "dns_upstreams": [tuple(u) for u in kw["dns_upstreams"]]}
peer = Path(kw["data_root"]).parent / "peer"


def sh(ns, *cmd):
    return subprocess.run(["nsenter", f"--net={ns}", *cmd] if ns else list(cmd), capture_output=True, text=True,
                          timeout=20)


def ping(ns, ip):
    return sh(ns, "busybox", "ping", "-6", "-c", "1", "-W", "2", ip).returncode


svc = NetworkService(**kw)
out = {}
server = None
try:
    svc.start()
    out["forwarding_before"] = links.get_sysctl("net/ipv6/conf/all/forwarding")
    # a machine beyond the host, on a link of its own: fd99::2 behind the host's fd99::1
    nsutil.create_netns(peer)
    sh(None, "ip", "link", "add", "pstpv6", "type", "veth", "peer", "name", "eth0", "netns", str(peer))
    sh(None, "ip", "addr", "add", "fd99::1/64", "dev", "pstpv6", "nodad")
    sh(None, "ip", "link", "set", "pstpv6", "up")
    sh(peer, "ip", "link", "set", "eth0", "up")
    sh(peer, "ip", "addr", "add", "fd99::2/64", "dev", "eth0", "nodad")
    nets = {}
    for n, internal in (("pst-v6e1", False), ("pst-v6e2", False), ("pst-v6ei", True)):
        svc.create_network(n, enable_ipv6=True, internal=internal)
        nets[n] = svc.create_sandbox(secrets.token_hex(32), name=n, hostname=n, network_mode=n)
    v6 = {n: sb.network_settings["Networks"][n]["GlobalIPv6Address"] for n, sb in nets.items()}
    out["forwarding"] = links.get_sysctl("net/ipv6/conf/all/forwarding")
    # who the peer sees: the address a connection comes from
    server = subprocess.Popen(["nsenter", f"--net={peer}", sys.executable, "-c",
        "import socket;s=socket.socket(socket.AF_INET6);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
        "s.bind(('::',9000));s.listen();s.settimeout(5);print('up',flush=True);"
        "print(s.accept()[1][0],flush=True)"],  # nothing after 5 s: no connection came
        stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "up"
    e1 = nets["pst-v6e1"].netns_path
    sh(e1, "busybox", "nc", "-w", "2", "fd99::2", "9000")
    out["peer_saw"] = server.stdout.readline().strip()
    out["out_e1"] = ping(e1, "fd99::2")
    out["out_internal"] = ping(nets["pst-v6ei"].netns_path, "fd99::2")
    out["e1_to_e2"] = ping(e1, v6["pst-v6e2"])
    out["e1_to_internal"] = ping(e1, v6["pst-v6ei"])
    # the same paths without the ip6 table: the kernel would route them, so the table is what stops them
    sh(None, "nft", "delete", "table", "ip6", kw["nft_table"])
    out["e1_to_e2_unfiltered"] = ping(e1, v6["pst-v6e2"])
finally:
    if server is not None:
        server.kill()
    svc.destroy()
    sh(None, "ip", "link", "del", "pstpv6")
    if peer.exists():
        nsutil.remove_netns(peer)
print(json.dumps(out))
"""


def test_ipv6_egress_is_masqueraded_and_networks_are_isolated() -> None:
    """With forwarding (enable_ip_forward, which sets net.ipv6.conf.all.forwarding as dockerd does) a container
    reaches a machine beyond the host by IPv6, masqueraded to the host's address; an --internal network does
    not, and neither reaches another network's container. In a namespace playing the host."""
    with standin_host(ipv6_off=False) as host:
        out = in_standin_host(host, _ROUTED_SCRIPT, enable_ip_forward=True)
    assert (out["forwarding_before"], out["forwarding"]) == ("0", "1"), out  # set by the first IPv6 network
    assert out["peer_saw"] == "fd99::1"  # the host's address on the peer's link, not the container's
    assert out["out_e1"] == 0
    assert out["out_internal"] != 0
    assert out["e1_to_e2"] != 0 and out["e1_to_internal"] != 0
    assert out["e1_to_e2_unfiltered"] == 0


def test_ipv6_bridge_and_veth_come_back_after_a_restart(svc_factory: tuple[Path, str, dict[str, object]]) -> None:
    """start() reconciles IPv6 as it does IPv4: a lost bridge is remade with its IPv6 gateway, a lost veth with
    the container's IPv6 address and route, and the ip6 table is rendered again."""
    _, _, kw = svc_factory
    s1 = NetworkService(**kw)  # type: ignore[arg-type]
    s1.start()
    name, sub6 = f"pst-v6re-{secrets.token_hex(2)}", ula64()
    net = s1.create_network(name, enable_ipv6=True, subnet6=sub6)
    bridge = s1.networks[net["Id"]]["_bridge"]
    a = s1.create_sandbox(cid(), name="a", hostname="a", network_mode=name)
    b = s1.create_sandbox(cid(), name="b", hostname="b", network_mode=name)
    s1.close()
    links.delete_link(bridge)  # the bridge is lost (its ports stay, detached)
    links.delete_link("eth0", a.netns_path)  # and a's interface too (the pair goes)
    s2 = NetworkService(**kw)  # type: ignore[arg-type]
    s2.start(running=[a.container_id, b.container_id])
    try:
        gw6 = str(ipaddress.IPv6Network(sub6).network_address + 1)
        assert f"{gw6}/64" in addrs6(None, bridge)
        assert addrs6(a.netns_path, "eth0") == [f"{v6_of(a, name)}/64"]
        assert [r["gateway"] for r in routes6(a.netns_path) if r["dst"] == "default"] == [gw6]
        sh(a.netns_path, "busybox", "ping", "-6", "-c", "1", "-W", "2", v6_of(b, name))
        assert s2.inspect(name)["Containers"][b.container_id]["IPv6Address"] == f"{v6_of(b, name)}/64"
        assert sh(None, "nft", "list", "table", "ip6", s2.table, check=False).returncode == 0
    finally:
        for sb in (a, b):
            s2.remove_sandbox(sb.container_id)
        s2.close()


def test_ipv6_from_a_config_only_network(svc: NetworkService) -> None:
    """A config-only network holds the IPv6 pool and flag; a --config-from network takes both (libnetwork's
    applyConfigurationTo) and hands out addresses from that pool."""
    cfg_name, name, sub6 = f"pst-v6cfg-{secrets.token_hex(2)}", f"pst-v6cf-{secrets.token_hex(2)}", ula64()
    held = svc.create_network(cfg_name, config_only=True, enable_ipv6=True, subnet6=sub6)
    assert held["EnableIPv6"] is True and held["IPAM"]["Config"] == [{"Subnet": sub6}] and held["Driver"] == "null"
    net = svc.create_network(name, config_from=cfg_name)
    assert net["EnableIPv6"] is True and net["IPAM"]["Config"][0] == {"Subnet": sub6}
    a = svc.create_sandbox(cid(), name="a", hostname="a", network_mode=name)
    assert v6_of(a, name) == str(ipaddress.IPv6Network(sub6).network_address + 2)
    svc.remove_sandbox(a.container_id)
    svc.remove(name)
    svc.remove(cfg_name)
