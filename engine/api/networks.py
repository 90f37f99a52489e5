"""Network endpoints: CRUD, connect, disconnect, prune (the net part does the kernel work)."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from engine.api.params import api_at_least, check_filters, filters, json_body, qbool, timestamp_ns
from engine.api.server import add, daemon_of, json_response
from engine.containers.manager import net_connect, net_disconnect
from engine.errors import EngineError, InvalidArgument, NotFound


def _svc(request: web.Request) -> Any:
    svc = daemon_of(request).networks
    if svc is None:
        raise EngineError("networks are not available in this engine")
    return svc


def _event(request: web.Request, action: str, net: dict[str, Any], **extra: str) -> None:
    daemon_of(request).events.publish("network", action, net["Id"], {"name": net["Name"], "type": net["Driver"],
                                                                      **extra})


async def list_networks(request: web.Request) -> web.Response:
    f = filters(request)
    check_filters(f, {"dangling", "driver", "id", "label", "name", "scope", "type"})
    return json_response(await asyncio.to_thread(_svc(request).list_networks, f))


async def inspect(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(_svc(request).inspect, request.match_info["id"]))


def _bool_option(options: dict[str, str], key: str) -> bool | None:
    """A driver option dockerd reads as a bool (strconv.ParseBool)."""
    if key not in options:
        return None
    v = str(options[key])
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise InvalidArgument(f'driver-opt "{key}" is not a valid bool')


def create_arguments(body: dict[str, Any], api_1_48: bool) -> dict[str, Any]:
    """NetworkService.create_network's arguments from a create body, as dockerd's createNetwork reads it: the
    EnableIPv4/EnableIPv6 fields win over their driver options (which are then dropped, so inspect does not show
    a conflicting value), IPAM Options are kept as sent (null without IPAM), EnableIPv4 counts from API 1.48."""
    ipam = body.get("IPAM")
    if ipam is not None and not isinstance(ipam, dict):
        raise InvalidArgument("invalid IPAM")
    ipam = ipam or {}
    if (ipam.get("Driver") or "default") != "default":
        raise InvalidArgument(f"ipam driver \"{ipam['Driver']}\" is not supported")
    pools = ipam.get("Config") or []
    if any(not isinstance(p, dict) for p in pools):
        raise InvalidArgument("invalid IPAM config")
    from engine.net.ipam import is_v6  # engine.net (pyroute2) only once a network is made

    # dockerd's getIpamConfig: the pools split by family (a subnet with an IPv6 address is an IPv6 pool)
    pools4 = [p for p in pools if not is_v6(str(p.get("Subnet") or ""))]
    pools6 = [p for p in pools if is_v6(str(p.get("Subnet") or ""))]
    if len(pools4) > 1 or len(pools6) > 1:
        raise InvalidArgument("portside supports one IPAM pool per address family in a network")
    pool = pools4[0] if pools4 else {}
    pool6 = pools6[0] if pools6 else {}
    options = dict(body.get("Options") or {})
    enable_v4 = body.get("EnableIPv4") if api_1_48 else None
    if enable_v4 is not None:
        options.pop("com.docker.network.enable_ipv4", None)
    else:
        enable_v4 = _bool_option(options, "com.docker.network.enable_ipv4")
    enable_v6 = body.get("EnableIPv6")
    if enable_v6 is not None:
        options.pop("com.docker.network.enable_ipv6", None)
    else:
        enable_v6 = _bool_option(options, "com.docker.network.enable_ipv6")
    if enable_v4 is False:
        raise InvalidArgument("portside does not support IPv6-only networks yet")
    config_from = body.get("ConfigFrom") or {}
    return {
        "driver": body.get("Driver") or "bridge", "subnet": pool.get("Subnet") or None,
        "gateway": pool.get("Gateway") or None, "ip_range": pool.get("IPRange") or None,
        "aux_addresses": pool.get("AuxiliaryAddresses") or None, "internal": bool(body.get("Internal")),
        "attachable": bool(body.get("Attachable")), "ingress": bool(body.get("Ingress")),
        "enable_ipv6": bool(enable_v6), "labels": body.get("Labels"), "options": options,
        "ipam_options": ipam.get("Options") if "IPAM" in body and body["IPAM"] is not None else None,
        "scope": body.get("Scope") or "", "config_only": bool(body.get("ConfigOnly")),
        "config_from": (config_from.get("Network") or "") if isinstance(config_from, dict) else "",
        "subnet6": pool6.get("Subnet") or None, "gateway6": pool6.get("Gateway") or None,
        "ip_range6": pool6.get("IPRange") or None, "aux_addresses6": pool6.get("AuxiliaryAddresses") or None,
    }


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = body.get("Name") or ""
    kwargs = create_arguments(body, api_at_least(request, "1.48"))
    net = await asyncio.to_thread(lambda: _svc(request).create_network(name, **kwargs))
    _event(request, "create", net)
    return json_response({"Id": net["Id"], "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.Response:
    svc = _svc(request)
    net = await asyncio.to_thread(svc.inspect, request.match_info["id"])
    await asyncio.to_thread(svc.remove, net["Id"])
    _event(request, "destroy", net)
    return web.Response(status=204)


def _network_mode_name(mode: str) -> str:
    return "bridge" if mode in ("", "default") else mode


def _user_defined(mode: str) -> bool:
    return mode not in ("bridge", "host", "none") and not mode.startswith("container:")


def _endpoint_address_errors(cfg: Any) -> list[str]:
    """dockerd's EndpointIPAMConfig.Validate at container create: each asked address of its family (and not
    unspecified). Whether it lies in the network's subnets is checked when the endpoint is made."""
    import ipaddress

    if not isinstance(cfg, dict):
        return []
    errs = []
    for key, version in (("IPv4Address", 4), ("IPv6Address", 6)):
        text = str(cfg.get(key) or "")
        if not text:
            continue
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            addr = None
        # Go's To4(): an IPv4-mapped IPv6 address counts as IPv4
        v4 = addr is not None and (addr.version == 4 or getattr(addr, "ipv4_mapped", None) is not None)
        if addr is None or v4 != (version == 4) or addr.is_unspecified:
            errs.append(f"invalid IPv{version} address: {text}")
    return errs


