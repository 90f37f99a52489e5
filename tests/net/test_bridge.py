"""Default bridge, veths, IPAM, files, egress NAT, modes none/host: real namespaces, real kernel."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import secrets
import socket
import time
from pathlib import Path

import pytest

from engine.errors import NotFound
from engine.net import ifconf, links, nft, nsutil
from engine.net.service import NetworkService

from .conftest import Peer, Procs, leftovers, settled_leftovers, sh, wait_port

pytestmark = pytest.mark.integration


def cid() -> str:
    return secrets.token_hex(32)


def test_start_makes_default_bridge_and_predefined_networks(svc: NetworkService) -> None:
    names = {n["Name"]: n for n in svc.list_networks()}
    assert set(names) >= {"bridge", "host", "none"}
    br = names["bridge"]
    assert br["Driver"] == "bridge" and br["Scope"] == "local" and br["IPAM"]["Driver"] == "default"
    cfg = br["IPAM"]["Config"][0]
    assert ipaddress.ip_address(cfg["Gateway"]) in ipaddress.ip_network(cfg["Subnet"])
    assert names["none"]["Driver"] == "null" and names["host"]["Driver"] == "host"
    assert not any(k.startswith("_") for k in br)
    r = sh(None, "ip", "-4", "-o", "addr", "show", "dev", svc.default_bridge)
    assert cfg["Gateway"] in r.stdout
    assert nft.table_exists(svc.table)
    assert svc.inspect(br["Id"][:10])["Name"] == "bridge"
    with pytest.raises(NotFound, match="network nope not found"):
        svc.inspect("nope")


def test_two_containers_reach_each_other_by_address(svc: NetworkService) -> None:
    a, b = cid(), cid()
    sa = svc.create_sandbox(a, name="alpha", hostname="alpha-host")
    sb = svc.create_sandbox(b, name="beta", hostname="beta-host")
    ipa = sa.network_settings["Networks"]["bridge"]["IPAddress"]
    ipb = sb.network_settings["Networks"]["bridge"]["IPAddress"]
    assert ipa != ipb
    assert sa.network_settings["IPAddress"] == ipa
    mac = sa.network_settings["Networks"]["bridge"]["MacAddress"]
    assert mac == "02:42:" + ":".join(f"{int(x):02x}" for x in ipa.split("."))
    assert sa.netns_path is not None and sb.netns_path is not None
    sh(sa.netns_path, "busybox", "ping", "-c", "1", "-W", "2", ipb)
    sh(sb.netns_path, "busybox", "ping", "-c", "1", "-W", "2", ipa)
    # inside: lo, eth0 with the address and MAC, a default route via the gateway
    r = sh(sa.netns_path, "ip", "-o", "-4", "addr")
    assert f"{ipa}/" in r.stdout and " lo " in r.stdout
    assert mac in sh(sa.netns_path, "ip", "link", "show", "eth0").stdout
    gw = sa.network_settings["Gateway"]
    assert f"default via {gw} dev eth0" in sh(sa.netns_path, "ip", "route").stdout
    # as dockerd's: the address with its broadcast, the prefix of the network
    prefix = ipaddress.ip_network(svc.inspect("bridge")["IPAM"]["Config"][0]["Subnet"]).prefixlen
    brd = ipaddress.ip_network(f"{ipa}/{prefix}", strict=False).broadcast_address
    assert f"inet {ipa}/{prefix} brd {brd} scope global eth0" in sh(sa.netns_path, "ip", "addr", "show", "eth0").stdout
    # files
    hosts = sa.hosts_path.read_text()
    assert "127.0.0.1\tlocalhost" in hosts and f"{ipa}\talpha-host" in hosts
    assert sa.hostname_path.read_text() == "alpha-host\n"
    resolv = sa.resolv_conf_path.read_text()
    assert "127.0.0.53" not in resolv and "nameserver 192.0.2.53" in resolv and "search example.test" in resolv
    # the network record lists both
    assert set(svc.inspect("bridge")["Containers"]) == {a, b}
    stats = svc.network_stats(a)
    assert stats["eth0"]["rx_packets"] > 0 and stats["eth0"]["tx_bytes"] > 0


def test_remove_sandbox_leaves_nothing(svc: NetworkService) -> None:
    c = cid()
    s = svc.create_sandbox(c, name="gone", hostname="gone")
    assert s.netns_path is not None and s.netns_path.exists()
    assert len(leftovers(svc.table)) == 2  # bridge + veth
    files_dir = s.hosts_path.parent
    svc.remove_sandbox(c)
    assert not s.netns_path.exists()
    # the veth goes with the netns (the kernel destroys both once unpinned and unused)
    assert settled_leftovers(svc.table, [svc.default_bridge]) == [svc.default_bridge]
    assert not files_dir.exists()
    assert svc.inspect("bridge")["Containers"] == {}
    svc.remove_sandbox(c)  # twice is fine


def test_none_mode_has_only_lo(svc: NetworkService) -> None:
    s = svc.create_sandbox(cid(), name="n", hostname="n", network_mode="none")
    assert s.netns_path is not None
    assert links.interface_names(s.netns_path) == ["lo"]
    assert "UP" in sh(s.netns_path, "ip", "link", "show", "lo").stdout
    assert list(s.network_settings["Networks"]) == ["none"]
    assert s.network_settings["IPAddress"] == ""


def test_host_mode_uses_the_host_namespace(svc: NetworkService) -> None:
    s = svc.create_sandbox(cid(), name="h", hostname="ignored", network_mode="host")
    assert s.netns_path is None
    assert s.hostname_path.read_text() == socket.gethostname() + "\n"
    assert "localhost" in s.hosts_path.read_text()
    assert s.resolv_conf_path.read_text() == svc.host_resolv_conf.read_text()
    assert list(s.network_settings["Networks"]) == ["host"]


def test_egress_is_masqueraded(svc: NetworkService, peer: Peer, procs: Procs) -> None:
    s = svc.create_sandbox(cid(), name="out", hostname="out")
    assert s.netns_path is not None
    # a server on "another machine" that prints who connected
    script = (
        "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
        "s.bind(('0.0.0.0',8111));s.listen();c,a=s.accept();print(a[0],flush=True);c.close()"
    )
    p = procs.start(peer.ns, "python3", "-c", script)
    wait_port(peer.ns, 8111)
    sh(s.netns_path, "busybox", "nc", "-w", "2", peer.peer_ip, "8111", check=False)
    out, _ = p.communicate(timeout=5)
    assert out.decode().strip() == peer.host_ip  # the container's address was masqueraded


def test_addresses_persist_across_restart(svc_factory: tuple[Path, str, dict[str, object]]) -> None:
    _, _, kw = svc_factory
    s1 = NetworkService(**kw)  # type: ignore[arg-type]
    s1.start()
    a = cid()
    ip_a = s1.create_sandbox(a, name="a", hostname="a").network_settings["IPAddress"]
    bridge_id = s1.inspect("bridge")["Id"]
    s1.close()
    s2 = NetworkService(**kw)  # type: ignore[arg-type]
    s2.start()
    try:
        assert s2.inspect("bridge")["Id"] == bridge_id
        assert s2.sandbox(a).network_settings["IPAddress"] == ip_a
        ip_b = s2.create_sandbox(cid(), name="b", hostname="b").network_settings["IPAddress"]
        assert ip_b != ip_a
        # restarting with `running` not naming a container removes its sandbox
        s2.close()
        s3 = NetworkService(**kw)  # type: ignore[arg-type]
        s3.start(running=[])
        assert s3.sandboxes == {}
        assert leftovers(s3.table) == [s3.default_bridge]
        assert not any(p for p in (Path(str(kw["exec_root"])) / "netns").iterdir())
        s3.close()
    finally:
        s2.close()


def test_netns_helpers_roundtrip(tmp_path: Path) -> None:
    p = tmp_path / "portside-test-ns"
    nsutil.create_netns(p)
    try:
        assert nsutil.is_netns(p)
        assert links.interface_names(p) == ["lo"]
    finally:
        nsutil.remove_netns(p)
    assert not p.exists() and not nsutil.is_netns(p)


def test_ifconf_sets_an_interface_up_as_netlink_would(tmp_path: Path) -> None:
    """engine/net/ifconf.py's ioctls, in a namespace of the test's own with a veth pair in it."""
    p = tmp_path / "portside-test-ifconf"
    nsutil.create_netns(p)
    try:
        sh(p, "ip", "link", "add", "pstt0", "type", "veth", "peer", "name", "pstt1")  # both ends in it

        def inside(ifname: str, gateway: str | None) -> None:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            try:
                nsutil.setns(fd)
            finally:
                os.close(fd)
            ifconf.configure(ifname, "10.213.77.2", 24, gateway)

        nsutil._in_thread(lambda: inside("pstt0", "10.213.77.1"))
        addr = sh(p, "ip", "addr", "show", "pstt0").stdout
        assert "inet 10.213.77.2/24 brd 10.213.77.255 scope global pstt0" in addr and ",UP" in addr
        assert "default via 10.213.77.1 dev pstt0" in sh(p, "ip", "route").stdout
        assert "UP" in sh(p, "ip", "link", "show", "lo").stdout
        with pytest.raises(OSError) as missing:  # no such interface: the kernel's ENODEV, nothing made
            nsutil._in_thread(lambda: inside("pstt9", None))
        assert missing.value.errno == errno.ENODEV
        with pytest.raises(OSError, match="invalid interface name"):
            nsutil._in_thread(lambda: inside("x" * 16, None))
    finally:
        nsutil.remove_netns(p)


def test_a_removed_sandboxs_veth_goes_with_its_netns(
    svc_factory: tuple[Path, str, dict[str, object]], procs: Procs
) -> None:
    _, _, kw = svc_factory
    svc = NetworkService(**kw)  # type: ignore[arg-type]
    svc.start()
    try:
        held, freed = cid(), cid()
        a = svc.create_sandbox(held, name="held", hostname="held")
        b = svc.create_sandbox(freed, name="freed", hostname="freed")
        assert a.netns_path is not None and b.netns_path is not None
        holder = procs.start(a.netns_path, "sleep", "60")  # something still in the netns, as a leaked process
        wait_in_netns(holder.pid, a.netns_path)
        veth_a = [svc.sandboxes[held]["Endpoints"]["bridge"]["HostIfname"]]
        svc.remove_sandbox(freed)
        svc.remove_sandbox(held)
        # the unused netns is destroyed by the kernel with its veth pair; the held one keeps its veth for now
        assert settled_leftovers(svc.table, [svc.default_bridge, *veth_a]) == sorted([svc.default_bridge, *veth_a])
    finally:
        svc.close()
    # a restart's reconcile deletes a veth no sandbox owns, whatever holds its netns
    svc = NetworkService(**kw)  # type: ignore[arg-type]
    svc.start()
    try:
        assert leftovers(svc.table) == [svc.default_bridge]
    finally:
        svc.close()


def wait_in_netns(pid: int, netns: Path) -> None:
    """Until the process has joined the netns (nsenter execs it after setns)."""
    want = os.stat(netns).st_ino
    for _ in range(250):
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino == want and "sleep" in Path(f"/proc/{pid}/comm").read_text():
                return
        time.sleep(0.02)
    raise AssertionError("the holder did not join the netns")
