"""A container's editable settings, read from inspect, validated, and applied: in place where the API can
(rename, update, network connect/disconnect), else by a recreate that copies every field the user did not edit
from inspect (Cmd, Entrypoint, Labels, the whole HostConfig...) - the Kitematic bugs #2245/#2468 lost Cmd.
No Textual here.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import shlex
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
BUILTIN_MODES = ("bridge", "host", "none", "default")


@dataclass(frozen=True)
class PortMapping:
    container_port: int
    proto: str
    host_ip: str
    host_port: int | None  # None: a free port chosen by the engine

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"

    def __str__(self) -> str:
        host = f"{self.host_ip}:" if self.host_ip else ""
        return f"{self.key} -> {host}{self.host_port or ''}".rstrip(":").rstrip()


@dataclass
class Settings:
    name: str
    command: list[str] | None
    env: list[str]
    restart: str
    ports: list[PortMapping]
    network_mode: str
    networks: list[str] = field(default_factory=list)  # user networks besides the mode's own
    binds: list[str] = field(default_factory=list)  # HostConfig.Binds, then the anonymous volumes by name
    mounts: list[dict[str, Any]] = field(default_factory=list)  # HostConfig.Mounts (`--mount`), as inspect has them
    anonymous: list[str] = field(default_factory=list)  # the `binds` entries that stand for anonymous volumes


def anonymous_volumes(data: dict[str, Any]) -> list[str]:
    """Anonymous volumes (`-v /path`, an image's VOLUME) as Binds entries `<generated name>:/path`: a recreate that
    mounts them by name keeps their data, and the Volumes form can show and remove them."""
    hc = data.get("HostConfig") or {}
    taken = {b.split(":")[1].rstrip("/") for b in hc.get("Binds") or [] if ":" in b}
    taken |= {str(m.get("Target") or "").rstrip("/") for m in hc.get("Mounts") or []}
    out = []
    for m in data.get("Mounts") or []:
        dest = str(m.get("Destination") or "")
        if m.get("Type") == "volume" and m.get("Name") and dest.rstrip("/") not in taken:
            out.append(f"{m['Name']}:{dest}{'' if m.get('RW', True) else ':ro'}")
    return out


def host_mounts(data: dict[str, Any]) -> list[dict[str, Any]]:
    """HostConfig.Mounts; a volume mount without a Source (an anonymous `--mount type=volume`) gets the name the
    engine gave it, so a recreate mounts the same volume instead of a new empty one."""
    names = {str(m.get("Destination") or "").rstrip("/"): m.get("Name")
             for m in data.get("Mounts") or [] if m.get("Type") == "volume"}
    out = []
    for m in (data.get("HostConfig") or {}).get("Mounts") or []:
        m = dict(m)
        if m.get("Type") == "volume" and not m.get("Source"):
            name = names.get(str(m.get("Target") or "").rstrip("/"))
            if name:
                m["Source"] = name
        out.append(m)
    return out


def for_settings(api: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Inspect's `data` with Docker's name for the default network. Podman reports a container on it with
    NetworkMode "bridge", as Docker does, and calls it "bridge" in /networks too, but lists it under its own name
    ("podman") in NetworkSettings.Networks: the settings would take it for a user network and a recreate would
    name a "bridge" endpoint Podman does not know. That entry is renamed "bridge": the only one there is, or the
    one with an address in the subnet of /networks/bridge."""
    hc = data.get("HostConfig") or {}
    nets = (data.get("NetworkSettings") or {}).get("Networks") or {}
    if hc.get("NetworkMode") != "bridge" or "bridge" in nets or not nets:
        return data
    found = next(iter(nets)) if len(nets) == 1 else None
    if found is None:
        try:
            ipam = (api.inspect_network("bridge").get("IPAM") or {}).get("Config") or []
            subnets = [ipaddress.ip_network(c["Subnet"], strict=False) for c in ipam if c.get("Subnet")]
        except Exception:
            return data
        for name, ep in nets.items():
            try:
                ip = ipaddress.ip_address((ep or {}).get("IPAddress") or "")
            except ValueError:
                continue
            if any(ip in net for net in subnets):
                found = name
                break
    if found is None:
        return data
    out = copy.deepcopy(data)
    renamed = out["NetworkSettings"]["Networks"]
    renamed["bridge"] = renamed.pop(found)
    return out


def from_inspect(data: dict[str, Any]) -> Settings:
    cfg = data.get("Config") or {}
    hc = data.get("HostConfig") or {}
    ports: list[PortMapping] = []
    for key, bindings in sorted((hc.get("PortBindings") or {}).items()):
        port, _, proto = key.partition("/")
        for b in bindings or [{}]:
            hp = (b or {}).get("HostPort") or ""
            ports.append(PortMapping(int(port), proto or "tcp", (b or {}).get("HostIp") or "", int(hp) if hp else None))
    mode = hc.get("NetworkMode") or "default"
    nets = [n for n in ((data.get("NetworkSettings") or {}).get("Networks") or {}) if n != mode]
    if mode == "default":
        nets = [n for n in nets if n != "bridge"]
    anon = anonymous_volumes(data)
    return Settings(
        name=str(data.get("Name", "")).lstrip("/"),
        command=list(cfg["Cmd"]) if cfg.get("Cmd") else None,
        env=list(cfg.get("Env") or []),
        restart=(hc.get("RestartPolicy") or {}).get("Name") or "no",
        ports=ports,
        network_mode=mode,
        networks=sorted(nets),
        binds=list(hc.get("Binds") or []) + anon,
        mounts=host_mounts(data),
        anonymous=anon,
    )


# --- parsing what the user typed ---


def parse_command(text: str) -> list[str] | None:
    text = text.strip()
    return shlex.split(text) if text else None


def format_command(cmd: list[str] | None) -> str:
    return shlex.join(cmd) if cmd else ""


def parse_port(line: str) -> PortMapping:
    """`80`, `80/udp`, `80 -> 8080`, `80/tcp -> 127.0.0.1:8080`, `80 -> [::1]:8080`, `80 -> 127.0.0.1:`."""
    left, sep, right = line.partition("->")
    port_s, _, proto = left.strip().partition("/")
    proto = proto.strip() or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise ValueError(f"protocol {proto!r} is not tcp, udp or sctp")
    cport = _port_number(port_s.strip(), "container port")
    host_ip, host_port = "", None
    right = right.strip()
    if sep and right:
        if right.startswith("["):
            ip, _, rest = right[1:].partition("]")
            host_ip, hp = ip, rest.lstrip(":")
        elif right.count(":") == 1:
            host_ip, hp = right.split(":")
        elif ":" in right:
            raise ValueError(f"{right!r}: put an IPv6 address in brackets, like [::1]:8080")
        else:
            hp = right
        if host_ip:
            try:
                ipaddress.ip_address(host_ip)
            except ValueError:
                raise ValueError(f"{host_ip!r} is not an IP address") from None
        host_port = _port_number(hp, "host port") if hp.strip() else None
    return PortMapping(cport, proto, host_ip, host_port)


def _port_number(text: str, what: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{what} {text!r} must be a number from 1 to 65535")
    return int(text)


def parse_env(lines: list[str]) -> list[str]:
    out = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        key = line.partition("=")[0]
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"environment line {n}: {line!r} is not NAME=value")
        out.append(line)
    return out


def parse_binds(lines: list[str]) -> list[str]:
    out = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
            raise ValueError(f"volume line {n}: {line!r} is not SOURCE:/container/path[:ro] (SOURCE a path or a name)")
        if len(parts) == 3 and parts[2] not in ("ro", "rw", "z", "Z"):
            raise ValueError(f"volume line {n}: option {parts[2]!r} is not ro or rw")
        out.append(line)
    return out


# --- validation ---


def host_port_free(ip: str, port: int, proto: str) -> bool:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, kind) as s:
        try:
            s.bind((ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        except OSError:
            return False
    return True


WILDCARD_IPS = frozenset({"", "0.0.0.0", "::"})


def port_clashes(ports: list[PortMapping | None], container_id: str, containers: list[dict[str, Any]],
                 own_current: list[PortMapping], *, check_host: bool = True) -> dict[int, list[str]]:
    """Clashes of each form row (by index; None rows are skipped): the same host ip:port twice, a host port
    another container on this engine publishes (its list entry's Ports), and - when the engine runs on this
    machine (`check_host`) - a port something already holds here. The container's own current ports are not
    clashes with themselves."""
    found: dict[int, list[str]] = {}

    def add(i: int, text: str) -> None:
        if text not in found.setdefault(i, []):
            found[i].append(text)

    for i, p in enumerate(ports):
        if p is None or p.host_port is None:
            continue
        for q in ports[:i]:
            if q is None or q.host_port is None:
                continue
            same_ip = p.host_ip == q.host_ip or p.host_ip in WILDCARD_IPS or q.host_ip in WILDCARD_IPS
            if same_ip and (q.host_port, q.proto) == (p.host_port, p.proto):
                add(i, f"host port {p.host_port}/{p.proto} is used twice")
    for c in containers:
        if c["Id"] == container_id:
            continue
        name = (c.get("Names") or ["?"])[0].lstrip("/")
        for cp in c.get("Ports") or []:
            for i, p in enumerate(ports):
                if p and p.host_port and cp.get("PublicPort") == p.host_port and cp.get("Type") == p.proto:
                    add(i, f"host port {p.host_port}/{p.proto} is already published by {name}")
    if check_host:
        own = {(p.host_port, p.proto) for p in own_current if p.host_port}
        for i, p in enumerate(ports):
            if p and p.host_port and (p.host_port, p.proto) not in own and not host_port_free(
                    p.host_ip, p.host_port, p.proto):
                add(i, f"host port {p.host_port}/{p.proto} is in use on this machine")
    return found


def validate_ports(ports: list[PortMapping], container_id: str, containers: list[dict[str, Any]],
                   own_current: list[PortMapping], *, check_host: bool = True) -> list[str]:
    """Clashes caught before saving: duplicates, ports other containers publish, ports taken on this host."""
    found = port_clashes(list(ports), container_id, containers, own_current, check_host=check_host)
    return sorted({e for errs in found.values() for e in errs})


def is_local_engine(url: str) -> bool:
    """True when the engine at `url` publishes ports on this machine (a unix socket, or TCP on loopback), so a
    port bound here also clashes with what the engine would publish."""
    if url.startswith(("unix://", "/", "npipe://")):
        return True
    host = url.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- one form field at a time (the Settings forms check each field as it is typed) ---

PROTOCOLS = ("tcp", "udp", "sctp")
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # dockerd's rule for named volumes


def check_port_text(text: str, what: str, *, required: bool) -> str | None:
    """None when `text` is a port number 1-65535 (or empty and not `required`), else why not."""
    text = text.strip()
    if not text:
        return f"{what} is required" if required else None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        return f"{what} must be a number from 1 to 65535"
    return None


def check_host_ip(text: str) -> str | None:
    text = text.strip().strip("[]")
    if not text:
        return None
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return f"{text!r} is not an IP address"
    return None


def check_env_key(key: str) -> str | None:
    """Docker takes any name without '=' or whitespace; an empty name is a mistake."""
    if not key:
        return "the name is empty"
    if "=" in key:
        return f"{key!r}: a name cannot contain '='"
    if any(c.isspace() for c in key):
        return f"{key!r}: a name cannot contain spaces"
    if "\0" in key:
        return f"{key!r}: a name cannot contain NUL"
    return None


def check_volume_source(kind: str, text: str) -> str | None:
    text = text.strip()
    if kind == "tmpfs":
        return None  # memory: no source
    if kind == "bind":
        if not text:
            return "the host path is required"
        if not text.startswith("/"):
            return f"{text!r}: a host path must be absolute (start with /)"
        if ":" in text:
            return f"{text!r}: a host path cannot contain ':'"
        return None
    if not text:
        return "the volume name is required"
    if not _VOLUME_NAME.match(text):
        return f"{text!r}: a volume name is letters, digits, '_', '.' or '-' (2 or more, not starting with _.-)"
    return None


def check_container_path(text: str) -> str | None:
    text = text.strip()
    if not text:
        return "the container path is required"
    if not text.startswith("/"):
        return f"{text!r}: the container path must be absolute (start with /)"
    if text.rstrip("/") == "":
        return "the container path cannot be /"
    if ":" in text:
        return f"{text!r}: the container path cannot contain ':'"
    return None


@dataclass(frozen=True)
class BindEntry:
    """One HostConfig.Binds entry as the Volumes form shows it."""

    source: str  # an absolute host path (a bind) or a volume name
    target: str
    read_only: bool = False
    options: tuple[str, ...] = ()  # other options (z, Z, nocopy, propagation) kept as they were

    @property
    def kind(self) -> str:
        return "bind" if self.source.startswith("/") else "volume"

    def __str__(self) -> str:
        opts = [o for o in self.options if o not in ("ro", "rw")]
        if self.read_only:
            opts.insert(0, "ro")
        return f"{self.source}:{self.target}" + (f":{','.join(opts)}" if opts else "")


def parse_bind(text: str) -> BindEntry:
    parts = text.split(":")
    if len(parts) < 2:
        raise ValueError(f"{text!r} is not SOURCE:/container/path[:ro]")
    opts = tuple(o for o in (parts[2].split(",") if len(parts) > 2 else []) if o)
    return BindEntry(parts[0], parts[1], "ro" in opts, tuple(o for o in opts if o not in ("ro", "rw")))


def mount_entry(m: dict[str, Any]) -> BindEntry:
    """A HostConfig.Mounts entry as the Volumes form shows it (its Type is kept by the row, not guessed)."""
    return BindEntry(str(m.get("Source") or ""), str(m.get("Target") or ""), bool(m.get("ReadOnly")))


def edited_mount(m: dict[str, Any], kind: str, entry: BindEntry) -> dict[str, Any]:
    """The Mounts entry `m` with the form's type, source, target and mode; options of another type dropped."""
    out = dict(m, Type=kind, Source=entry.source, Target=entry.target, ReadOnly=entry.read_only)
    for opts, owner in (("BindOptions", "bind"), ("VolumeOptions", "volume"), ("TmpfsOptions", "tmpfs")):
        if kind != owner:
            out.pop(opts, None)
    if kind == "tmpfs":
        out.pop("Source", None)
    return out


def mount_point_clashes(targets: list[str | None]) -> dict[int, str]:
    """Rows (by index) whose container path an earlier row already uses: dockerd refuses 'Duplicate mount
    point'."""
    seen: set[str] = set()
    out: dict[int, str] = {}
    for i, t in enumerate(targets):
        if not t:
            continue
        norm = t.rstrip("/") or "/"
        if norm in seen:
            out[i] = f"duplicate mount point: {norm}"
        seen.add(norm)
    return out


def env_key_clashes(keys: list[str | None]) -> dict[int, str]:
    seen: set[str] = set()
    out: dict[int, str] = {}
    for i, k in enumerate(keys):
        if not k:
            continue
        if k in seen:
            out[i] = f"{k} is set twice"
        seen.add(k)
    return out


# --- the plan ---


@dataclass
class Plan:
    rename: str | None = None
    restart_policy: str | None = None
    connect: list[str] = field(default_factory=list)
    disconnect: list[str] = field(default_factory=list)
    recreate: list[str] = field(default_factory=list)  # what forces a recreate, in words

    @property
    def empty(self) -> bool:
        return not (self.rename or self.restart_policy or self.connect or self.disconnect or self.recreate)

    def describe(self) -> list[str]:
        out = []
        if self.rename:
            out.append(f"rename to {self.rename} (in place)")
        if self.restart_policy:
            out.append(f"restart policy {self.restart_policy} (in place)")
        out += [f"connect {n} (in place)" for n in self.connect]
        out += [f"disconnect {n} (in place)" for n in self.disconnect]
        if self.recreate:
            out.append("recreate the container for: " + ", ".join(self.recreate))
        return out


def plan(old: Settings, new: Settings) -> Plan:
    p = Plan()
    if new.name != old.name:
        p.rename = new.name
    if new.restart != old.restart:
        p.restart_policy = new.restart
    if new.command != old.command:
        p.recreate.append("command")
    if new.env != old.env:
        p.recreate.append("environment")
    if sorted(map(str, new.ports)) != sorted(map(str, old.ports)):
        p.recreate.append("ports")
    if new.binds != old.binds or new.mounts != old.mounts:
        p.recreate.append("volumes")
    if new.network_mode != old.network_mode:
        p.recreate.append("network mode")
    else:
        p.connect = [n for n in new.networks if n not in old.networks]
        p.disconnect = [n for n in old.networks if n not in new.networks]
    return p


def _restart_policy(name: str, old: dict[str, Any] | None) -> dict[str, Any]:
    retries = (old or {}).get("MaximumRetryCount", 0) if name == "on-failure" else 0
    return {"Name": "" if name == "no" else name, "MaximumRetryCount": retries}


def recreate_body(data: dict[str, Any], new: Settings) -> tuple[dict[str, Any], list[str]]:
    """The create body for the replacement: inspect's Config and HostConfig, only the edited fields changed.
    Returns it with the extra networks to connect after create (create takes one endpoint on older APIs)."""
    old = from_inspect(data)
    cfg: dict[str, Any] = copy.deepcopy(data.get("Config") or {})
    hc: dict[str, Any] = copy.deepcopy(data.get("HostConfig") or {})
    if new.env != old.env:
        cfg["Env"] = new.env
    if cfg.get("Hostname") == data.get("Id", "")[:12]:
        cfg.pop("Hostname", None)  # the old id as hostname: let the new container get its own
        # Podman lists the HOSTNAME it set in Config.Env too: the replacement would carry the old id in it
        cfg["Env"] = [e for e in cfg.get("Env") or [] if e != f"HOSTNAME={data['Id'][:12]}"] or None
    if hc.get("Ulimits"):
        # Podman's inspect names them RLIMIT_NOFILE, which its create refuses; Docker's name is `nofile`
        hc["Ulimits"] = [dict(u, Name=str(u.get("Name", "")).lower().removeprefix("rlimit_"))
                         for u in hc["Ulimits"]]  # fmt: skip
    if new.command != old.command:
        cfg["Cmd"] = new.command
    if sorted(map(str, new.ports)) != sorted(map(str, old.ports)):
        bindings: dict[str, list[dict[str, str]]] = {}
        for p in new.ports:
            bindings.setdefault(p.key, []).append({"HostIp": p.host_ip, "HostPort": str(p.host_port or "")})
        hc["PortBindings"] = bindings
        exposed = dict(cfg.get("ExposedPorts") or {})
        for key in bindings:
            exposed.setdefault(key, {})
        cfg["ExposedPorts"] = exposed
    # Anonymous volumes are in `binds` by name (they would be new and empty in the replacement otherwise); one the
    # user removed also leaves Config.Volumes, so only an image's own VOLUME brings a fresh one back.
    hc["Binds"] = list(new.binds) or None
    kept = {b.split(":")[1] for b in new.binds if ":" in b}
    dropped = {a.split(":")[1] for a in old.anonymous} - kept
    if dropped and cfg.get("Volumes"):
        cfg["Volumes"] = {k: v for k, v in cfg["Volumes"].items() if k not in dropped} or None
    if new.mounts or hc.get("Mounts"):
        hc["Mounts"] = [dict(m) for m in new.mounts] or None
    hc["RestartPolicy"] = _restart_policy(new.restart, hc.get("RestartPolicy"))
    hc["NetworkMode"] = new.network_mode
    endpoints: dict[str, Any] = {}
    old_nets = (data.get("NetworkSettings") or {}).get("Networks") or {}
    mode = new.network_mode
    if mode not in ("host", "none") and not mode.startswith("container:"):
        primary = "bridge" if mode == "default" else mode
        ep = old_nets.get(primary) or {}
        aliases = [a for a in (ep.get("Aliases") or []) if a != data.get("Id", "")[:12]]
        if primary != "bridge":  # aliases are for user networks; Podman knows no "bridge" endpoint (for_settings)
            endpoints[primary] = {"Aliases": aliases or None}
        extra = [n for n in new.networks if n != primary]
    else:
        extra = []
    body = dict(cfg)
    body["HostConfig"] = hc
    if endpoints:
        body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    return body, extra


def apply(api: Any, cid: str, new: Settings) -> str:
    """Apply `new` to the container; returns the id of the container that now carries the settings.
    A failed recreate puts the old container back as it was (name, running state) and removes the new one."""
    data = for_settings(api, api.inspect_container(cid))
    old = from_inspect(data)
    p = plan(old, new)
    if not p.recreate:
        if p.rename:
            api.rename(cid, p.rename)
        if p.restart_policy:
            api.update_container(cid, restart_policy=_restart_policy(p.restart_policy, None))
        for n in p.disconnect:
            api.disconnect_container_from_network(cid, n)
        for n in p.connect:
            api.connect_container_to_network(cid, n)
        return cid
    body, extra = recreate_body(data, new)
    was_running = bool((data.get("State") or {}).get("Running"))
    parked = f"{old.name}-portside-old-{uuid.uuid4().hex[:6]}"
    api.rename(cid, parked)
    try:
        res = api._post_json(api._url("/containers/create"), data=body, params={"name": new.name})
        new_id: str = api._result(res, True)["Id"]
    except Exception:
        api.rename(cid, old.name)
        raise
    try:
        for n in extra:
            api.connect_container_to_network(new_id, n)
        if was_running:
            api.stop(cid)
            api.start(new_id)
    except Exception:
        try:
            api.remove_container(new_id, force=True)
        finally:
            api.rename(cid, old.name)
            if was_running:
                api.start(cid)
        raise
    api.remove_container(cid, force=True)
    return new_id
