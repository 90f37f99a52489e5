"""NetworkService: Docker's networks (bridge, host, none, user bridges) and each container's network sandbox.

State on disk (atomic JSON, see store.py):
  <data_root>/network/networks/<id>.json    Docker's /networks record, plus private "_"-prefixed keys
  <data_root>/network/sandboxes/<cid>.json  a container's endpoints, published ports and DNS settings
  <data_root>/network/files/<cid>/          its hosts, resolv.conf and hostname files (bind-mounted by the runtime)
  <exec_root>/netns/<cid>                   its pinned network namespace

Everything put in the kernel carries the engine's name: bridges and host-side veths have the interface alias
"portside <nft_table> ...", all NAT lives in the nftables table `nft_table`. So start() can reconcile (recreate
what is missing, delete what nobody owns) and close()/removal leaves nothing behind.

Methods block (netlink, nft, fsync): call them from a worker thread (asyncio.to_thread) in async code.
"""

from __future__ import annotations

import calendar
import contextlib
import copy
import ipaddress
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.crashpoints import crashpoint
from engine.errors import Conflict, EngineError, Forbidden, InvalidArgument, NotFound
from engine.net import files, ipam, legacy_links, links, nft, nsutil, ports, sockhook, store

log = logging.getLogger(__name__)

PREDEFINED = ("bridge", "host", "none")
DEFAULT_MTU = 1500


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


def _public(rec: dict[str, Any], containers: bool = True) -> dict[str, Any]:
    """The record in dockerd's shape. The IPAM Config shows what the user configured (as libnetwork keeps it: a
    subnet given without a gateway shows no Gateway), the allocated pool and gateway when nothing was given, and
    null for host/none; `containers` False: the list's shape, whose Containers dockerd leaves empty."""
    out = {k: copy.deepcopy(v) for k, v in rec.items() if not k.startswith("_")}
    if rec["Driver"] in ("host", "null") and not rec.get("ConfigOnly"):
        out["IPAM"]["Config"] = None
    elif rec.get("_shown_ipam") is not None:
        out["IPAM"]["Config"] = copy.deepcopy(rec["_shown_ipam"])
    if not containers:
        out["Containers"] = {}
    return out


def _pool_entry(subnet: str | None, ip_range: str | None, gateway: str | None,
                aux: dict[str, str] | None) -> dict[str, Any] | None:
    """An IPAM Config entry as libnetwork shows a configured pool: only the keys that were given."""
    if not subnet:
        return None
    entry: dict[str, Any] = {"Subnet": subnet}
    if ip_range:
        entry["IPRange"] = ip_range
    if gateway:
        entry["Gateway"] = gateway
    if aux:
        entry["AuxiliaryAddresses"] = dict(aux)
    return entry


