"""Container rows as the list shows them, built from `GET /containers/json` (one call, no per-container inspect)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

STATE_COLOURS = {
    "running": "green",
    "paused": "yellow",
    "restarting": "cyan",
    "created": "blue",
    "exited": "red",
    "dead": "red",
    "removing": "magenta",
}

# docker-compose (v1 and v2) label every container of a project with these.
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"

# The ports Kitematic treated as web ports, in its order of preference, for the default URL.
WEB_PORTS = (80, 8000, 8080, 8888, 3000, 5000, 2368, 9200, 8983, 443)


@dataclass(frozen=True)
class ContainerRow:
    id: str
    name: str
    image: str
    state: str
    status: str
    ports: str
    published: tuple[tuple[str, int, int, str], ...]  # (host ip, host port, container port, proto)
    created: int
    project: str = ""  # the compose project it belongs to, if any
    service: str = ""
    host: str = ""  # the all-hosts list: the host of a row that is not the current host's ("" for the current)

    @classmethod
    def from_api(cls, c: dict[str, Any]) -> ContainerRow:
        names = c.get("Names") or [""]
        ports = c.get("Ports") or []
        labels = c.get("Labels") or {}
        published = tuple(
            (p.get("IP", ""), int(p["PublicPort"]), int(p["PrivatePort"]), p.get("Type", "tcp"))
            for p in ports
            if p.get("PublicPort")
        )
        return cls(
            id=c["Id"],
            name=names[0].lstrip("/"),
            image=c.get("Image", ""),
            state=c.get("State", ""),
            status=c.get("Status", ""),
            ports=displayable_ports(ports),
            published=published,
            created=int(c.get("Created", 0)),
            project=labels.get(PROJECT_LABEL, ""),
            service=labels.get(SERVICE_LABEL, ""),
        )

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def matches(self, text: str) -> bool:
        """The filter-as-you-type test: every word appears in the name, image, state, ports or compose project."""
        hay = f"{self.name} {self.image} {self.state} {self.ports} {self.short_id} {self.project} {self.host}".lower()
        return all(word in hay for word in text.lower().split())


def list_order(rows: list[ContainerRow]) -> list[ContainerRow]:
    """Running stacks first, then by name, as Kitematic sorted; a compose project's containers stay together
    (under the project's name) so a stack reads as one block and can be marked as one."""
    live = ("running", "paused", "restarting")
    group_live: dict[str, bool] = {}
    for r in rows:
        if r.project:
            group_live[r.project] = group_live.get(r.project, False) or r.state in live
    def key(r: ContainerRow) -> tuple[bool, str, str]:
        is_live = group_live[r.project] if r.project else r.state in live
        return (not is_live, r.project or r.name, r.name)

    return sorted(rows, key=key)


def on_host(row: ContainerRow, host: str) -> ContainerRow:
    """A row of another host in the all-hosts list: its key is `host/id` (a container id never has a slash)."""
    from dataclasses import replace

    return replace(row, id=f"{host}/{row.id}", host=host)


def split_row_id(row_id: str) -> tuple[str, str]:
    """(host, container id) of a list key; the host is "" for the current host's rows."""
    host, _, cid = row_id.rpartition("/")
    return host, cid


def grouped_order(rows: list[ContainerRow]) -> list[ContainerRow]:
    """The current host's rows first, then each other host's, by name; each group in list_order."""
    groups: dict[str, list[ContainerRow]] = {}
    for r in rows:
        groups.setdefault(r.host, []).append(r)
    return [r for h in sorted(groups, key=lambda h: (h != "", h)) for r in list_order(groups[h])]


def _join_host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def displayable_ports(ports: list[dict[str, Any]]) -> str:
    """The PORTS column exactly as `docker ps` prints it (docker/cli formatter.DisplayablePorts)."""

    def key(p: dict[str, Any]) -> tuple[int, str, int, str]:
        return (int(p.get("PrivatePort", 0)), p.get("IP", ""), int(p.get("PublicPort", 0) or 0), p.get("Type", ""))

    groups: dict[str, list[int]] = {}
    order: list[str] = []
    result: list[str] = []
    host_mappings: list[str] = []
    for p in sorted(ports, key=key):
        current = int(p.get("PrivatePort", 0))
        proto = p.get("Type", "tcp")
        port_key = proto
        ip = p.get("IP", "")
        if ip:
            public = int(p.get("PublicPort", 0) or 0)
            if public != current:
                host_mappings.append(f"{_join_host_port(ip, public)}->{current}/{proto}")
                continue
            port_key = f"{ip}/{proto}"
        group = groups.get(port_key)
        if group is None:
            groups[port_key] = [current, current]
            order.append(port_key)
            continue
        if current == group[1] + 1:
            group[1] = current
            continue
        result.append(_form_group(port_key, group[0], group[1]))
        groups[port_key] = [current, current]
    for port_key in order:
        first, last = groups[port_key]
        result.append(_form_group(port_key, first, last))
    result.extend(host_mappings)
    return ", ".join(result)


def _form_group(key: str, first: int, last: int) -> str:
    ip, _, proto = key.rpartition("/")
    group = str(first) if first == last else f"{first}-{last}"
    if ip:
        group = f"{ip}:{group}->{group}"
    return f"{group}/{proto}"


def urls(published: tuple[tuple[str, int, int, str], ...]) -> list[str]:
    """HTTP URLs for published TCP ports, web ports first, one per container port, reachable from this host."""
    seen: set[int] = set()
    out: list[tuple[int, str]] = []
    for ip, host_port, container_port, proto in published:
        if proto != "tcp" or container_port in seen:
            continue
        seen.add(container_port)
        host = "127.0.0.1"
        try:
            addr = ipaddress.ip_address(ip)
            if not addr.is_unspecified:
                host = f"[{ip}]" if addr.version == 6 else ip
        except ValueError:
            pass
        rank = WEB_PORTS.index(container_port) if container_port in WEB_PORTS else len(WEB_PORTS)
        out.append((rank, f"http://{host}:{host_port}"))
    return [u for _, u in sorted(out, key=lambda t: t[0])]


def unique_name(base: str, taken: set[str]) -> str:
    """Kitematic's names: `nginx`, then `nginx-2`, `nginx-3`..."""
    base = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in base).strip(".-") or "container"
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"
