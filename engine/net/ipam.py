"""Address management: choosing subnets that overlap nothing, and handing out addresses inside them.

The allocation state lives in the network record (its Containers map plus a cursor), which is written
atomically, so an address is never handed out twice, not even across engine restarts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from engine.errors import Conflict, Forbidden, InvalidArgument

Net = ipaddress.IPv4Network

# Docker's default address pools: 172.17-31.0.0/16, then 192.168.0.0/16 cut into /20s.
DEFAULT_POOLS: list[tuple[str, int]] = [("172.17.0.0/16", 16), ("172.18.0.0/16", 16), ("172.19.0.0/16", 16)]
DEFAULT_POOLS += [(f"172.{n}.0.0/16", 16) for n in range(20, 32)]
DEFAULT_POOLS += [("192.168.0.0/16", 20)]


def candidate_subnets() -> Iterable[Net]:
    for pool, size in DEFAULT_POOLS:
        yield from ipaddress.ip_network(pool).subnets(new_prefix=size)  # type: ignore[misc]


def choose_subnet(in_use: Iterable[Net], avoid_addresses: Iterable[str] = ()) -> Net:
    """The first pool subnet that overlaps no host route, no existing network and no given address."""
    used = list(in_use)
    avoid = [ipaddress.ip_address(a) for a in avoid_addresses]
    for net in candidate_subnets():
        if any(net.overlaps(u) for u in used):
            continue
        if any(a in net for a in avoid):
            continue
        return net
    raise Forbidden("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to "
                    "the network")


def parse_subnet(text: str) -> Net:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid CIDR address: {text}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidArgument("IPv6 networks are not supported by portside yet")
    return net


def check_pool(subnet: Net, ip_range: str | None, gateway: str | None) -> tuple[Net, str]:
    """Validate a user's IPAM config as Docker does; return (range, gateway)."""
    rng = subnet
    if ip_range:
        rng = parse_subnet(ip_range)
        if not rng.subnet_of(subnet):
            raise InvalidArgument(f"Invalid Address: {ip_range} is not within {subnet}")
            # dockerd: "ip-range ... should be within the subnet"
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise InvalidArgument(f"invalid gateway address {gateway}") from None
        if gw not in subnet:
            raise InvalidArgument(f"no matching subnet for gateway {gateway}")
        return rng, str(gw)
    return rng, str(next(subnet.hosts()))


def mac_for(ip: str) -> str:
    """Docker's MAC address for an IPv4 address: 02:42 followed by the four bytes of the address."""
    b = ipaddress.ip_address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


def allocate(subnet: Net, rng: Net, taken: set[str], cursor: str | None, requested: str | None = None) -> str:
    """Hand out an address: the requested one if free, else the next free one after the cursor (wrapping),
    so a just-released address is not reused at once (as Docker's allocator does)."""
    if requested:
        try:
            ip = ipaddress.ip_address(requested)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {requested}") from None
        if ip not in subnet or ip == subnet.network_address or ip == subnet.broadcast_address:
            raise InvalidArgument(f"no available IPv4 addresses on this network's address pools: {requested} "
                                  f"is not in {subnet}")
        if str(ip) in taken:
            raise Conflict("Address already in use")
        return str(ip)
    lo = max(int(rng.network_address), int(subnet.network_address) + 1)
    hi = min(int(rng.broadcast_address), int(subnet.broadcast_address) - 1)
    if hi < lo:
        raise Forbidden("no available IPv4 addresses on this network's address pools")
    start = lo
    if cursor:
        c = int(ipaddress.ip_address(cursor)) + 1
        if lo <= c <= hi:
            start = c
    n = hi - lo + 1
    for k in range(n):
        cand = str(ipaddress.IPv4Address(lo + (start - lo + k) % n))
        if cand not in taken:
            return cand
    raise Forbidden("no available IPv4 addresses on this network's address pools")
