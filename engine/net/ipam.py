"""Address management: choosing subnets that overlap nothing, and handing out addresses inside them.

The allocation state lives in the network record (its Containers map plus a cursor), which is written
atomically, so an address is never handed out twice, not even across engine restarts.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

from engine.errors import Conflict, Forbidden, InvalidArgument

Net = ipaddress.IPv4Network
AnyNet = ipaddress.IPv4Network | ipaddress.IPv6Network

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
        raise InvalidArgument(f"{text} is not an IPv4 subnet")
    return net


def parse_any(text: str) -> AnyNet:
    """A stored subnet of either family."""
    return ipaddress.ip_network(text, strict=False)


def is_v6(text: str) -> bool:
    """The family of a user's subnet as dockerd's getIpamConfig splits the pools: by the address before the '/'
    (a malformed one counts as IPv4, and is refused by the IPv4 checks)."""
    try:
        return isinstance(ipaddress.ip_network(text, strict=False), ipaddress.IPv6Network)
    except ValueError:
        return False


def check_subnet(text: str) -> AnyNet:
    """A user's subnet (either family), with dockerd's texts for a malformed one or one with host bits set."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid network config:\ninvalid subnet {text}: invalid CIDR block notation") from None
    if _host_bits(text):
        raise InvalidArgument(f"invalid network config:\ninvalid subnet {_normal(text)}: it should be {net}")
    return net


def _host_bits(text: str) -> bool:
    """netip's `prefix != prefix.Masked()`: the address has bits set past the prefix (a value comparison, so
    "2001:db8::0/64" is as good as "2001:db8::/64")."""
    iface = ipaddress.ip_interface(text.strip())
    return iface.ip != iface.network.network_address


def _normal(text: str) -> str:
    """A prefix as Go's netip.Prefix prints it (the address in its canonical form)."""
    return str(ipaddress.ip_interface(text.strip()))