def container_networking(body: dict[str, Any], api_1_44: bool) -> list[str]:
    """A container create body's network settings as dockerd's router leaves them (handleMACAddressBC,
    validateNetworkingConfig's MAC check); returns its warnings. Before API 1.44 the container-wide
    Config.MacAddress is the primary endpoint's MAC and per-endpoint ones are ignored; from 1.44 it is deprecated:
    moved to the endpoint (which must not ask for another). Config.MacAddress is then kept as the primary
    endpoint's configured MAC, which dockerd's inspect shows there."""
    from engine.net.ipam import parse_mac  # engine.net (pyroute2) only once a container is created

    hc = body.get("HostConfig") or {}
    mode = _network_mode_name(str(hc.get("NetworkMode") or ""))
    networking = body.get("NetworkingConfig") or {}
    eps: dict[str, Any] = networking.get("EndpointsConfig") or {}
    if "default" in eps and mode == "bridge":
        eps.setdefault("bridge", eps.pop("default"))
    if not api_1_44 and len(eps) > 1:
        raise InvalidArgument(f"Container cannot be created with multiple network endpoints: {', '.join(sorted(eps))}")
    for name, ep in eps.items():
        if ep is None:
            raise InvalidArgument(f"invalid config for network {name}: EndpointsConfig is nil")
    mac = str(body.get("MacAddress") or "")
    warnings: list[str] = []

    def primary() -> dict[str, Any]:
        if not eps:
            eps[mode] = {}
        elif not api_1_44:
            return next(iter(eps.values()))
        elif mode not in eps:
            raise InvalidArgument("HostConfig.NetworkMode must match the identity of a network in "
                                  "NetworkSettings.Networks")
        ep: dict[str, Any] = eps[mode]
        return ep

    if not api_1_44:
        if not mac:
            for ep in eps.values():
                if ep:
                    ep["MacAddress"] = ""
        elif mode != "bridge" and not _user_defined(mode):
            raise InvalidArgument("conflicting options: mac-address and the network mode")
        else:
            primary()["MacAddress"] = mac
    elif mac:
        if mode == "bridge" or _user_defined(mode):
            try:
                ep = primary()
            except InvalidArgument as e:
                raise InvalidArgument(f"unable to migrate container-wide MAC address to a specific network: "
                                      f"{e.message}") from None
            if not ep.get("MacAddress"):
                ep["MacAddress"] = mac
            elif ep["MacAddress"] != mac:
                raise InvalidArgument("the container-wide MAC address must match the endpoint-specific MAC address "
                                      "for the main network, or be left empty")
        warnings.append("The container-wide MacAddress field is now deprecated. It should be specified in "
                        "EndpointsConfig instead.")
    for name, ep in eps.items():
        if errs := _endpoint_address_errors(ep.get("IPAMConfig") if ep else None):
            body_text = errs[0] if len(errs) == 1 else "* " + "\n* ".join(errs)
            raise InvalidArgument(f"invalid config for network {name}: {body_text}")
        if ep and ep.get("MacAddress") and parse_mac(str(ep["MacAddress"])) is None:
            raise InvalidArgument(f"invalid config for network {name}: invalid MAC address {ep['MacAddress']}")
    if eps:
        body["NetworkingConfig"] = {**networking, "EndpointsConfig": eps}
    main = eps.get(mode) if mode == "bridge" or _user_defined(mode) else None
    body.pop("MacAddress", None)
    if main and main.get("MacAddress"):
        body["MacAddress"] = main["MacAddress"]  # dockerd's inspect: the default network's desired MAC
    return warnings


