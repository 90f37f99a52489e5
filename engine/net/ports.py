"""Published ports: parsing `-p` specs and PortBindings, and allocating host ports without conflicts.

Texts follow Docker: go-connections/nat for spec parsing (what the CLI says), the daemon's validation of
PortBindings, and the port allocator's "Bind for 0.0.0.0:8080 failed: port is already allocated".
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from engine.errors import Conflict, InvalidArgument

PROTOS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class Mapping:
    """One published port: host (ip, port) -> container port."""

    proto: str
    host_ip: str  # "0.0.0.0" for every address
    host_port: int
    container_port: int


def parse_port(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    n = int(text)
    if n > 65535:
        raise ValueError(text)
    return n


def parse_range(text: str) -> tuple[int, int]:
    if not text:
        raise ValueError("empty string specified for ports")
    if "-" not in text:
        p = parse_port(text)
        return p, p
    a, _, b = text.partition("-")
    lo, hi = parse_port(a), parse_port(b)
    if hi < lo:
        raise ValueError(text)
    return lo, hi


def split_proto(text: str) -> tuple[str, str]:
    port, sep, proto = text.partition("/")
    if not port:
        return "", ""
    return (proto if sep else "tcp"), port


def parse_port_spec(raw: str) -> tuple[dict[str, list[dict[str, str]]], list[str]]:
    """One `-p` value -> (PortBindings entries, exposed port keys), like the docker CLI (go-connections/nat)."""
    ip, host_port, container = "", "", raw
    parts = raw.rsplit(":", 2) if raw.count(":") <= 2 or not raw.startswith("[") else None
    if raw.startswith("["):
        end = raw.find("]")
        ip = raw[1:end]
        rest = raw[end + 2 :]
        host_port, _, container = rest.rpartition(":")
    elif parts is not None:
        if len(parts) == 3:
            ip, host_port, container = parts
        elif len(parts) == 2:
            host_port, container = parts
    proto, container = split_proto(container)
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid IP address: {ip}") from None
    if not container:
        raise InvalidArgument(f"no port specified: {raw}<empty>")
    try:
        start, end = parse_range(container)
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {container}") from None
    hstart = hend = 0
    if host_port:
        try:
            hstart, hend = parse_range(host_port)
        except ValueError:
            raise InvalidArgument(f"invalid hostPort: {host_port}") from None
    if host_port and (end - start) != (hend - hstart) and end != start:
        raise InvalidArgument(f"invalid ranges specified for container and host Ports: {container} and {host_port}")
    if proto.lower() not in PROTOS:
        raise InvalidArgument(f"invalid proto: {proto}")
    bindings: dict[str, list[dict[str, str]]] = {}
    exposed: list[str] = []
    for i in range(end - start + 1):
        key = f"{start + i}/{proto.lower()}"
        if not host_port:
            hp = ""
        elif end == start and hend != hstart:
            hp = f"{hstart}-{hend}"  # any free port of the host range
        else:
            hp = str(hstart + i)
        bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hp})
        exposed.append(key)
    return bindings, exposed


def parse_port_specs(specs: Iterable[str]) -> tuple[dict[str, list[dict[str, str]]], list[str]]:
    out: dict[str, list[dict[str, str]]] = {}
    exposed: list[str] = []
    for spec in specs:
        b, e = parse_port_spec(spec)
        for k, v in b.items():
            out.setdefault(k, []).extend(v)
        exposed += [x for x in e if x not in exposed]
    return out, exposed


@dataclass(frozen=True)
class Request:
    proto: str
    host_ip: str
    host_lo: int  # 0: ephemeral
    host_hi: int
    container_port: int


def requests_from(
    port_bindings: dict[str, list[dict[str, str]] | None] | None,
    publish_all: bool,
    exposed_ports: Iterable[str],
) -> list[Request]:
    """Validate PortBindings as the daemon does and turn them (plus -P) into allocation requests."""
    reqs: list[Request] = []
    bound: set[str] = set()
    for key, items in (port_bindings or {}).items():
        proto, port = split_proto(key)
        try:
            cport = parse_port(port)
            if cport == 0:
                raise ValueError(port)
        except ValueError:
            raise InvalidArgument(f'invalid port specification: "{key}"') from None
        if proto.lower() not in PROTOS:
            raise InvalidArgument(f'invalid port specification: "{key}"')
        bound.add(f"{cport}/{proto.lower()}")
        for item in items or [{}]:
            hip = (item or {}).get("HostIp") or "0.0.0.0"
            hport = (item or {}).get("HostPort") or ""
            try:
                addr = ipaddress.ip_address(hip)
            except ValueError:
                raise InvalidArgument(f'invalid IP address: "{hip}"') from None
            if addr.version == 6:
                continue  # IPv6 publishing is not supported; dockerd also skips :: when IPv6 is off
            if hport:
                try:
                    lo, hi = parse_range(hport)
                except ValueError:
                    raise InvalidArgument(f'invalid port specification: "{hport}"') from None
            else:
                lo = hi = 0
            reqs.append(Request(proto.lower(), str(addr), lo, hi, cport))
    if publish_all:
        for key in exposed_ports:
            proto, port = split_proto(key)
            try:
                cport = parse_port(port)
                if (proto or "tcp").lower() not in PROTOS:
                    raise ValueError(proto)
            except ValueError:
                raise InvalidArgument(f'invalid port specification: "{key}"') from None
            norm = f"{cport}/{(proto or 'tcp').lower()}"
            if norm not in bound:
                reqs.append(Request((proto or "tcp").lower(), "0.0.0.0", 0, 0, cport))
    return reqs


def check_port_bindings(port_bindings: dict[str, Any] | None, exposed_ports: Iterable[str] = ()) -> None:
    """Refuse malformed PortBindings / ExposedPorts with dockerd's 400 texts; for container create, so a bad spec
    fails there as with Docker, not later at start."""
    requests_from(port_bindings, True, exposed_ports)


def ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            a, b = f.read().split()
        return int(a), int(b)
    except (OSError, ValueError):
        return 32768, 60999


def _clashes(a_ip: str, b_ip: str) -> bool:
    return a_ip == b_ip or a_ip == "0.0.0.0" or b_ip == "0.0.0.0"


def _host_free(proto: str, ip: str, port: int) -> OSError | None:
    """None if the host could bind (ip, port) now; else the error (in use, or not an address of the host)."""
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    if proto == "sctp":
        return None
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((ip, port))
        return None
    except OSError as e:
        return e
    finally:
        s.close()


class PortAllocator:
    """Host ports in use by the engine's containers: (proto, host ip, port) -> owner container id."""

    def __init__(self, foreign: Callable[[], Iterable[tuple[str, str, int]]] | None = None) -> None:
        self.used: dict[tuple[str, str, int], str] = {}
        self._next: dict[str, int] = {}
        # ports another engine on this host publishes (its nft DNAT holds no socket a bind test would see)
        self._foreign_source = foreign
        self._foreign: set[tuple[str, str, int]] = set()

    def taken(self, proto: str, ip: str, port: int) -> bool:
        return any(p == proto and n == port and _clashes(i, ip) for (p, i, n) in self.used) or any(
            p == proto and n == port and _clashes(i, ip) for (p, i, n) in self._foreign
        )

    def claim(self, owner: str, m: Mapping) -> None:
        self.used[(m.proto, m.host_ip, m.host_port)] = owner

    def release_owner(self, owner: str) -> None:
        for k in [k for k, v in self.used.items() if v == owner]:
            del self.used[k]

    def allocate(self, owner: str, reqs: list[Request]) -> list[Mapping]:
        """All or nothing: on any error nothing stays claimed."""
        got: list[Mapping] = []
        self._foreign = set(self._foreign_source()) if self._foreign_source is not None and reqs else set()
        try:
            for r in reqs:
                m = self._one(r)
                self.claim(owner, m)
                got.append(m)
        except BaseException:
            for m in got:
                self.used.pop((m.proto, m.host_ip, m.host_port), None)
            raise
        return got

    def _one(self, r: Request) -> Mapping:
        if r.host_lo and r.host_lo == r.host_hi:
            port = r.host_lo
            if self.taken(r.proto, r.host_ip, port):
                raise Conflict(f"Bind for {r.host_ip}:{port} failed: port is already allocated")
            err = _host_free(r.proto, r.host_ip, port)
            if err is not None:
                raise self._bind_error(r, port, err)
            return Mapping(r.proto, r.host_ip, port, r.container_port)
        lo, hi = (r.host_lo, r.host_hi) if r.host_lo else ephemeral_range()
        span = hi - lo + 1
        start = self._next.get(r.proto, lo) if not r.host_lo else lo
        if not lo <= start <= hi:
            start = lo
        last_err: OSError | None = None
        for k in range(span):
            port = lo + (start - lo + k) % span
            if self.taken(r.proto, r.host_ip, port):
                continue
            err = _host_free(r.proto, r.host_ip, port)
            if err is not None:
                last_err = err
                if err.errno == errno.EADDRNOTAVAIL:
                    raise self._bind_error(r, port, err)
                continue
            if not r.host_lo:
                self._next[r.proto] = port + 1 if port < hi else lo
            return Mapping(r.proto, r.host_ip, port, r.container_port)
        if r.host_lo:
            raise Conflict(f"Bind for {r.host_ip}:{r.host_lo}-{r.host_hi} failed: port is already allocated")
        raise Conflict(f"no free host port in {lo}-{hi}: {last_err}")

    @staticmethod
    def _bind_error(r: Request, port: int, err: OSError) -> Conflict:
        why = "address already in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err)).lower()
        if err.errno == errno.EADDRNOTAVAIL:
            why = "cannot assign requested address"
        return Conflict(
            f"Error starting userland proxy: listen {r.proto}4 {r.host_ip}:{port}: bind: {why}"
        )


def ports_view(mappings: list[Mapping], exposed: Iterable[str], bound_keys: Iterable[str]) -> dict[str, object]:
    """NetworkSettings.Ports: every exposed or bound port, with its host bindings or null."""
    view: dict[str, object] = {}
    for key in list(exposed) + list(bound_keys):
        proto, port = split_proto(key)
        view.setdefault(f"{port}/{(proto or 'tcp').lower()}", None)
    for m in mappings:
        key = f"{m.container_port}/{m.proto}"
        cur = view.get(key)
        lst: list[dict[str, str]] = cur if isinstance(cur, list) else []
        lst.append({"HostIp": m.host_ip, "HostPort": str(m.host_port)})
        view[key] = lst
    return view
