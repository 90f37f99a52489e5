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


def check_subnet(text: str) -> Net:
    """A user's subnet, with dockerd's texts for a malformed one or one with host bits set."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid network config:\ninvalid subnet {text}: invalid CIDR block notation") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidArgument("IPv6 networks are not supported by portside yet")
    if str(net) != text.strip():
        raise InvalidArgument(f"invalid network config:\ninvalid subnet {text}: it should be {net}")
    return net


def _address_error(address: str, subnet: Net) -> str | None:
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return "invalid address"
    if not isinstance(addr, ipaddress.IPv4Address):
        return "parent subnet is an IPv4 block"
    if addr not in subnet:
        return f"parent subnet {subnet} doesn't contain this address"
    return None


def _range_errors(ip_range: str, subnet: Net) -> list[str]:
    try:
        rng = ipaddress.ip_network(ip_range, strict=False)
    except ValueError:
        return [f"invalid ip-range {ip_range}: invalid CIDR block notation"]
    if not isinstance(rng, ipaddress.IPv4Network):
        return [f"invalid ip-range {ip_range}: parent subnet is an IPv4 block"]
    errs = []
    if rng.prefixlen < subnet.prefixlen:
        errs.append(f"invalid ip-range {ip_range}: CIDR block is bigger than its parent subnet {subnet}")
    if str(rng) != ip_range.strip():
        errs.append(f"invalid ip-range {ip_range}: it should be {rng}")
    if not rng.overlaps(subnet):
        errs.append(f"invalid ip-range {ip_range}: parent subnet {subnet} doesn't contain ip-range")
    return errs


def _raise_joined(errs: list[str]) -> None:
    # dockerd's ValidateIPAM: one error alone, else "* a\n* b", under "invalid network config:"
    if errs:
        body = errs[0] if len(errs) == 1 else "* " + "\n* ".join(errs)
        raise InvalidArgument(f"invalid network config:\n{body}")


def check_pool(subnet: Net, ip_range: str | None, gateway: str | None,
               aux_addresses: dict[str, str] | None = None) -> tuple[Net, str]:
    """Validate a user's IPAM config with dockerd's texts (api/types/network ValidateIPAM); return (range,
    gateway: the given one, else the subnet's first address)."""
    errs: list[str] = []
    if ip_range:
        errs += _range_errors(ip_range, subnet)
    if gateway and (e := _address_error(gateway, subnet)):
        errs.append(f"invalid gateway {gateway}: {e}")
    for name, addr in (aux_addresses or {}).items():
        if e := _address_error(addr, subnet):
            errs.append(f"invalid auxiliary address {name}: {e}")
    _raise_joined(errs)
    rng = ipaddress.IPv4Network(ip_range, strict=False) if ip_range else subnet
    return rng, gateway or str(next(subnet.hosts()))


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


def parse_mac(text: str) -> str | None:
    """Go's net.ParseMAC (the formats dockerd accepts: 00:00:5e:00:53:01, 00-00-5e-00-53-01, 0000.5e00.5301; 6, 8
    or 20 bytes) -> the address in lower-case colon form, or None when malformed."""
    s = text
    if len(s) < 14:
        return None
    if s[2] in ":-":
        if (len(s) + 1) % 3 != 0:
            return None
        groups = s.split(s[2])
        width = 2
    elif s[4] == ".":
        if (len(s) + 1) % 5 != 0:
            return None
        groups = s.split(".")
        width = 4
    else:
        return None
    if any(len(g) != width or not all(c in "0123456789abcdefABCDEF" for c in g) for g in groups):
        return None
    raw = "".join(groups).lower()
    if len(raw) // 2 not in (6, 8, 20):
        return None
    return ":".join(raw[i:i + 2] for i in range(0, len(raw), 2))
