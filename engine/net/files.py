"""A container's /etc/hosts, /etc/resolv.conf and /etc/hostname, in Docker's format.

The runtime bind-mounts these files; they are rewritten in place (same inode, so the bind mount sees it) when the
container joins or leaves a network.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

EMBEDDED_DNS = "127.0.0.11"
DEFAULT_DNS = ["8.8.8.8", "8.8.4.4"]  # what Docker falls back to when the host only has loopback resolvers

HOSTS_HEAD = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def write_in_place(path: Path, text: str) -> None:
    """Rewrite without replacing the inode: a bind mount of this file must see the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def hosts_file(entries: list[tuple[str, list[str]]], extra_hosts: list[str] | None = None) -> str:
    """entries: (address, [names]) of the container on each network; extra_hosts: Docker's "name:ip" items."""
    lines = [HOSTS_HEAD]
    for item in extra_hosts or []:
        name, _, ip = item.partition(":")
        if not ip:
            name, _, ip = item.partition("=")  # docker 28 also accepts name=ip
        lines.append(f"{ip}\t{name}\n")
    for ip, names in entries:
        seen: list[str] = []
        for n in names:
            if n and n not in seen:
                seen.append(n)
        lines.append(f"{ip}\t{' '.join(seen)}\n")
    return "".join(lines)


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


def parse_resolv_conf(text: str) -> ResolvConf:
    rc = ResolvConf()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        key, *vals = line.split()
        if key == "nameserver" and vals:
            rc.nameservers.append(vals[0])
        elif key in ("search", "domain"):
            rc.search = vals
        elif key == "options":
            rc.options.extend(vals)
    return rc


def is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def container_resolv_conf(
    host: ResolvConf,
    *,
    embedded_dns: bool,
    dns: list[str] | None = None,
    dns_search: list[str] | None = None,
    dns_options: list[str] | None = None,
) -> str:
    """Docker's rules: on the default bridge the host's resolvers minus loopback ones (8.8.8.8/8.8.4.4 if none
    are left); on user networks the embedded server at 127.0.0.11 with ndots:0, which forwards to the rest."""
    search = dns_search if dns_search else host.search
    options = list(dns_options) if dns_options else list(host.options)
    if embedded_dns:
        servers = [EMBEDDED_DNS]
        if not any(o.startswith("ndots:") for o in options):
            options.append("ndots:0")
    elif dns:
        servers = list(dns)
    else:
        servers = [s for s in host.nameservers if not is_loopback(s)] or list(DEFAULT_DNS)
    out = [f"nameserver {s}\n" for s in servers]
    if search:
        out.append(f"search {' '.join(search)}\n")
    if options:
        out.append(f"options {' '.join(options)}\n")
    return "".join(out)


def upstream_servers(host: ResolvConf, dns: list[str] | None) -> list[str]:
    """Where the embedded DNS server forwards: the container's --dns, else the host's resolvers (loopback ones
    included, since the forwarder runs in the host's namespace)."""
    servers = list(dns) if dns else list(host.nameservers)
    return servers or list(DEFAULT_DNS)