def _created_ns(created: str) -> int:
    """A record's Created ("2006-01-02T15:04:05.999999999Z") in unix nanoseconds."""
    base, _, frac = created.rstrip("Z").partition(".")
    t = time.strptime(base, "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(t) * 1_000_000_000 + int((frac + "000000000")[:9])


@dataclass
class Sandbox:
    """What the runtime and the API need about a container's network."""

    container_id: str
    netns_path: Path | None  # None: the host's namespace (network_mode host)
    hosts_path: Path
    resolv_conf_path: Path
    hostname_path: Path
    network_settings: dict[str, Any] = field(default_factory=dict)


class NetworkService:
    def __init__(
        self,
        data_root: Path,
        exec_root: Path,
        *,
        default_bridge: str = "portside0",
        nft_table: str = "portside",
        default_subnet: str | None = None,
        name_prefix: str | None = None,
        enable_ip_forward: bool = True,
        host_resolv_conf: Path = Path("/etc/resolv.conf"),
        dns_upstreams: list[tuple[str, int]] | None = None,
        mtu: int = DEFAULT_MTU,
        socket_hook: bool = True,
        host_id: str | None = None,
    ) -> None:
        self.data_root = Path(data_root)
        self.exec_root = Path(exec_root)
        self.default_bridge = default_bridge
        self.table = nft_table
        self.default_subnet = default_subnet
        # Test instances name every interface "pst..." so they are easy to find; the real one uses Docker's style.
        if name_prefix is None:
            name_prefix = "pst" if default_bridge.startswith("pst") else ""
        self.name_prefix = name_prefix
        self.enable_ip_forward = enable_ip_forward
        self.host_resolv_conf = host_resolv_conf
        self.dns_upstreams = dns_upstreams
        self.mtu = mtu
        # dockerd derives the ULA /48 of --ipv6 networks without an IPv6 subnet from its host id (the engine id)
        self.host_id = host_id or str(self.data_root.resolve())
        self.net_dir = self.data_root / "network" / "networks"
        self.sb_dir = self.data_root / "network" / "sandboxes"
        self.files_dir = self.data_root / "network" / "files"
        self.netns_dir = self.exec_root / "netns"
        self.networks: dict[str, dict[str, Any]] = {}
        self.sandboxes: dict[str, dict[str, Any]] = {}
        self.prepared: set[str] = set()  # containers whose netns and files prepare_sandbox made ahead
        self.allocator = ports.PortAllocator(lambda: nft.foreign_published(self.table))
        self.lock = threading.RLock()
        self.dns: Any = None  # engine.net.dns.DnsServer, started when a container joins a user network
        # host clients of published ports connect straight to the container (sockhook.py); nft DNAT otherwise
        self.socket_hook = socket_hook
        self.hook: sockhook.SockHook | None = None
        self.started = False

    # ------------------------------------------------------------------ names

    @property
    def alias_prefix(self) -> str:
        return f"portside {self.table} "

    def _bridge_name(self, net_id: str) -> str:
        return (self.name_prefix or "br-") + net_id[:12]

    def _veth_name(self) -> str:
        if self.name_prefix:
            return self.name_prefix + secrets.token_hex(5)
        return "veth" + secrets.token_hex(4)[:7]

    def _netns_path(self, cid: str) -> Path:
        return self.netns_dir / cid[:64]

    # ------------------------------------------------------------------ lifecycle

    def start(self, running: Iterable[str] | None = None) -> None:
        """Load the records and bring the kernel in line with them.

        `running`: ids of containers the daemon knows to be running; sandboxes of any other container are
        removed (None: keep every sandbox whose namespace still exists).
        """
        with self.lock:
            self.net_dir.mkdir(parents=True, exist_ok=True)
            self.sb_dir.mkdir(parents=True, exist_ok=True)
            self.networks = {k: v for k, v in store.read_all(self.net_dir).items() if isinstance(v, dict)}
            self.sandboxes = {k: v for k, v in store.read_all(self.sb_dir).items() if isinstance(v, dict)}
            self._ensure_predefined()
            for net in self.networks.values():
                if net["Driver"] == "bridge":
                    self._ensure_bridge(net)
            keep = set(running) if running is not None else None
            for cid, sb in list(self.sandboxes.items()):
                alive = sb.get("Mode") == "host" or (
                    sb.get("NetnsPath") is not None and nsutil.is_netns(Path(sb["NetnsPath"]))
                )
                if sb.get("Mode") == "container":
                    alive = sb.get("Owner") in self.sandboxes
                if not alive or (keep is not None and cid not in keep):
                    self._remove_sandbox_locked(cid, apply=False)
                    continue
                self._repair_sandbox(sb)
                for m in sb.get("Ports", []):
                    self.allocator.claim(cid, ports.Mapping(**m))
            # address reservations no sandbox's endpoint holds: a crash in the middle of create_sandbox (no sandbox)
            # or of a connect (the sandbox record was not saved with its new endpoint)
            for net in self.networks.values():
                stale = [c for c in net["Containers"] if c not in self.sandboxes or not any(
                    ep.get("NetworkID") == net["Id"] for ep in self.sandboxes[c].get("Endpoints", {}).values())]
                for c in stale:
                    log.warning("recovery: dropped the address reservation of container %s on network %s, which its "
                                "sandbox does not hold", c[:12], net["Name"])
                    del net["Containers"][c]
                if stale:
                    self._save_network(net)
            self._remove_stale_kernel_state()
            if self.enable_ip_forward:
                links.set_sysctl("net/ipv4/ip_forward", "1")
            if self.socket_hook and self.hook is None:
                self.hook = sockhook.SockHook.open()
            self._apply_nft()
            self.started = True
            if any(self._sandbox_dns_networks(sb) for sb in self.sandboxes.values()):
                self._dns().sync(self)

    def close(self) -> None:
        """Stop the engine's own threads (DNS) and its socket hook. The rest of the kernel state stays: running
        containers keep working, published ports through nft DNAT."""
        with self.lock:
            if self.dns is not None:
                self.dns.close()
                self.dns = None
            if self.hook is not None:
                self.hook.close()
                self.hook = None
            self.started = False

    def destroy(self) -> None:
        """Remove every sandbox, network, bridge and the nft table (tests; uninstall)."""
        with self.lock:
            if self.hook is not None:
                self.hook.close()
                self.hook = None
            for cid in list(self.sandboxes):
                self._remove_sandbox_locked(cid, apply=False)
            for net in list(self.networks.values()):
                if net["Driver"] == "bridge":
                    links.delete_link(net["_bridge"])
                (self.net_dir / f"{net['Id']}.json").unlink(missing_ok=True)
            self.networks.clear()
            self._remove_stale_kernel_state()
            nft.delete_table(self.table)
        self.close()

    def _ensure_predefined(self) -> None:
        have = {n["Name"] for n in self.networks.values()}
        if "bridge" not in have:
            subnet = ipam.parse_subnet(self.default_subnet) if self.default_subnet else self._pick_subnet()
            gw = str(next(subnet.hosts()))
            opts = {
                "com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                "com.docker.network.bridge.name": self.default_bridge,
                "com.docker.network.driver.mtu": str(self.mtu),
            }
            rec = self._record("bridge", "bridge", subnet, gw, None, False, {}, opts)
            rec["_bridge"] = self.default_bridge
            self._save_network(rec)
        for name, driver in (("host", "host"), ("none", "null")):
            if name not in have:
                rec = self._record(name, driver, None, None, None, False, {}, {})
                self._save_network(rec)

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        used = links.host_routes() + self._used_subnets()
        resolvers = [s for s in self._host_resolv().nameservers if not files.is_loopback(s)]
        return ipam.choose_subnet(used, [s for s in resolvers if ":" not in s])

    def _record(
        self,
        name: str,
        driver: str,
        subnet: ipaddress.IPv4Network | None,
        gateway: str | None,
        ip_range: str | None,
        internal: bool,
        labels: dict[str, str],
        options: dict[str, str],
        attachable: bool = False,
        ipam_options: dict[str, str] | None = None,
        scope: str = "local",
        config_only: bool = False,
        config_from: str = "",
    ) -> dict[str, Any]:
        config: list[dict[str, str]] = []
        if subnet is not None:
            entry = {"Subnet": str(subnet), "Gateway": gateway or ""}
            if ip_range:
                entry["IPRange"] = ip_range
            config.append(entry)
        return {
            "Name": name,
            "Id": secrets.token_hex(32),
            "Created": _now(),
            "Scope": scope,
            "Driver": driver,
            "EnableIPv4": True,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": ipam_options, "Config": config},
            "Internal": internal,
            "Attachable": attachable,
            "Ingress": False,
            "ConfigFrom": {"Network": config_from},
            "ConfigOnly": config_only,
            "Containers": {},
            "Options": dict(options),
            "Labels": dict(labels),
        }

    def _save_network(self, rec: dict[str, Any], durable: bool = True) -> None:
        store.write_json(self.net_dir / f"{rec['Id']}.json", rec, durable)
        self.networks[rec["Id"]] = rec

    def _save_network_releasing(self, rec: dict[str, Any]) -> None:
        """A network record written while something is released (an endpoint, a sandbox): a failure to write it (a
        full disk) must not stop the release half-way - the record in memory is right, and start() drops any
        reservation the one on disk still holds for a sandbox that is gone."""
        try:
            self._save_network(rec, durable=False)
        except OSError as e:
            self.networks[rec["Id"]] = rec
            log.warning("network %s: record not written while releasing an endpoint: %s", rec["Name"], e)

    def _save_sandbox(self, sb: dict[str, Any]) -> None:
        # Not fsynced (two fsyncs on every run): a sandbox record describes kernel state (netns, veths, DNAT) that a
        # power loss takes with it; an engine crash keeps the page cache, so the record is there for start().
        store.write_json(self.sb_dir / f"{sb['Id']}.json", sb, durable=False)
        self.sandboxes[sb["Id"]] = sb

    def _ensure_bridge(self, net: dict[str, Any]) -> None:
        cfg = net["IPAM"]["Config"][0]
        subnet = ipaddress.ip_network(cfg["Subnet"])
        mtu = int(net["Options"].get("com.docker.network.driver.mtu", self.mtu))
        alias = self.alias_prefix + "net " + net["Id"]
        links.ensure_bridge(net["_bridge"], cfg["Gateway"], subnet.prefixlen, mtu, alias)
        # Forwarding on our bridges alone lets containers reach out even where the host's ip_forward is off.
        links.set_sysctl(f"net/ipv4/conf/{net['_bridge']}/forwarding", "1")
        v6 = net.get("_v6")
        if v6:
            # IPv6 on this bridge only (disable_ipv6=0 for it, as dockerd's setupBridgeIPv6 does), so a host with
            # IPv6 off by default (all/default disable_ipv6=1) keeps it off everywhere else
            links.ensure_bridge_v6(net["_bridge"], v6["Gateway"], ipaddress.ip_network(v6["Subnet"]).prefixlen)
            if self.enable_ip_forward:
                # IPv6 has no per-interface forwarding switch: dockerd sets the global one when it may (--ip-forward)
                links.set_sysctl("net/ipv6/conf/all/forwarding", "1")

    def _remove_stale_kernel_state(self) -> None:
        bridges = {n["_bridge"] for n in self.networks.values() if n.get("_bridge")}
        veths = {
            ep["HostIfname"]
            for sb in self.sandboxes.values()
            for ep in sb.get("Endpoints", {}).values()
            if ep.get("HostIfname")
        }
        for link in links.list_links():
            if not link.alias.startswith(self.alias_prefix):
                continue
            stale_bridge = link.kind == "bridge" and link.name not in bridges
            if stale_bridge or (link.kind == "veth" and link.name not in veths):
                log.warning("recovery: dropped %s %s (%s), which no network or sandbox record names", link.kind,
                            link.name, link.alias.removeprefix(self.alias_prefix))
                links.delete_link(link.name)
        if self.netns_dir.is_dir():
            owned = {Path(sb["NetnsPath"]).name for sb in self.sandboxes.values() if sb.get("NetnsPath")}
            for p in self.netns_dir.iterdir():
                if p.name not in owned:
                    log.warning("recovery: dropped network namespace %s, which no sandbox record names", p.name)
                    nsutil.remove_netns(p)

    def _apply_nft(self) -> None:
        bridges = []
        for net in self.networks.values():
            if net["Driver"] == "bridge":
                cfg = net["IPAM"]["Config"][0]
                bridges.append(nft.BridgeRules(net["_bridge"], cfg["Subnet"], bool(net["Internal"]),
                                               (net.get("_v6") or {}).get("Subnet", "")))
        rules = []
        for sb in self.sandboxes.values():
            ip = sb.get("PortsTarget") or ""
            for m in sb.get("Ports", []) if ip else []:
                rules.append(nft.PortRule(m["proto"], m["host_ip"], m["host_port"], ip, m["container_port"]))
        nft.apply(self.table, sorted(bridges, key=lambda b: b.ifname), rules)
        self._hook("sync", rules)

    def _hook(self, op: str, rules: list[nft.PortRule]) -> None:
        """Mirror DNAT rules into the socket hook's map (op: sync, add, remove). A failing hook is dropped whole
        (nft serves every port then) rather than left with entries that may be stale."""
        if self.hook is None:
            return
        entries = [sockhook.Entry(r.proto, r.host_ip, r.host_port, r.container_ip, r.container_port) for r in rules]
        try:
            getattr(self.hook, op)(entries)
        except OSError:
            log.exception("published ports: socket hook %s failed, dropping the hook (nft DNAT serves)", op)
            self.hook.close()
            self.hook = None

    @staticmethod
    def _port_rules(sb: dict[str, Any]) -> list[nft.PortRule]:
        ip = sb.get("PortsTarget") or ""
        return [
            nft.PortRule(m["proto"], m["host_ip"], m["host_port"], ip, m["container_port"])
            for m in (sb.get("Ports") or [] if ip else [])
        ]

    def _add_port_rules(self, sb: dict[str, Any]) -> None:
        """One container's DNATs, added to the live table (no whole-table swap on the `run -p` path)."""
        try:
            nft.add_ports(self.table, self._port_rules(sb))
        except EngineError:
            self._apply_nft()  # the table went missing or differs: render it whole
        self._hook("add", self._port_rules(sb))

    def _delete_port_rules(self, sb: dict[str, Any]) -> None:
        self._hook("remove", self._port_rules(sb))
        try:
            nft.delete_ports(self.table, self._port_rules(sb))
        except EngineError:
            self._apply_nft()

    # ------------------------------------------------------------------ networks

    def _find(self, ref: str) -> dict[str, Any]:
        for n in self.networks.values():
            if n["Name"] == ref:
                return n
        if ref in self.networks:
            return self.networks[ref]
        hits = [n for n in self.networks.values() if ref and n["Id"].startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise InvalidArgument(f"network {ref} is ambiguous ({len(hits)} matches found on name)")
        raise NotFound(f"network {ref} not found")

    def create_network(
        self,
        name: str,
        *,
        driver: str = "bridge",
        subnet: str | None = None,
        gateway: str | None = None,
        ip_range: str | None = None,
        aux_addresses: dict[str, str] | None = None,
        internal: bool = False,
        attachable: bool = False,
        ingress: bool = False,
        enable_ipv6: bool = False,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        ipam_options: dict[str, str] | None = None,
        scope: str = "",
        config_only: bool = False,
        config_from: str = "",
        check_duplicate: bool = True,
        subnet6: str | None = None,
        gateway6: str | None = None,
        ip_range6: str | None = None,
        aux_addresses6: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A network, checked in libnetwork's order with its texts. `ipam_options` is kept as given (None shows as
        null, as for a request without IPAM); `config_only` makes a placeholder holding IPAM config, options and
        labels for `config_from` networks (no bridge, no containers). The *6 arguments are the IPv6 pool: used
        with `enable_ipv6` (without a subnet6 a /64 of the host's ULA /48 is taken, as dockerd 27+ does); without
        it the pool is only kept and shown, unchecked, as dockerd does."""
        with self.lock:
            if not name:
                raise InvalidArgument("network name must not be empty")
            if name in PREDEFINED:
                raise Forbidden(f"{name} is a pre-defined network and cannot be created")
            if any(n["Name"] == name for n in self.networks.values()):
                raise Conflict(f"network with name {name} already exists")
            driver = driver or "bridge"
            if config_only and (ingress or internal or attachable or scope):
                raise Forbidden("configuration network can only contain network specific fields. Network operator "
                                "fields like [ ingress | internal | attachable | scope ] are not supported.")
            if config_from:
                if config_only:
                    raise Forbidden("a configuration network cannot depend on another configuration network")
                if (enable_ipv6 or labels or ipam_options or subnet or ip_range or gateway or aux_addresses
                        or subnet6):
                    raise Forbidden("user specified configurations are not supported if the network depends on a "
                                    "configuration network")
                if options:
                    raise Forbidden("network driver options are not supported if the network depends on a "
                                    "configuration network")
            pool6 = _pool_entry(subnet6, ip_range6, gateway6, aux_addresses6)
            if config_only:
                return self._create_config_only(name, subnet, gateway, ip_range, aux_addresses, labels, options,
                                                ipam_options, pool6, enable_ipv6)
            if driver in ("host", "null"):
                raise Forbidden(f'only one instance of "{driver}" network is allowed')
            if driver != "bridge":
                raise NotFound(f'plugin "{driver}" not found')
            if ingress:
                raise Forbidden("Ingress network can only be global scope network")
            if scope == "swarm":
                raise Forbidden("cannot create a swarm scoped network when swarm is not active")
            shown: list[dict[str, Any]] | None = None
            if config_from:
                src = next((n for n in self.networks.values() if n.get("ConfigOnly") and n["Name"] == config_from),
                           None)
                if src is None:
                    raise NotFound(f'configuration network "{config_from}" does not exist')
                # libnetwork's applyConfigurationTo: what the config network has replaces the (empty) own values
                enable_ipv6 = bool(src.get("EnableIPv6"))
                labels = dict(src["Labels"]) if src["Labels"] else labels
                options = dict(src["Options"])
                if src["IPAM"]["Options"]:
                    ipam_options = dict(src["IPAM"]["Options"])
                pools = src["IPAM"]["Config"] or []
                v4 = [p for p in pools if not ipam.is_v6(p.get("Subnet") or "")]
                v6 = [p for p in pools if ipam.is_v6(p.get("Subnet") or "")]
                if v4:
                    subnet, gateway = v4[0].get("Subnet"), v4[0].get("Gateway")
                    ip_range, aux_addresses = v4[0].get("IPRange"), v4[0].get("AuxiliaryAddresses")
                pool6 = copy.deepcopy(v6[0]) if v6 else None
            used = self._used_subnets()
            if subnet:
                net = ipam.check_subnet(subnet)
                if not isinstance(net, ipaddress.IPv4Network):
                    raise InvalidArgument(f"{subnet} is not an IPv4 subnet")
                if any(net.overlaps(u) for u in used):
                    raise Forbidden("Pool overlaps with other one on this address space")
            else:
                if ip_range or gateway:
                    raise InvalidArgument("ip-range or gateway specified without a subnet")
                net = self._pick_subnet()
            errs = ipam.pool_errors(net, ip_range, gateway, aux_addresses)
            net6: ipaddress.IPv6Network | None = None
            if enable_ipv6 and pool6 is not None:
                # dockerd's ValidateIPAM checks an IPv6 pool only for an IPv6 network, joining its errors to the
                # IPv4 pool's
                checked = ipam.check_subnet(pool6["Subnet"])
                if not isinstance(checked, ipaddress.IPv6Network):
                    raise InvalidArgument(f"{pool6['Subnet']} is not an IPv6 subnet")
                net6 = checked
                errs += ipam.pool_errors(net6, pool6.get("IPRange"), pool6.get("Gateway"),
                                         pool6.get("AuxiliaryAddresses"))
            ipam.raise_joined(errs)
            gw = gateway or ipam.default_gateway(net)
            v6_rec: dict[str, Any] | None = None
            if enable_ipv6:
                if not Path("/proc/sys/net/ipv6").is_dir():
                    raise Forbidden("IPv6 is not available: this host's kernel has it disabled (ipv6.disable=1)")
                used6 = self._used_subnets6()
                if net6 is not None:
                    if any(net6.overlaps(u) for u in used6):
                        raise Forbidden("Pool overlaps with other one on this address space")
                else:
                    net6 = ipam.choose_subnet6(self.host_id, used6)
                v6_rec = {"Subnet": str(net6),
                          "Gateway": (pool6 or {}).get("Gateway") or ipam.default_gateway(net6),
                          "IPRange": (pool6 or {}).get("IPRange") or "",
                          "Aux": sorted(((pool6 or {}).get("AuxiliaryAddresses") or {}).values())}
            aux = dict(aux_addresses or {})
            # libnetwork's buildIPAMResources: the configured pools as given (no Gateway key when none was asked
            # for), IPv4 before IPv6, then the allocated pool of a family nobody configured
            entry4 = _pool_entry(subnet, ip_range, gateway, aux)
            shown4 = [entry4] if entry4 is not None else []
            shown6 = [pool6] if pool6 is not None else []
            if shown4 or shown6 or v6_rec is not None:
                shown = [*shown4, *shown6]
                if not shown4:
                    shown.append({"Subnet": str(net), "Gateway": gw})
                if v6_rec is not None and not shown6:
                    shown.append({"Subnet": v6_rec["Subnet"], "Gateway": v6_rec["Gateway"]})
            opts = dict(options or {})
            rec = self._record(name, "bridge", net, gw, ip_range, internal, dict(labels or {}), opts, attachable,
                               ipam_options=ipam_options, scope=scope or "local", config_from=config_from)
            rec["EnableIPv6"] = bool(enable_ipv6)
            if v6_rec is not None:
                rec["_v6"] = v6_rec
            if pool6 is not None:
                rec["_v6_config"] = pool6  # a static IPv6 subnet: endpoints may ask addresses in it
            if shown is not None:
                rec["_shown_ipam"] = shown
            if aux:
                rec["_aux"] = sorted(aux.values())
            rec["_bridge"] = opts.get("com.docker.network.bridge.name") or self._bridge_name(rec["Id"])
            if any(n.get("_bridge") == rec["_bridge"] for n in self.networks.values()):
                raise Conflict(f"bridge name {rec['_bridge']} is already in use")
            try:
                self.networks[rec["Id"]] = rec
                self._ensure_bridge(rec)
                self._apply_nft()
                crashpoint("network.create.bridge")
                self._save_network(rec)
            except BaseException:
                self.networks.pop(rec["Id"], None)
                links.delete_link(rec["_bridge"])
                (self.net_dir / f"{rec['Id']}.json").unlink(missing_ok=True)
                try:
                    self._apply_nft()
                except EngineError:
                    log.exception("restoring nftables after a failed network create")
                raise
            return _public(rec)

    def _create_config_only(
        self,
        name: str,
        subnet: str | None,
        gateway: str | None,
        ip_range: str | None,
        aux_addresses: dict[str, str] | None,
        labels: dict[str, str] | None,
        options: dict[str, str] | None,
        ipam_options: dict[str, str] | None,
        pool6: dict[str, Any] | None = None,
        enable_ipv6: bool = False,
    ) -> dict[str, Any]:
        # libnetwork: driver reset to "null", scope local, nothing allocated or plumbed; the pool is checked when a
        # network uses it (config_from)
        rec = self._record(name, "null", None, None, None, False, dict(labels or {}), dict(options or {}),
                           ipam_options=ipam_options, config_only=True)
        rec["EnableIPv6"] = bool(enable_ipv6)
        config: list[dict[str, Any]] = []
        if subnet:
            ipam.check_pool(ipam.check_subnet(subnet), ip_range, gateway, aux_addresses)
            config.append({"Subnet": subnet, **(_pool_entry(subnet, ip_range, gateway, aux_addresses) or {})})
        elif ip_range or gateway:
            raise InvalidArgument("ip-range or gateway specified without a subnet")
        if pool6 is not None:
            if enable_ipv6:
                ipam.check_pool(ipam.check_subnet(pool6["Subnet"]), pool6.get("IPRange"), pool6.get("Gateway"),
                                pool6.get("AuxiliaryAddresses"))
            config.append(pool6)
        rec["IPAM"]["Config"] = config or None
        self._save_network(rec)
        return _public(rec)

    def _used_subnets(self) -> list[ipaddress.IPv4Network]:
        return [ipam.parse_subnet(c["Subnet"]) for n in self.networks.values() if not n.get("ConfigOnly")
                for c in n["IPAM"]["Config"] or []]

    def _used_subnets6(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipam.parse_any(n["_v6"]["Subnet"]) for n in self.networks.values() if n.get("_v6")]

    def inspect(self, ref: str) -> dict[str, Any]:
        with self.lock:
            return _public(self._find(ref))

    def list_networks(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for n in sorted(self.networks.values(), key=lambda r: r["Created"]):
                if self._matches(n, filters or {}):
                    out.append(_public(n, containers=False))
            return out

    @staticmethod
    def _matches(n: dict[str, Any], filters: dict[str, list[str]]) -> bool:
        for key, values in filters.items():
            if isinstance(values, dict):
                values = [k for k, v in values.items() if v]
            if not values:
                continue
            if key == "name" and not any(v in n["Name"] for v in values):
                return False
            if key == "id" and not any(n["Id"].startswith(v) for v in values):
                return False
            if key == "driver" and n["Driver"] not in values:
                return False
            if key == "scope" and n["Scope"] not in values:
                return False
            if key == "type":
                kind = "builtin" if n["Name"] in PREDEFINED else "custom"
                if kind not in values:
                    return False
            if key == "label":
                for v in values:
                    k, eq, val = v.partition("=")
                    if k not in n["Labels"] or (eq and n["Labels"][k] != val):
                        return False
            if key == "dangling":
                dangling = n["Name"] not in PREDEFINED and not n["Containers"]
                if (values[0] in ("true", "1")) != dangling:
                    return False
        return True

    def remove(self, ref: str) -> None:
        with self.lock:
            n = self._find(ref)
            if n["Name"] in PREDEFINED:
                raise Forbidden(f"{n['Name']} is a pre-defined network and cannot be removed")
            if n.get("ConfigOnly") and any(m["ConfigFrom"]["Network"] == n["Name"] for m in self.networks.values()):
                raise Forbidden(f'configuration network "{n["Name"]}" is in use')
            if n["Containers"]:
                raise Forbidden(f"error while removing network: network {n['Name']} id {n['Id']} has active endpoints")
            self._remove_network_locked(n)

    def _remove_network_locked(self, n: dict[str, Any]) -> None:
        del self.networks[n["Id"]]
        self._apply_nft()
        if n.get("_bridge"):
            links.delete_link(n["_bridge"])
        crashpoint("network.rm.record")
        (self.net_dir / f"{n['Id']}.json").unlink(missing_ok=True)

    def prune(self, filters: dict[str, list[str]] | None = None, until_ns: int | None = None) -> dict[str, list[str]]:
        """dockerd's localNetworksPrune: unused, not config-only, created before `until_ns`, labels matching (all
        `label!` entries matching keeps a network)."""
        f = dict(filters or {})
        not_labels = f.pop("label!", None)
        f.pop("until", None)
        with self.lock:
            gone = []
            for n in list(self.networks.values()):
                if n["Name"] in PREDEFINED or n["Containers"] or n.get("ConfigOnly"):
                    continue
                if until_ns is not None and _created_ns(n["Created"]) > until_ns:
                    continue
                if not self._matches(n, f):
                    continue
                if not_labels and self._matches(n, {"label": not_labels}):
                    continue
                self._remove_network_locked(n)
                gone.append(n["Name"])
            return {"NetworksDeleted": gone}

    # ------------------------------------------------------------------ sandboxes

    def _host_resolv(self) -> files.ResolvConf:
        try:
            return files.parse_resolv_conf(self.host_resolv_conf.read_text())
        except OSError:
            return files.ResolvConf()

    def prepare_sandbox(self, container_id: str) -> tuple[Path, Path]:
        """What the runtime needs of a bridge or none mode sandbox to set the container up, made ahead: its netns
        (lo up), pinned at its path, and the empty hosts, resolv.conf and hostname files it binds; (netns path,
        files directory). The runtime's create runs meanwhile create_sandbox (which takes these over) adds the
        endpoints, the published ports and the files' content; the process starts after both. discard_prepared
        removes them unless a sandbox took them over; after a crash, start()'s sweep drops a netns no sandbox record
        names and the container's clean-up (remove_sandbox) its files."""
        with self.lock:
            if container_id in self.sandboxes:
                raise Conflict(f"container {container_id} already has a network sandbox")
            fdir = self.files_dir / container_id
            ns_path = self._netns_path(container_id)
            try:
                for name in ("hosts", "resolv.conf", "hostname"):
                    files.write_in_place(fdir / name, "")
                if ns_path.exists():
                    nsutil.remove_netns(ns_path)
                nsutil.create_netns(ns_path, loopback_up=True)
            except BaseException:
                self._remove_files(fdir)
                raise
            self.prepared.add(container_id)
            return ns_path, fdir

    def discard_prepared(self, container_id: str) -> None:
        """Undoes prepare_sandbox when no sandbox took its netns and files over (a start that failed before)."""
        with self.lock:
            if container_id not in self.prepared:
                return
            self.prepared.discard(container_id)
            if container_id in self.sandboxes:
                return
            nsutil.remove_netns(self._netns_path(container_id))
            self._remove_files(self.files_dir / container_id)

    @staticmethod
    def _remove_files(fdir: Path) -> None:
        for p in ("hosts", "resolv.conf", "hostname"):
            (fdir / p).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            fdir.rmdir()

    def create_sandbox(
        self,
        container_id: str,
        *,
        name: str,
        hostname: str,
        domainname: str = "",
        network_mode: str = "bridge",
        endpoints: dict[str, dict[str, Any]] | None = None,
        port_bindings: dict[str, Any] | None = None,
        publish_all: bool = False,
        exposed_ports: Iterable[str] = (),
        dns: list[str] | None = None,
        dns_search: list[str] | None = None,
        dns_options: list[str] | None = None,
        extra_hosts: list[str] | None = None,
        link_hosts: dict[str, dict[str, str]] | None = None,
    ) -> Sandbox:
        """Make the container's netns, endpoints, published ports and files. All or nothing. `link_hosts`: the
        legacy links' hosts lines (engine.net.legacy_links.StartLinks.hosts), kept current when a child's address
        changes."""
        name = name.lstrip("/")
        with self.lock:
            if container_id in self.sandboxes:
                raise Conflict(f"container {container_id} already has a network sandbox")
            mode = network_mode or "bridge"
            fdir = self.files_dir / container_id
            sb: dict[str, Any] = {
                "Id": container_id,
                "Name": name,
                "Hostname": hostname,
                "Domainname": domainname,
                "NetworkMode": mode,
                "Endpoints": {},
                "Ports": [],
                "PortsTarget": None,
                "PortBindings": port_bindings or {},
                "PublishAll": bool(publish_all),
                "ExposedPorts": list(exposed_ports),
                "Dns": list(dns or []),
                "DnsSearch": list(dns_search or []),
                "DnsOptions": list(dns_options or []),
                "ExtraHosts": list(extra_hosts or []),
                "LinkHosts": dict(link_hosts or {}),
                "FilesDir": str(fdir),
                "NetnsPath": None,
            }
            if mode.startswith("container:"):
                owner_id = mode.split(":", 1)[1]
                owner = self.sandboxes.get(owner_id) or next(
                    (s for s in self.sandboxes.values() if s["Name"] == owner_id.lstrip("/")), None
                )
                if owner is None or owner.get("Mode") == "container":
                    raise Conflict(f"cannot join network of a non running container: {owner_id}")
                sb.update(Mode="container", Owner=owner["Id"], NetnsPath=owner["NetnsPath"],
                          FilesDir=owner["FilesDir"])
                self._save_sandbox(sb)
                return self._view(sb)
            try:
                if mode == "host":
                    sb["Mode"] = "host"
                    self._write_host_mode_files(sb)
                    self._save_sandbox(sb)
                    return self._view(sb)
                nets = self._endpoint_plan(mode, endpoints or {})
                ns_path = self._netns_path(container_id)
                if container_id in self.prepared:  # made ahead (lo up): taken over, released with the sandbox
                    self.prepared.discard(container_id)
                else:
                    if ns_path.exists():
                        nsutil.remove_netns(ns_path)
                    nsutil.create_netns(ns_path, loopback_up=not nets)  # create_endpoint brings lo up otherwise
                sb["NetnsPath"] = str(ns_path)
                sb["Mode"] = "none" if mode == "none" else "bridge"
                # Not saved yet: if we crash before the end, start() finds the netns file, the veths (by their
                # alias) and the address reservation owned by no sandbox record, and removes them.
                self.sandboxes[container_id] = sb
                for net, cfg in nets:
                    self._attach(sb, net, cfg)
                if nets and sb["Mode"] == "bridge":
                    self._publish(sb)
                self._write_files(sb)
                self._save_sandbox(sb)
                if self._sandbox_dns_networks(sb):
                    self._dns().sync(self)
                self._update_link_parents(sb)
            except BaseException:
                if container_id in self.prepared:
                    # failed before taking the prepared netns and files over (nothing else is made yet): they
                    # stay for discard_prepared, as the runtime may be binding them into the container right now
                    raise
                self._remove_sandbox_locked(container_id, apply=bool(sb["Ports"]))
                raise
            return self._view(sb)

    def _publish(self, sb: dict[str, Any]) -> None:
        """Published ports go to the gateway endpoint (libnetwork's external connectivity): the first one with a
        default route. A container only on --internal networks publishes nothing - no way in either."""
        reqs = ports.requests_from(sb.get("PortBindings") or None, bool(sb.get("PublishAll")),
                                   sb.get("ExposedPorts") or ())
        gw_ep = next((ep for ep in sb["Endpoints"].values() if ep.get("DefaultRoute")), None)
        if not reqs or gw_ep is None:
            return
        try:
            got = self.allocator.allocate(sb["Id"], reqs)
        except Conflict as e:
            raise Conflict(
                f"driver failed programming external connectivity on endpoint {sb['Name']} "
                f"({gw_ep['EndpointID']}): {e.message}"
            ) from None
        sb["Ports"] = [m.__dict__ for m in got]
        sb["PortsTarget"] = gw_ep["IPAddress"]
        self._add_port_rules(sb)

    def _endpoint_plan(
        self, mode: str, endpoints: dict[str, dict[str, Any]]
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        if mode == "none":
            return []
        primary_ref = "bridge" if mode in ("bridge", "default") else mode
        primary = self._find(primary_ref)
        if primary.get("ConfigOnly"):
            raise Forbidden("cannot create endpoint on configuration-only network")
        if primary["Driver"] != "bridge":
            raise InvalidArgument(f"network {primary_ref} is not a bridge network")
        plan = []
        seen = set()
        cfgs = {}
        for ref, cfg in endpoints.items():
            cfgs[self._find(ref)["Id"]] = cfg or {}
        plan.append((primary, cfgs.pop(primary["Id"], {})))
        seen.add(primary["Id"])
        for nid, cfg in cfgs.items():
            net = self.networks[nid]
            if net.get("ConfigOnly"):
                raise Forbidden("cannot create endpoint on configuration-only network")
            if net["Driver"] != "bridge":
                raise Forbidden("container cannot be connected to host network and another network at the same time")
            plan.append((net, cfg))
        for net, cfg in plan:
            self._check_endpoint_config(net, cfg)
        return plan

    @staticmethod
    def _check_endpoint_config(net: dict[str, Any], cfg: dict[str, Any]) -> None:
        if cfg.get("MacAddress") and ipam.parse_mac(cfg["MacAddress"]) is None:
            raise InvalidArgument(f"invalid MAC address {cfg['MacAddress']}")  # dockerd's validateEndpointSettings
        ipam_cfg = cfg.get("IPAMConfig") or {}
        v6_addr = str(ipam_cfg.get("IPv6Address") or "")
        if net["Name"] == "bridge":
            if ipam_cfg.get("IPv4Address") or v6_addr:
                raise InvalidArgument("user specified IP address is supported on user defined networks only")
            if cfg.get("Aliases"):
                raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
        elif ipam_cfg.get("IPv4Address") and not net["IPAM"]["Config"]:
            raise InvalidArgument("user specified IP address is supported only when connecting to networks with "
                                  "user configured subnets")
        if v6_addr and net["Name"] != "bridge":
            # dockerd's EndpointIPAMConfig Validate and IsInRange: an IPv6 address, inside a configured IPv6
            # subnet (the pool is checked even where IPv6 is off: the address is then kept, not assigned)
            try:
                addr = ipaddress.ip_address(v6_addr)
            except ValueError:
                addr = None
            if addr is None or addr.version != 6 or addr.is_unspecified:
                raise InvalidArgument(f"invalid IPv6 address: {v6_addr}")
            static = net.get("_v6_config")
            if static is None:
                raise InvalidArgument("user specified IP address is supported only when connecting to networks "
                                      "with user configured subnets")
            if addr not in ipaddress.ip_network(static["Subnet"], strict=False):
                raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {v6_addr}")

    def _attach(self, sb: dict[str, Any], net: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
        cid = sb["Id"]
        pool = net["IPAM"]["Config"][0]
        subnet = ipam.parse_subnet(pool["Subnet"])
        rng = ipam.parse_subnet(pool.get("IPRange") or pool["Subnet"])
        taken = {c["IPv4Address"].split("/")[0] for c in net["Containers"].values()} | {pool["Gateway"]}
        taken |= set(net.get("_aux") or ())  # auxiliary addresses are the user's, never a container's
        requested = (cfg.get("IPAMConfig") or {}).get("IPv4Address") or None
        ip = ipam.allocate(subnet, rng, taken, net.get("_cursor"), requested)
        v6 = net.get("_v6")
        ip6, plen6, gw6 = "", 0, ""
        if v6:
            subnet6 = ipam.parse_any(v6["Subnet"])
            taken6 = {c["IPv6Address"].split("/")[0] for c in net["Containers"].values() if c.get("IPv6Address")}
            taken6 |= {v6["Gateway"], *v6.get("Aux", ())}
            requested6 = (cfg.get("IPAMConfig") or {}).get("IPv6Address") or None
            ip6 = ipam.allocate(subnet6, ipam.parse_any(v6.get("IPRange") or v6["Subnet"]), taken6,
                                net.get("_cursor6"), requested6)
            plen6 = subnet6.prefixlen
            gw6 = "" if net["Internal"] else v6["Gateway"]
        # the asked MAC (any of Go's ParseMAC forms) in the kernel's form, else Docker's derived one
        mac = ipam.parse_mac(cfg.get("MacAddress") or "") or ipam.mac_for(ip)
        used_ifnames = {ep["Ifname"] for ep in sb["Endpoints"].values()}
        ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used_ifnames)
        ep = {
            "NetworkID": net["Id"],
            "EndpointID": secrets.token_hex(32),
            "IPAddress": ip,
            "IPPrefixLen": subnet.prefixlen,
            # an internal network gives no gateway (libnetwork's bridge Join): no route leads off the bridge
            "Gateway": "" if net["Internal"] else pool["Gateway"],
            "MacAddress": mac,
            "Aliases": list(cfg.get("Aliases") or []),
            "Links": list(cfg.get("Links") or []) or None,  # user networks: DNS aliases of this container only
            "IPAMConfig": cfg.get("IPAMConfig") or None,
            "DriverOpts": cfg.get("DriverOpts") or None,
            "GlobalIPv6Address": ip6,
            "GlobalIPv6PrefixLen": plen6,
            "IPv6Gateway": gw6,
            "Ifname": ifname,
            "HostIfname": self._veth_name(),
            "DefaultRoute": not net["Internal"] and not any(e.get("DefaultRoute") for e in sb["Endpoints"].values()),
        }
        if net["Name"] != "bridge":
            ep["DNSNames"] = [n for n in [sb["Name"], *ep["Aliases"], cid[:12]] if n]
        # Reserve the address on disk first: a crash after this leaves a record start() cleans up. Not fsynced (two
        # fsyncs on every run): start() rebuilds each network's Containers from the sandbox records
        # (_repair_sandbox) and drops reservations no live sandbox owns - after a power loss, none is live.
        net["Containers"][cid] = {
            "Name": sb["Name"],
            "EndpointID": ep["EndpointID"],
            "MacAddress": mac,
            "IPv4Address": f"{ip}/{subnet.prefixlen}",
            "IPv6Address": f"{ip6}/{plen6}" if ip6 else "",
        }
        if not requested:
            net["_cursor"] = ip
        if ip6 and not (cfg.get("IPAMConfig") or {}).get("IPv6Address"):
            net["_cursor6"] = ip6
        self._save_network(net, durable=False)
        # The sandbox record is saved by the caller when done: if we crash before, start() drops this
        # reservation with the sandbox (not running) and deletes the veth (its alias names no known endpoint).
        sb["Endpoints"][net["Name"]] = ep
        mtu = int(net["Options"].get("com.docker.network.driver.mtu", self.mtu))
        links.create_endpoint(
            bridge=net["_bridge"],
            host_ifname=ep["HostIfname"],
            netns=Path(sb["NetnsPath"]),
            ifname=ifname,
            address=ip,
            prefixlen=subnet.prefixlen,
            gateway=ep["Gateway"] or None,
            mac=mac,
            mtu=mtu,
            alias=f"{self.alias_prefix}{cid[:12]} {net['Id'][:12]}",
            default_route=ep["DefaultRoute"],
            address6=ip6 or None,
            prefixlen6=plen6,
            gateway6=gw6 or None,
        )
        return ep

    def _detach(self, sb: dict[str, Any], net_name: str, delete_link: bool = True) -> None:
        ep = sb["Endpoints"].pop(net_name, None)
        if ep is None:
            return
        if delete_link:
            links.delete_link(ep["HostIfname"])
        net = self.networks.get(ep["NetworkID"])
        if net is not None and net["Containers"].pop(sb["Id"], None) is not None:
            self._save_network_releasing(net)

    def _repair_sandbox(self, sb: dict[str, Any]) -> None:
        """After a restart: recreate a veth that went missing (the container's netns still exists)."""
        if sb.get("Mode") != "bridge":
            return
        present = {link.name: link for link in links.list_links()}
        index = {link.index: link.name for link in present.values()}
        for net_name, ep in list(sb["Endpoints"].items()):
            net = self.networks.get(ep["NetworkID"])
            if net is None:
                sb["Endpoints"].pop(net_name)
                continue
            net["Containers"].setdefault(
                sb["Id"],
                {
                    "Name": sb["Name"],
                    "EndpointID": ep["EndpointID"],
                    "MacAddress": ep["MacAddress"],
                    "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}",
                    "IPv6Address": (f"{ep['GlobalIPv6Address']}/{ep['GlobalIPv6PrefixLen']}"
                                    if ep.get("GlobalIPv6Address") else ""),
                },
            )
            host_end = present.get(ep["HostIfname"])
            if host_end is not None:
                if index.get(host_end.master or -1) != net["_bridge"]:
                    links.attach_to_bridge(ep["HostIfname"], net["_bridge"])  # the bridge was recreated
                continue
            ns = Path(sb["NetnsPath"])
            links.delete_link(ep["Ifname"], ns)
            mtu = int(net["Options"].get("com.docker.network.driver.mtu", self.mtu))
            links.create_endpoint(
                bridge=net["_bridge"], host_ifname=ep["HostIfname"], netns=ns, ifname=ep["Ifname"],
                address=ep["IPAddress"], prefixlen=ep["IPPrefixLen"], gateway=ep["Gateway"], mac=ep["MacAddress"],
                mtu=mtu, alias=f"{self.alias_prefix}{sb['Id'][:12]} {net['Id'][:12]}",
                default_route=ep.get("DefaultRoute", True), address6=ep.get("GlobalIPv6Address") or None,
                prefixlen6=ep.get("GlobalIPv6PrefixLen") or 0, gateway6=ep.get("IPv6Gateway") or None,
            )

    def remove_sandbox(self, container_id: str) -> None:
        """Undo create_sandbox: veths, netns, addresses, ports, DNS, files. Missing is fine."""
        with self.lock:
            self._remove_sandbox_locked(container_id, apply=True, lazy_links=True)

    def _remove_sandbox_locked(self, cid: str, apply: bool, lazy_links: bool = False) -> None:
        """`lazy_links`: leave the veths to the kernel, which destroys each pair with the netns once its last user
        is gone (the container has exited: at once) - deleting them here waits out RCU grace periods, ~20-30 ms
        of every `docker rm`. A netns something still holds keeps its veth until then; start()'s reconcile deletes
        any veth no sandbox owns. Failure paths delete synchronously, so a failed create leaves nothing behind."""
        sb = self.sandboxes.get(cid)
        if sb is None:
            sb = {"Id": cid, "Endpoints": {}, "Ports": []}
        had_ports = bool(sb.get("Ports"))
        self.allocator.release_owner(cid)
        if sb.get("Mode") != "container":
            lazy = lazy_links and bool(sb.get("NetnsPath")) and nsutil.is_netns(Path(sb["NetnsPath"]))
            for net_name in list(sb.get("Endpoints", {})):
                self._detach(sb, net_name, delete_link=not lazy)
            if sb.get("NetnsPath"):
                nsutil.remove_netns(Path(sb["NetnsPath"]))
            self._remove_files(Path(sb.get("FilesDir") or self.files_dir / cid))
        for net in self.networks.values():
            if net["Containers"].pop(cid, None) is not None:
                self._save_network_releasing(net)
        self.sandboxes.pop(cid, None)
        (self.sb_dir / f"{cid}.json").unlink(missing_ok=True)
        if apply and had_ports:
            self._delete_port_rules(sb)
        if self.dns is not None:
            self.dns.sync(self)

    # ------------------------------------------------------------------ connect / disconnect

    def connect(self, container_id: str, network: str, endpoint_config: dict[str, Any] | None = None) -> Sandbox:
        with self.lock:
            sb = self._own_sandbox(container_id)
            net = self._find(network)
            if net.get("ConfigOnly"):
                raise Forbidden("cannot create endpoint on configuration-only network")
            if net["Driver"] == "host":
                raise Forbidden("container cannot be disconnected from host network or connected to host network")
            if net["Driver"] != "bridge" or sb.get("Mode") != "bridge":
                raise Forbidden("container sharing network namespace with another container or host cannot be "
                                "connected to any other network")
            if net["Name"] in sb["Endpoints"]:
                raise Forbidden(f"endpoint with name {sb['Name']} already exists in network {net['Name']}")
            cfg = endpoint_config or {}
            self._check_endpoint_config(net, cfg)
            try:
                self._attach(sb, net, cfg)
                if not sb.get("PortsTarget"):
                    self._publish(sb)  # the first network with a way out also brings the published ports
                crashpoint("network.connect.attached")
            except BaseException:
                self._detach(sb, net["Name"])
                self._save_sandbox(sb)
                raise
            # Joining a user network brings the embedded DNS server (127.0.0.11) into resolv.conf, as dockerd's
            # rebuildDNS does, so the new network's names resolve without a restart.
            self._write_files(sb, resolv=bool(self._sandbox_dns_networks(sb)))
            self._save_sandbox(sb)
            if self._sandbox_dns_networks(sb) or self.dns is not None:
                self._dns().sync(self)
            return self._view(sb)

    def disconnect(self, container_id: str, network: str, force: bool = False) -> Sandbox:
        with self.lock:
            net = self._find(network)
            sb = self.sandboxes.get(container_id)
            if sb is None or net["Name"] not in sb.get("Endpoints", {}):
                if force and net["Containers"].pop(container_id, None) is not None:
                    self._save_network(net)  # -f clears a stale endpoint record, as dockerd does
                    return self._view(sb) if sb is not None else Sandbox(container_id, None, Path(), Path(), Path())
                raise Forbidden(f"container {container_id} is not connected to network {net['Name']}")
            ports_here = sb["Endpoints"][net["Name"]]["IPAddress"] == sb.get("PortsTarget")
            self._detach(sb, net["Name"])
            if ports_here and sb["Ports"]:
                self.allocator.release_owner(container_id)
                sb["Ports"] = []
                sb["PortsTarget"] = None
                self._apply_nft()
            self._write_files(sb, resolv=False)
            self._save_sandbox(sb)
            if self.dns is not None:
                self.dns.sync(self)
            return self._view(sb)

    def _own_sandbox(self, cid: str) -> dict[str, Any]:
        sb = self.sandboxes.get(cid)
        if sb is None:
            raise Conflict(f"container {cid} is not running")
        return sb

    # ------------------------------------------------------------------ views

    def sandbox(self, container_id: str) -> Sandbox:
        with self.lock:
            sb = self.sandboxes.get(container_id)
            if sb is None:
                raise NotFound(f"no network sandbox for container {container_id}")
            return self._view(sb)

    def _view(self, sb: dict[str, Any]) -> Sandbox:
        owner = self.sandboxes.get(sb.get("Owner") or "") if sb.get("Mode") == "container" else sb
        src = owner or sb
        fdir = Path(src["FilesDir"])
        settings = self._settings(src)
        if sb.get("Mode") == "container":
            settings = self._settings(sb)  # Docker shows empty settings for container: mode
        return Sandbox(
            container_id=sb["Id"],
            netns_path=Path(src["NetnsPath"]) if src.get("NetnsPath") else None,
            hosts_path=fdir / "hosts",
            resolv_conf_path=fdir / "resolv.conf",
            hostname_path=fdir / "hostname",
            network_settings=settings,
        )

    def _settings(self, sb: dict[str, Any]) -> dict[str, Any]:
        nets: dict[str, Any] = {}
        for net_name, ep in sb.get("Endpoints", {}).items():
            nets[net_name] = {
                "IPAMConfig": ep.get("IPAMConfig"),
                "Links": ep.get("Links") or None,
                "Aliases": ep.get("Aliases") or None,
                "MacAddress": ep["MacAddress"],
                "DriverOpts": ep.get("DriverOpts"),
                "NetworkID": ep["NetworkID"],
                "EndpointID": ep["EndpointID"],
                "Gateway": ep["Gateway"],
                "IPAddress": ep["IPAddress"],
                "IPPrefixLen": ep["IPPrefixLen"],
                "IPv6Gateway": ep.get("IPv6Gateway", ""),
                "GlobalIPv6Address": ep.get("GlobalIPv6Address", ""),
                "GlobalIPv6PrefixLen": ep.get("GlobalIPv6PrefixLen", 0),
                "DNSNames": ep.get("DNSNames"),
            }
        if sb.get("Mode") == "host":
            host = self._find("host")
            nets["host"] = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
                            "NetworkID": host["Id"], "EndpointID": "", "Gateway": "", "IPAddress": "",
                            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                            "DNSNames": None}
        elif sb.get("Mode") == "none":
            none = self._find("none")
            nets["none"] = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
                            "NetworkID": none["Id"], "EndpointID": "", "Gateway": "", "IPAddress": "",
                            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                            "DNSNames": None}
        mappings = [ports.Mapping(**m) for m in sb.get("Ports", [])]
        if sb.get("Mode") == "bridge":
            port_view = ports.ports_view(mappings, sb.get("ExposedPorts", []), (sb.get("PortBindings") or {}).keys())
        else:
            port_view = {}
        default = sb.get("Endpoints", {}).get("bridge") or {}
        return {
            "Bridge": "",
            "SandboxID": sb["Id"] if sb.get("NetnsPath") else "",
            "SandboxKey": sb.get("NetnsPath") or "",
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": port_view,
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            "EndpointID": default.get("EndpointID", ""),
            "Gateway": default.get("Gateway", ""),
            "GlobalIPv6Address": default.get("GlobalIPv6Address", ""),
            "GlobalIPv6PrefixLen": default.get("GlobalIPv6PrefixLen", 0),
            "IPAddress": default.get("IPAddress", ""),
            "IPPrefixLen": default.get("IPPrefixLen", 0),
            "IPv6Gateway": default.get("IPv6Gateway", ""),
            "MacAddress": default.get("MacAddress", ""),
            "Networks": nets,
        }

    def network_stats(self, container_id: str) -> dict[str, dict[str, int]]:
        with self.lock:
            sb = self.sandboxes.get(container_id)
            if sb is None:
                return {}
            if sb.get("Mode") == "container":
                sb = self.sandboxes.get(sb.get("Owner", "")) or sb
            path = sb.get("NetnsPath")
            if not path:
                return {}
        return links.link_stats(Path(path))

    # ------------------------------------------------------------------ files

    def _write_host_mode_files(self, sb: dict[str, Any]) -> None:
        fdir = Path(sb["FilesDir"])
        try:
            host_hosts = Path("/etc/hosts").read_text()
        except OSError:
            host_hosts = files.HOSTS_HEAD
        extra = "".join(
            f"{ip}\t{n}\n" for n, _, ip in (h.partition(":") for h in sb["ExtraHosts"])
        )
        files.write_in_place(fdir / "hosts", host_hosts + extra)
        try:
            resolv = self.host_resolv_conf.read_text()
        except OSError:
            resolv = ""
        if sb["Dns"] or sb["DnsSearch"] or sb["DnsOptions"]:
            resolv = files.container_resolv_conf(
                self._host_resolv(), embedded_dns=False, dns=sb["Dns"], dns_search=sb["DnsSearch"],
                dns_options=sb["DnsOptions"],
            )
        files.write_in_place(fdir / "resolv.conf", resolv)
        files.write_in_place(fdir / "hostname", socket.gethostname() + "\n")

    def _update_link_parents(self, child: dict[str, Any]) -> None:
        """A linked container got a (new) address: its parents' hosts lines follow, as dockerd's
        OptionParentUpdate does. A scan of the sandboxes' link maps; nothing to write without links."""
        ip = ((child.get("Endpoints") or {}).get("bridge") or {}).get("IPAddress")
        if not ip:
            return
        for parent in self.sandboxes.values():
            changed = False
            for li in (parent.get("LinkHosts") or {}).values():
                if li.get("Child") == child["Id"] and li.get("IP") != ip:
                    li["IP"] = ip
                    changed = True
            if changed and parent.get("Mode") in ("bridge", "none"):
                self._write_files(parent, resolv=False)
                self._save_sandbox(parent)

    def set_link_hosts(self, container_id: str, links: dict[str, dict[str, str]]) -> None:
        """Replace a running container's legacy-link hosts lines (`docker rm --link`); its /etc/hosts follows."""
        with self.lock:
            sb = self.sandboxes.get(container_id)
            if sb is None or sb.get("Mode") not in ("bridge", "none"):
                return
            sb["LinkHosts"] = dict(links)
            self._write_files(sb, resolv=False)
            self._save_sandbox(sb)

    def _sandbox_dns_networks(self, sb: dict[str, Any]) -> list[str]:
        return [n for n in sb.get("Endpoints", {}) if n != "bridge"]

    def _write_files(self, sb: dict[str, Any], resolv: bool = True) -> None:
        fdir = Path(sb["FilesDir"])
        fdir.mkdir(parents=True, exist_ok=True)
        host = sb["Hostname"]
        fqdn = f"{host}.{sb['Domainname']}" if sb.get("Domainname") else ""
        entries = []
        for net_name, ep in sb["Endpoints"].items():
            names = [fqdn, host] if fqdn else [host]
            if net_name != "bridge":
                names += [sb["Name"], *ep.get("Aliases", [])]
            entries.append((ep["IPAddress"], names))
            if ep.get("GlobalIPv6Address"):
                entries.append((ep["GlobalIPv6Address"], names))  # libnetwork adds a line per address
        link_lines = [f"{li['Names']}:{li['IP']}" for li in (sb.get("LinkHosts") or {}).values() if li.get("IP")]
        files.write_in_place(fdir / "hosts", files.hosts_file(entries, [*sb["ExtraHosts"], *link_lines]))
        if resolv or not (fdir / "resolv.conf").exists():
            text = files.container_resolv_conf(
                self._host_resolv(),
                embedded_dns=bool(self._sandbox_dns_networks(sb)),
                dns=sb["Dns"],
                dns_search=sb["DnsSearch"],
                dns_options=sb["DnsOptions"],
            )
            files.write_in_place(fdir / "resolv.conf", text)
        files.write_in_place(fdir / "hostname", host + "\n")

    # ------------------------------------------------------------------ DNS

    def _dns(self) -> Any:
        if self.dns is None:
            from engine.net.dns import DnsServer

            upstreams = self.dns_upstreams
            if upstreams is None:
                upstreams = [(s, 53) for s in files.upstream_servers(self._host_resolv(), None)]
            self.dns = DnsServer(upstreams)
        return self.dns

    def dns_view(self) -> list[tuple[str, Path, list[str], list[str]]]:
        """For the DNS server: (container id, netns, its user networks, upstream servers) per sandbox."""
        out = []
        for sb in self.sandboxes.values():
            nets = self._sandbox_dns_networks(sb)
            if nets and sb.get("Mode") == "bridge" and sb.get("NetnsPath"):
                out.append((sb["Id"], Path(sb["NetnsPath"]), nets, list(sb.get("Dns") or [])))
        return out

    def has_external_access(self, container_id: str) -> bool:
        """libnetwork's hasExternalAccess: an endpoint with a gateway (a network that is not --internal)."""
        with self.lock:
            sb = self.sandboxes.get(container_id)
            return sb is not None and any(ep.get("DefaultRoute", True) for ep in sb.get("Endpoints", {}).values())

    def resolve_name(self, asker: str, name: str, v6: bool = False) -> list[str]:
        """Addresses of `name` on the user networks the asking container is on (container names, aliases, ids);
        `v6`: the IPv6 ones (endpoints on --ipv6 networks)."""
        key = "GlobalIPv6Address" if v6 else "IPAddress"
        with self.lock:
            sb = self.sandboxes.get(asker)
            if sb is None:
                return []
            asked = name.rstrip(".").lower()
            out: list[str] = []
            for net_name in self._sandbox_dns_networks(sb):
                # the asker's own links on this network are aliases of other containers (libnetwork's endpoint
                # aliases): `--link db:alias` makes "alias" resolve as "db", for this container only
                own = sb["Endpoints"].get(net_name) or {}
                wanted = legacy_links.endpoint_aliases(own.get("Links")).get(asked, asked)
                for other in self.sandboxes.values():
                    ep = other.get("Endpoints", {}).get(net_name)
                    if ep is None:
                        continue
                    names = [n.lower() for n in ep.get("DNSNames") or []]
                    if wanted in names and ep.get(key) and ep[key] not in out:
                        out.append(ep[key])
            return out
