"""Links, addresses and routes through pyroute2 (netlink), on the host or inside a pinned netns.

pyroute2 0.9 opens its netlink socket per thread, lazily, in whatever netns that thread is in. So every call
here runs in a fresh thread that first joins the wanted namespace (or stays in the host's), opens its own
IPRoute, does its work and closes it. That also keeps pyroute2's private event loop away from the caller's
asyncio loop.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from engine.net import ifconf, nsutil

T = TypeVar("T")


def with_ipr(netns: Path | None, fn: Callable[[IPRoute], T]) -> T:
    """Run fn(ipr) with an IPRoute bound to `netns` (None: the host's namespace), in a thread of its own."""

    def body() -> T:
        with IPRoute() as ipr:
            return fn(ipr)

    if netns is None:
        return nsutil._in_thread(body)
    return nsutil.run_in_netns(netns, body)


def _index(name: str) -> int | None:
    """The index of link `name` in the calling thread's namespace (that of the IPRoute it works with: each is
    opened by the thread that uses it), None when there is none. By ioctl (SIOCGIFINDEX): pyroute2 takes ~0.6 ms
    to parse RTM_GETLINK's reply (every attribute and counter of the link), twice per container."""
    try:
        return socket.if_nametoindex(name)
    except OSError:  # "no interface with this name" (and names the kernel cannot hold)
        return None


def set_sysctl(path: str, value: str) -> None:
    with open(f"/proc/sys/{path}", "w") as f:
        f.write(value)


def get_sysctl(path: str) -> str:
    with open(f"/proc/sys/{path}") as f:
        return f.read().strip()


def ensure_bridge(name: str, gateway: str, prefixlen: int, mtu: int, alias: str) -> None:
    """Create (or repair) a bridge with the gateway address, up. Idempotent."""

    def work(ipr: IPRoute) -> None:
        idx = _index(name)
        if idx is None:
            ipr.link("add", ifname=name, kind="bridge")
            idx = _index(name)
            assert idx is not None
        ipr.link("set", index=idx, mtu=mtu, ifalias=alias)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
        if (gateway, prefixlen) not in have:
            for addr, plen in have:
                ipr.addr("del", index=idx, address=addr, prefixlen=plen)
            ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")

    with_ipr(None, work)
    # 127.0.0.1:PORT published ports are DNATed to the bridge: the kernel must route loopback sources there.
    set_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")


IFA_F_NODAD = 0x02  # linux/if_addr.h: no duplicate address detection


def _enable_ipv6(ifname: str) -> None:
    """IPv6 on for this interface only: a host (or a namespace) with disable_ipv6=1 by default keeps it off on
    every other one. Writes the sysctl of the calling thread's network namespace."""
    path = f"net/ipv6/conf/{ifname}/disable_ipv6"
    if get_sysctl(path) != "0":
        set_sysctl(path, "0")


def ensure_bridge_v6(name: str, gateway: str, prefixlen: int) -> None:
    """The bridge's IPv6 gateway address (IPv6 switched on for the bridge alone). Added without duplicate address
    detection, as libnetwork does: the address is usable at once rather than tentative for a second or two.
    Idempotent; another global IPv6 address (a changed pool) is replaced."""
    _enable_ipv6(name)

    def work(ipr: IPRoute) -> None:
        idx = _index(name)
        if idx is None:
            raise OSError(errno.ENODEV, f"bridge {name} not found")
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=socket.AF_INET6)
                if a["scope"] == 0}  # global scope: the kernel's own fe80:: address stays
        want = (str(ipaddress.IPv6Address(gateway)), prefixlen)
        if want not in have:
            for addr, plen in have:
                ipr.addr("del", index=idx, address=addr, prefixlen=plen, family=socket.AF_INET6)
            ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen, family=socket.AF_INET6,
                     flags=IFA_F_NODAD)

    with_ipr(None, work)


def delete_link(name: str, netns: Path | None = None) -> bool:
    """Delete a link by name; False if it was not there."""

    def work(ipr: IPRoute) -> bool:
        idx = _index(name)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise
            return False
        return True

    return with_ipr(netns, work)


@dataclass
class LinkInfo:
    name: str
    kind: str
    alias: str
    master: int | None
    index: int


def list_links(netns: Path | None = None) -> list[LinkInfo]:
    def work(ipr: IPRoute) -> list[LinkInfo]:
        out = []
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else ""
            out.append(
                LinkInfo(
                    name=link.get_attr("IFLA_IFNAME"),
                    kind=kind or "",
                    alias=link.get_attr("IFLA_IFALIAS") or "",
                    master=link.get_attr("IFLA_MASTER"),
                    index=link["index"],
                )
            )
        return out

    return with_ipr(netns, work)


