"""Docker's legacy container links (`--link name:alias`, HostConfig.Links), as dockerd keeps them.

On the default bridge a link is the parent's: registered at create (the child must exist; dockerd's registerLinks),
it puts `IP\talias hostname name` in the parent's /etc/hosts and the ALIAS_* variables in its environment at start
(daemon/links), and `DELETE /containers/{parent}/{alias}?link=1` takes it away. On a user-defined network a link is
an endpoint's `Links` entry: a DNS alias of that container only, resolved by the network's DNS (libnetwork's
endpoint aliases), never a hosts line.

Pure functions over container records (dicts): the container manager hands in its lookup, so engine/net stays
free of the container part.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import EngineError, InvalidArgument, NotFound

Find = Callable[[str], "dict[str, Any] | None"]

# where the manager keeps a parent's links: [{"Child": child id, "Name": "/parent/alias"}]
LINKS_KEY = "Links"


def parse_link(text: str) -> tuple[str, str]:
    """dockerd's opts.ParseLink: "name:alias", "name" (alias = name) or an inspect's "/name:/parent/alias"."""
    if not text:
        raise InvalidArgument("empty string specified for links")
    parts = text.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"bad format for links: {text}")
    if len(parts) == 1:
        return text, text
    if parts[0].startswith("/"):
        return parts[0][1:], posixpath.basename(parts[1])
    return parts[0], parts[1]


def user_defined(mode: str) -> bool:
    return mode not in ("", "default", "bridge", "host", "none") and not mode.startswith("container:")


def check_links(host_config: dict[str, Any], find: Find) -> list[tuple[dict[str, Any], str]]:
    """A create's HostConfig.Links as dockerd's registerLinks checks them: [(child record, alias)]. On a
    user-defined network mode dockerd registers none (the CLI sends them per endpoint too)."""
    items = host_config.get("Links") or []
    mode = str(host_config.get("NetworkMode") or "")
    if not items or user_defined(mode):
        return []
    if mode == "host":
        raise InvalidArgument("conflicting options: host type networking can't be used with links. This would "
                              "result in undefined behavior")
    out: list[tuple[dict[str, Any], str]] = []
    for item in items:
        name, alias = parse_link(str(item))
        child = find(name)
        if child is None:
            # dockerd answers "invalid parameter" here: a not-found would make the CLI pull the image
            raise InvalidArgument(f"could not get container for {name}: No such container: {name}")
        seen: set[str] = set()
        while str(child["HostConfig"].get("NetworkMode") or "").startswith("container:") and child["Id"] not in seen:
            seen.add(child["Id"])
            other = str(child["HostConfig"]["NetworkMode"]).split(":", 1)[1]
            nxt = find(other)
            if nxt is None:
                raise InvalidArgument(f"could not get container for {other}: No such container: {other}")
            child = nxt
        if child["HostConfig"].get("NetworkMode") == "host":
            raise InvalidArgument("conflicting options: host type networking can't be used with links. This "
                                  "would result in undefined behavior")
        out.append((child, alias))
    return out


def register(rec: dict[str, Any], links: list[tuple[dict[str, Any], str]], user_mode: bool) -> None:
    """Keep the checked links on the parent's record and show them as dockerd's inspect does
    ("/child:/parent/alias"; null when none is registered, as on a user-defined network)."""
    parent = rec["Name"]
    rec["_portside"][LINKS_KEY] = [{"Child": c["Id"], "Name": f"{parent}/{alias}"} for c, alias in links]
    if links or user_mode:
        rec["HostConfig"]["Links"] = [f"{c['Name']}:{parent}/{alias}" for c, alias in links] or None


@dataclass
class StartLinks:
    env: list[str]
    # the parent's /etc/hosts lines, for NetworkService.create_sandbox(links=): {link name: {"Child", "Names",
    # "IP"}}, written "IP\tNames" after the ExtraHosts, and kept current when the child gets a new address
    hosts: dict[str, dict[str, str]]


NO_LINKS = StartLinks([], {})


def _bridge_ip(rec: dict[str, Any]) -> str:
    ep = ((rec.get("NetworkSettings") or {}).get("Networks") or {}).get("bridge") or {}
    return str(ep.get("IPAddress") or "")


def for_start(rec: dict[str, Any], find: Find) -> StartLinks:
    """The environment and hosts lines a parent's links give it at start (dockerd's setupLinkedContainers and
    buildSandboxOptions). Free for a container without links: the start path is benchmarked."""
    links = rec["_portside"].get(LINKS_KEY)
    if not links:
        return NO_LINKS
    env: list[str] = []
    hosts: dict[str, dict[str, str]] = {}
    on_bridge = rec["HostConfig"].get("NetworkMode") in ("bridge", "default", "")
    for link in links:
        child = find(link["Child"])
        if child is None:
            continue  # removed since: dockerd's link index forgot it with the child
        if not child["State"].get("Running"):
            raise EngineError(f"Cannot link to a non running container: {child['Name']} AS {link['Name']}")
        ip = _bridge_ip(child)
        if not ip:
            raise EngineError(f"Cannot link to {child['Name']}, as it does not belong to the default network")
        alias = posixpath.basename(link["Name"])
        # the alias, the child's hostname and (when it differs from the alias) its name, as dockerd writes them
        names = [alias, str(child["Config"].get("Hostname") or "")]
        if alias != child["Name"][1:]:
            names.append(child["Name"][1:])
        hosts[link["Name"]] = {"Child": child["Id"], "Names": " ".join(n for n in names if n), "IP": ip}
        if on_bridge:
            env += link_env(link["Name"], ip, child["Config"].get("Env") or [],
                            list((child["Config"].get("ExposedPorts") or {}).keys()))
    return StartLinks(env, hosts)


def _port_key(p: str) -> tuple[int, str]:
    port, _, proto = p.partition("/")
    return int(port.split("-")[0]) if port.isdigit() else 0, (proto or "tcp").lower()


def _tcp_first(p: str) -> tuple[int, str, int]:
    port, proto = _port_key(p)
    # dockerd's withTCPPriority: tcp before the other protocols, each by number
    return (0 if proto == "tcp" else 1), proto, port


def link_env(name: str, child_ip: str, child_env: list[str], exposed: list[str]) -> list[str]:
    """dockerd's links.Link.ToEnv, ranges of consecutive ports included."""
    alias = posixpath.basename(name).upper().replace("-", "_")
    ports = sorted(exposed, key=_tcp_first)
    env: list[str] = []
    start = end = ""
    for i, p in enumerate(ports):
        num, proto = _port_key(p)
        if i == 0:
            start = end = p
            env.append(f"{alias}_PORT={proto}://{child_ip}:{num}")
        prefix = f"{alias}_PORT_{num}_{proto.upper()}"
        env += [f"{prefix}={proto}://{child_ip}:{num}", f"{prefix}_ADDR={child_ip}", f"{prefix}_PORT={num}",
                f"{prefix}_PROTO={proto}"]
        if num == _port_key(end)[0] + 1 and proto == _port_key(start)[1]:
            end = p
            if i < len(ports) - 1:
                continue
        if end != start:
            s_num, s_proto = _port_key(start)
            e_num, e_proto = _port_key(end)
            prefix = f"{alias}_PORT_{s_num}_{s_proto.upper()}"
            env += [f"{prefix}_START={s_proto}://{child_ip}:{s_num}", f"{prefix}_PORT_START={s_num}",
                    f"{prefix}_END={e_proto}://{child_ip}:{e_num}", f"{prefix}_PORT_END={e_num}"]
        start = end = p
    env.append(f"{alias}_NAME={name}")
    for item in child_env:
        key, eq, val = item.partition("=")
        if not eq or key in ("HOME", "PATH"):
            continue
        env.append(f"{alias}_ENV_{key}={val}")
    return env