def _family(net: AnyNet | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return "IPv6" if net.version == 6 else "IPv4"


def _address_error(address: str, subnet: AnyNet) -> str | None:
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return "invalid address"
    if addr.version != subnet.version:
        return f"parent subnet is an {_family(subnet)} block"
    if addr not in subnet:
        return f"parent subnet {subnet} doesn't contain this address"
    return None


def _range_errors(ip_range: str, subnet: AnyNet) -> list[str]:
    try:
        rng = ipaddress.ip_network(ip_range, strict=False)
    except ValueError:
        return [f"invalid ip-range {ip_range}: invalid CIDR block notation"]
    if rng.version != subnet.version:
        return [f"invalid ip-range {ip_range}: parent subnet is an {_family(subnet)} block"]
    errs = []
    if rng.prefixlen < subnet.prefixlen:
        errs.append(f"invalid ip-range {ip_range}: CIDR block is bigger than its parent subnet {subnet}")
    if _host_bits(ip_range):
        errs.append(f"invalid ip-range {_normal(ip_range)}: it should be {rng}")
    if not rng.overlaps(subnet):
        errs.append(f"invalid ip-range {ip_range}: parent subnet {subnet} doesn't contain ip-range")
    return errs


def raise_joined(errs: list[str]) -> None:
    # dockerd's ValidateIPAM: one error alone, else "* a\n* b", under "invalid network config:"
    if errs:
        body = errs[0] if len(errs) == 1 else "* " + "\n* ".join(errs)
        raise InvalidArgument(f"invalid network config:\n{body}")


def pool_errors(subnet: AnyNet, ip_range: str | None, gateway: str | None,
                aux_addresses: dict[str, str] | None = None) -> list[str]:
    """dockerd's ValidateIPAM texts for one pool (api/types/network/ipam.go), in its order."""
    errs: list[str] = []
    if ip_range:
        errs += _range_errors(ip_range, subnet)
    if gateway and (e := _address_error(gateway, subnet)):
        errs.append(f"invalid gateway {gateway}: {e}")
    for name, addr in (aux_addresses or {}).items():
        if e := _address_error(addr, subnet):
            errs.append(f"invalid auxiliary address {name}: {e}")
    return errs


def default_gateway(subnet: AnyNet) -> str:
    """libnetwork's gateway when none is asked: the subnet's first address after the network address."""
    return str(subnet.network_address + 1)


def check_pool(subnet: AnyNet, ip_range: str | None, gateway: str | None,
               aux_addresses: dict[str, str] | None = None) -> tuple[AnyNet, str]:
    """Validate a user's IPAM config with dockerd's texts (api/types/network ValidateIPAM); return (range,
    gateway: the given one, else the subnet's first address)."""
    raise_joined(pool_errors(subnet, ip_range, gateway, aux_addresses))
    rng = ipaddress.ip_network(ip_range, strict=False) if ip_range else subnet
    return rng, gateway or default_gateway(subnet)


def ula_base(host_id: str) -> ipaddress.IPv6Network:
    """dockerd's deriveULABaseNetwork: a /48 in fd00::/8 whose 40-bit Global ID is the low 40 bits of the first
    8 bytes of sha256(host id), so a host's dynamic IPv6 subnets are stable and unlike other hosts' (RFC 4193)."""
    sha = hashlib.sha256(host_id.encode()).digest()
    gid = int.from_bytes(sha[:8], "big") & ((1 << 40) - 1)
    return ipaddress.IPv6Network((int(ipaddress.IPv6Address("fd00::")) + (gid << 80), 48))


def choose_subnet6(host_id: str, in_use: Iterable[AnyNet]) -> ipaddress.IPv6Network:
    """The first /64 of the host's ULA /48 overlapping no existing network or host route (dockerd 27+ hands these
    out to --ipv6 networks without an IPv6 subnet)."""
    used = [u for u in in_use if isinstance(u, ipaddress.IPv6Network)]
    for net in ula_base(host_id).subnets(new_prefix=64):
        if not any(net.overlaps(u) for u in used):
            return net
    raise Forbidden("could not find an available, non-overlapping IPv6 address pool among the defaults to assign "
                    "to the network")


def mac_for(ip: str) -> str:
    """Docker's MAC address for an IPv4 address: 02:42 followed by the four bytes of the address."""
    b = ipaddress.ip_address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


def allocate(subnet: AnyNet, rng: AnyNet, taken: set[str], cursor: str | None, requested: str | None = None) -> str:
    """Hand out an address: the requested one if free, else the next free one after the cursor (wrapping),
    so a just-released address is not reused at once (as Docker's allocator does). libnetwork keeps back the
    subnet's first address (IPv4 network address, IPv6 Subnet-Router anycast) and IPv4's broadcast address."""
    fam = _family(subnet)
    v4 = subnet.version == 4
    if requested:
        try:
            ip = ipaddress.ip_address(requested)
        except ValueError:
            raise InvalidArgument(f"invalid {fam} address: {requested}") from None
        if ip not in subnet or ip == subnet.network_address or (v4 and ip == subnet.broadcast_address):
            raise InvalidArgument(f"no available {fam} addresses on this network's address pools: {requested} "
                                  f"is not in {subnet}")
        if str(ip) in taken:
            raise Conflict("Address already in use")
        return str(ip)
    lo = max(int(rng.network_address), int(subnet.network_address) + 1)
    hi = min(int(rng.broadcast_address), int(subnet.broadcast_address) - (1 if v4 else 0))
    if hi < lo:
        raise Forbidden(f"no available {fam} addresses on this network's address pools")
    start = lo
    if cursor:
        c = int(ipaddress.ip_address(cursor)) + 1
        if lo <= c <= hi:
            start = c
    n = hi - lo + 1
    # the taken addresses are few: at most len(taken) + 1 candidates are looked at, even in a /64
    for k in range(min(n, len(taken) + 1)):
        x = lo + (start - lo + k) % n
        cand = str(ipaddress.IPv4Address(x) if v4 else ipaddress.IPv6Address(x))
        if cand not in taken:
            return cand
    raise Forbidden(f"no available {fam} addresses on this network's address pools")


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
