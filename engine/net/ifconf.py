"""A container interface's IPv4 set-up by ioctl, from a thread inside its network namespace.

Bringing a link up, giving it its address and the default route are three ioctls on a datagram socket of the
namespace the calling thread is in; the same through pyroute2 costs a netlink socket (~0.7 ms to open), a link
look-up and a request with its parsed reply per step, ~2.3 ms of every container start with a network. The
results are the kernel's usual ones: the address gets its broadcast (as `ip addr add ... brd +` and dockerd's
netlink library give it) and the route is `default via GATEWAY dev IFNAME`. IPv6 stays with netlink.
"""

from __future__ import annotations

import fcntl
import socket
import struct

from engine.exec import linux

SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCADDRT = 0x890B
RTF_UP = 0x1
RTF_GATEWAY = 0x2

_IFREQ_ADDR = struct.Struct("16sHH4s16x")  # struct ifreq: the name, then ifr_addr, a sockaddr_in (family, port,
# address, zero) in its 24-byte union
# struct rtentry (LP64 and ILP32 alike, native alignment): pad1, dst, gateway, genmask, flags, pad2, pad3, pad4,
# metric, dev, mtu, window, irtt
_RTENTRY = struct.Struct("@L16s16s16sHhLPhPLLH")


def _sockaddr_in(address: str) -> bytes:
    return struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(address))


def _name(ifname: str) -> bytes:
    raw = ifname.encode()
    if not raw or len(raw) > 15:
        raise OSError(f"invalid interface name {ifname!r}")
    return raw


def link_up(sock: socket.socket, ifname: str) -> None:
    linux.link_up(sock.fileno(), _name(ifname))


def set_address(sock: socket.socket, ifname: str, address: str, prefixlen: int) -> None:
    """The interface's IPv4 address and prefix (SIOCSIFADDR takes the address's class; the mask follows)."""
    name = _name(ifname)
    mask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF if prefixlen else 0))
    fcntl.ioctl(sock.fileno(), SIOCSIFADDR, _IFREQ_ADDR.pack(name, socket.AF_INET, 0, socket.inet_aton(address)))
    fcntl.ioctl(sock.fileno(), SIOCSIFNETMASK, _IFREQ_ADDR.pack(name, socket.AF_INET, 0, socket.inet_aton(mask)))


def add_default_route(sock: socket.socket, gateway: str) -> None:
    """`default via GATEWAY`: the kernel picks the interface whose subnet holds the gateway."""
    any_addr = _sockaddr_in("0.0.0.0")
    entry = _RTENTRY.pack(0, any_addr, _sockaddr_in(gateway), any_addr, RTF_UP | RTF_GATEWAY, 0, 0, 0, 0, 0, 0, 0, 0)
    fcntl.ioctl(sock.fileno(), SIOCADDRT, entry)


def configure(ifname: str, address: str, prefixlen: int, gateway: str | None) -> None:
    """In the calling thread's namespace: `lo` and `ifname` up, `ifname` with its address, and the default route
    via `gateway` when given. The link comes up after its address, so it is never up without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        link_up(sock, "lo")
        set_address(sock, ifname, address, prefixlen)
        link_up(sock, ifname)
        if gateway:
            add_default_route(sock, gateway)


loopback_up = linux.loopback_up  # `lo` up in the calling thread's namespace (all a `--network none` one gets)