def host_routes() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination the host routes to, except the default route (Docker ignores it too)."""

    def work(ipr: IPRoute) -> list[ipaddress.IPv4Network]:
        nets = []
        for r in ipr.get_routes(family=2, table=254):
            dst = r.get_attr("RTA_DST")
            if dst is None or r["dst_len"] == 0:
                continue
            nets.append(ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False))
        return nets

    return with_ipr(None, work)


def create_endpoint(
    *,
    bridge: str,
    host_ifname: str,
    netns: Path,
    ifname: str,
    address: str,
    prefixlen: int,
    gateway: str | None,
    mac: str,
    mtu: int,
    alias: str,
    default_route: bool,
    address6: str | None = None,
    prefixlen6: int = 0,
    gateway6: str | None = None,
) -> None:
    """A veth pair: `host_ifname` on the bridge in the host, `ifname` with address, MAC and routes in `netns`;
    `address6` also gives it that IPv6 address (and a default route via `gateway6` with `default_route`).

    One thread does it all: the host's part with an IPRoute opened in the host's namespace, then it joins `netns`
    and configures the peer with a second one (a thread and an IPRoute per step cost ~2-4 ms each on this path).
    On any failure the host end is deleted (which takes the peer with it), so nothing is left half-made.
    """
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)

    def host(ipr: IPRoute) -> None:
        br = _index(bridge)
        if br is None:
            raise OSError(errno.ENODEV, f"bridge {bridge} not found")
        # one request makes the pair, puts the host end on the bridge and up, the peer in the netns
        ipr.link(
            "add",
            ifname=host_ifname,
            kind="veth",
            master=br,
            mtu=mtu,
            state="up",
            peer={"ifname": ifname, "net_ns_fd": fd, "address": mac, "mtu": mtu},
        )
        made.append(True)
        ipr.link("set", ifname=host_ifname, ifalias=alias)

    def inside(ipr: IPRoute) -> None:
        idx = _index(ifname)
        if idx is None:
            raise OSError(errno.ENODEV, f"{ifname} not found in {netns}")
        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")
        if default_route and gateway:
            ipr.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=idx)
        if address6:
            ipr.addr("add", index=idx, address=address6, prefixlen=prefixlen6, family=socket.AF_INET6,
                     flags=IFA_F_NODAD)
            if default_route and gateway6:
                ipr.route("replace", dst="::/0", gateway=gateway6, oif=idx, family=socket.AF_INET6)

    def both() -> None:
        with IPRoute() as ipr:
            host(ipr)
        _hairpin(host_ifname)
        nsutil.setns(fd)  # this thread only; it ends with the call
        if not address6:
            # IPv4 only: a few ioctls rather than a second netlink socket and a request per step (ifconf.py)
            ifconf.configure(ifname, address, prefixlen, gateway if default_route else None)
            return
        # the namespace's own sysctl (this thread is in it now); before the link is up, so it is never up
        # without its address
        _enable_ipv6(ifname)
        ifconf.loopback_up()
        with IPRoute() as ipr:
            inside(ipr)

    made: list[bool] = []
    try:
        nsutil._in_thread(both)
    except BaseException:
        if made:
            delete_link(host_ifname)
        raise
    finally:
        os.close(fd)


def _hairpin(ifname: str) -> None:
    # A container reaching its own published port: the DNATed packet leaves the bridge by the port it came
    # in on, which a bridge only allows in hairpin mode (dockerd sets it too when it has no userland proxy).
    with open(f"/sys/class/net/{ifname}/brport/hairpin_mode", "w") as f:
        f.write("1")


def attach_to_bridge(ifname: str, bridge: str) -> None:
    """Put an existing host-side veth back on its bridge (after the bridge was lost and recreated)."""

    def work(ipr: IPRoute) -> None:
        br, idx = _index(bridge), _index(ifname)
        if br is None or idx is None:
            raise OSError(errno.ENODEV, f"{bridge} or {ifname} not found")
        ipr.link("set", index=idx, master=br, state="up")

    with_ipr(None, work)
    _hairpin(ifname)


def link_stats(netns: Path | None) -> dict[str, dict[str, int]]:
    """Counters per interface (lo excluded) in Docker's stats `networks` shape."""

    def work(ipr: IPRoute) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name == "lo":
                continue
            s: Any = link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS") or {}
            out[name] = {
                "rx_bytes": s.get("rx_bytes", 0),
                "rx_packets": s.get("rx_packets", 0),
                "rx_errors": s.get("rx_errors", 0),
                "rx_dropped": s.get("rx_dropped", 0),
                "tx_bytes": s.get("tx_bytes", 0),
                "tx_packets": s.get("tx_packets", 0),
                "tx_errors": s.get("tx_errors", 0),
                "tx_dropped": s.get("tx_dropped", 0),
            }
        return out

    return with_ipr(netns, work)


def interface_names(netns: Path | None) -> list[str]:
    return [link.name for link in list_links(netns)]