def find_link(ref: str, find: Find) -> tuple[dict[str, Any], dict[str, Any]]:
    """`docker rm --link /parent/alias`: (parent record, its link entry), with dockerd's texts."""
    name = ref if ref.startswith("/") else "/" + ref
    parent_name, _, _ = name.rpartition("/")
    parent = find(parent_name) if parent_name else None
    entry = None
    if parent is not None:
        entry = next((li for li in parent["_portside"].get(LINKS_KEY) or [] if li["Name"] == name), None)
    if parent is None or entry is None:
        raise NotFound(f"No such container: {ref}")
    return parent, entry


def unregister(parent: dict[str, Any], entry: dict[str, Any]) -> None:
    parent["_portside"][LINKS_KEY] = [li for li in parent["_portside"].get(LINKS_KEY) or []
                                      if li["Name"] != entry["Name"]]
    shown = [s for s in parent["HostConfig"].get("Links") or [] if not s.endswith(":" + entry["Name"])]
    parent["HostConfig"]["Links"] = shown or None


def endpoint_aliases(links: list[str] | None) -> dict[str, str]:
    """A user-network endpoint's Links as DNS aliases of that container: {alias: linked container's name}."""
    out: dict[str, str] = {}
    for item in links or []:
        try:
            name, alias = parse_link(str(item))
        except InvalidArgument:
            continue
        out[alias.lower()] = name.lower()
    return out