@dataclass
class CreateLinks:
    checked: list[tuple[dict[str, Any], str]]  # (child record, alias)
    asked: bool  # HostConfig.Links had entries
    user_mode: bool  # a user-defined network mode: dockerd registers none


def check_container_links(m: Any, body: dict[str, Any]) -> CreateLinks:
    """Before a create: its HostConfig.Links checked as dockerd's registerLinks does (the children must exist)."""
    hc = body.get("HostConfig") or {}
    if not hc.get("Links"):
        return CreateLinks([], False, False)
    from engine.net import legacy_links

    mode = str(hc.get("NetworkMode") or "")
    return CreateLinks(legacy_links.check_links(hc, m.store.find), True, legacy_links.user_defined(mode))


def register_container_links(m: Any, cid: str, links: CreateLinks) -> None:
    """After a create: the links on the new record, shown as dockerd's inspect does."""
    if not links.asked:
        return
    from engine.net import legacy_links

    rec = m.get(cid)
    legacy_links.register(rec, links.checked, links.user_mode)
    m.store.save(rec)


async def remove_link(request: web.Request) -> web.Response:
    """`docker rm --link /parent/alias` (DELETE /containers/parent/alias?link=1): the parent loses the link; a
    running parent's /etc/hosts loses its line (its environment stays, as in dockerd)."""
    from engine.net import legacy_links

    d = daemon_of(request)
    m = d.containers
    ref = request.match_info["ref"]
    if m is None or not qbool(request, "link"):
        raise NotFound(f"No such container: {ref}")
    parent, entry = legacy_links.find_link(ref, m.store.find)
    async with m.lock(parent["Id"]):
        legacy_links.unregister(parent, entry)
        m.store.save(parent)
        if parent["State"].get("Running") and d.networks is not None:
            await asyncio.to_thread(d.networks.set_link_hosts, parent["Id"],
                                    legacy_links.for_start(parent, m.store.find).hosts)
    return web.Response(status=204)


async def connect(request: web.Request) -> web.Response:
    body = await json_body(request)
    d = daemon_of(request)
    net = await asyncio.to_thread(_svc(request).inspect, request.match_info["id"])
    cfg = body.get("EndpointConfig") or {}
    from engine.net.ipam import parse_mac

    if cfg.get("MacAddress") and parse_mac(str(cfg["MacAddress"])) is None:
        raise InvalidArgument(f"invalid MAC address {cfg['MacAddress']}")  # a stopped container's too
    await net_connect(d.containers, body.get("Container") or "", net, cfg)
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await json_body(request)
    d = daemon_of(request)
    net = await asyncio.to_thread(_svc(request).inspect, request.match_info["id"])
    await net_disconnect(d.containers, body.get("Container") or "", net, bool(body.get("Force")))
    return web.Response(status=200)


_GO_DURATION = re.compile(r"^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|\u00b5s|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def _prune_until(values: list[str]) -> int | None:
    """dockerd's getUntilFromPruneFilters: one value, a Go duration before now ("24h", "1h30m") or a time."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidArgument("more than one until filter specified")
    v = values[0].strip()
    if _GO_DURATION.match(v):
        total = sum(float(num) * _UNIT_NS[unit] for num, unit in _DURATION_PART.findall(v))
        return time.time_ns() - int(total)
    return timestamp_ns(v)


async def prune(request: web.Request) -> web.Response:
    f = filters(request)
    check_filters(f, {"until", "label", "label!"})
    until_ns = _prune_until(f.get("until") or [])
    svc = _svc(request)
    before = {n["Name"]: n for n in await asyncio.to_thread(svc.list_networks, {})}
    out = await asyncio.to_thread(svc.prune, f, until_ns)
    for name in out.get("NetworksDeleted") or []:
        if name in before:
            _event(request, "destroy", before[name])
    return json_response({"NetworksDeleted": out.get("NetworksDeleted") or None})


def register(app: web.Application) -> None:
    add(app, "GET", "/networks", list_networks)
    add(app, "POST", "/networks/create", create)
    add(app, "POST", "/networks/prune", prune)
    add(app, "GET", "/networks/{id}", inspect)
    add(app, "DELETE", "/networks/{id}", remove)
    add(app, "POST", "/networks/{id}/connect", connect)
    add(app, "POST", "/networks/{id}/disconnect", disconnect)
    add(app, "DELETE", "/containers/{ref:/?[^/]+/[^/]+}", remove_link)
