"""The engine's nftables table: egress masquerade, published-port DNAT, isolation of internal networks.

The whole table is rendered from the engine's state and swapped in one nft transaction (create-if-missing,
delete, add). That makes every change atomic and idempotent, a restart cannot duplicate a rule, and removing the
table removes everything the engine ever added. Connections already tracked keep their NAT through a swap.
"""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from engine.errors import EngineError
from engine.net import nsutil


@dataclass(frozen=True)
class BridgeRules:
    ifname: str
    subnet: str
    internal: bool
    subnet6: str = ""  # the IPv6 pool of an --ipv6 network


@dataclass(frozen=True)
class PortRule:
    proto: str  # tcp | udp
    host_ip: str  # "0.0.0.0" means every address of the host
    host_port: int
    container_ip: str
    container_port: int


def _q(name: str) -> str:
    return json.dumps(name)


def _table(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", name):
        raise ValueError(f"bad nftables table name {name!r}")
    return name


def _port_rule(p: PortRule) -> str:
    match = "" if p.host_ip in ("0.0.0.0", "") else f"ip daddr {p.host_ip} "
    return f"{match}{p.proto} dport {p.host_port} dnat to {p.container_ip}:{p.container_port}"


def render(table: str, bridges: list[BridgeRules], ports: list[PortRule]) -> str:
    t = _table(table)
    lines = [f"table ip {t}", f"delete table ip {t}", f"table ip {t} {{"]
    if bridges:
        # Our bridges have route_localnet on (host clients' 127.0.0.1:PORT is DNATed to containers), so the kernel
        # would also take a packet for 127.0.0.0/8 that a container crafts (NET_RAW) onto the bridge: to a
        # 127.0.0.1-bound published port, or any host service bound to loopback. Nothing on a bridge may send to
        # loopback addresses (dockerd drops `-d 127.0.0.1 ! -i lo` per loopback port for the same reason).
        # Before conntrack and DNAT (priority raw); replies to the host's clients arrive for the gateway address.
        ifs = ", ".join(_q(b.ifname) for b in bridges)
        lines += [
            "  chain loopback_guard {",
            "    type filter hook prerouting priority raw; policy accept;",
            f"    iifname {{ {ifs} }} ip daddr 127.0.0.0/8 drop",
            "  }",
        ]
    lines += [
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump published",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    fib daddr type local jump published",
        "  }",
        "  chain published {",
    ]
    for p in sorted(ports, key=lambda r: (r.proto, r.host_port, r.host_ip)):
        lines.append(f"    {_port_rule(p)}")
    lines += [
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    for b in bridges:
        br = _q(b.ifname)
        # the host reaching 127.0.0.1:PORT: the container must answer to an address it can route back to
        lines.append(f"    oifname {br} ip saddr 127.0.0.0/8 masquerade")
        # hairpin, and a neighbour reaching a container through a published port of the host
        lines.append(f"    oifname {br} ip saddr {b.subnet} ct status dnat masquerade")
        if not b.internal:
            lines.append(f"    ip saddr {b.subnet} oifname != {br} masquerade")
    lines += [
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    names = [b.ifname for b in bridges]
    lines += _internal_drops(bridges)
    lines.append("    ct status dnat accept")
    lines += _isolation_drops(bridges, names)
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n" + _render6(t, bridges)


def _internal_drops(bridges: list[BridgeRules]) -> list[str]:
    """An internal network's bridge forwards nothing in or out."""
    out = []
    for b in bridges:
        if b.internal:
            br = _q(b.ifname)
            out += [f"    iifname {br} oifname != {br} drop", f"    oifname {br} iifname != {br} drop"]
    return out


def _isolation_drops(bridges: list[BridgeRules], names: list[str]) -> list[str]:
    """No traffic from one network's bridge to another's (`names`: every bridge of the engine)."""
    out = []
    for b in bridges:
        others = [n for n in names if n != b.ifname]
        if others:
            out.append(f"    iifname {_q(b.ifname)} oifname {{ {', '.join(_q(o) for o in others)} }} drop")
    return out


def _render6(t: str, bridges: list[BridgeRules]) -> str:
    """The `ip6` table of the same name, for --ipv6 networks: masquerade out (dockerd's default NAT gateway mode),
    internal networks cut off, bridges isolated from each other, as the `ip` table does for IPv4. No published
    ports over IPv6. Without IPv6 networks the table is removed."""
    lines = [f"table ip6 {t}", f"delete table ip6 {t}"]
    v6 = [b for b in bridges if b.subnet6]
    if not v6:
        return "\n".join(lines) + "\n"
    lines += [
        f"table ip6 {t} {{",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    for b in v6:
        if not b.internal:
            lines.append(f"    ip6 saddr {b.subnet6} oifname != {_q(b.ifname)} masquerade")
    lines += [
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    lines += _internal_drops(v6)
    lines += _isolation_drops(v6, [b.ifname for b in bridges])
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _load_libnftables() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL("libnftables.so.1")
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    return lib


# libnftables in-process (what the nft command wraps) saves a process start per change; the command is the
# fallback where the library cannot be loaded.
_LIB = _load_libnftables()


_NFT_CTX_OUTPUT_JSON = 1 << 4


def _run_lib(lib: ctypes.CDLL, script: str, json_out: bool = False) -> str:
    ctx = lib.nft_ctx_new(0)
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        if json_out:
            lib.nft_ctx_output_set_flags(ctx, _NFT_CTX_OUTPUT_JSON)
        if lib.nft_run_cmd_from_buffer(ctx, script.encode()) != 0:
            err = lib.nft_ctx_get_error_buffer(ctx) or b""
            raise EngineError(f"nftables: {err.decode(errors='replace').strip()}")
        return (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
    finally:
        lib.nft_ctx_free(ctx)


def nft(script: str, netns: str | None = None) -> None:
    """Run an nft script atomically (one transaction), on the host or inside the netns at path `netns`."""
    lib = _LIB
    if lib is not None:
        if netns:
            nsutil.run_in_netns(netns, lambda: _run_lib(lib, script))
        else:
            _run_lib(lib, script)
        return
    cmd = ["nft", "-f", "-"]
    if netns:
        cmd = ["nsenter", f"--net={netns}", *cmd]
    r = subprocess.run(cmd, input=script, capture_output=True, text=True)
    if r.returncode != 0:
        raise EngineError(f"nftables: {r.stderr.strip()}")


def apply(table: str, bridges: list[BridgeRules], ports: list[PortRule]) -> None:
    nft(render(table, bridges, ports))


def add_ports(table: str, ports: list[PortRule]) -> None:
    """Add a container's DNAT rules to the table's `published` chain in one transaction.

    A whole-table swap re-registers the base chains' hooks, which waits for RCU grace periods (~20 ms here); adding
    rules does not (~2 ms), and this is on the path of every `docker run -p`. The rules are the ones render() makes,
    so the next swap (or a restart's) yields the same table.
    """
    t = _table(table)
    nft("".join(f"add rule ip {t} published {_port_rule(p)}\n" for p in ports))


def _rule_key(expr: list[dict[str, Any]]) -> tuple[str, str, int, str, int] | None:
    ip, proto, port = "0.0.0.0", "", 0
    to_ip, to_port = "", 0
    for e in expr:
        m = e.get("match") if isinstance(e, dict) else None
        if m and m.get("op") == "==":
            left = (m.get("left") or {}).get("payload") or {}
            if left.get("protocol") == "ip" and left.get("field") == "daddr" and isinstance(m.get("right"), str):
                ip = m["right"]
            elif left.get("field") == "dport" and isinstance(m.get("right"), int):
                proto, port = str(left.get("protocol")), m["right"]
        d = e.get("dnat") if isinstance(e, dict) else None
        if d:
            to_ip, to_port = str(d.get("addr", "")), int(d.get("port", 0) or 0)
    return (proto, ip, port, to_ip, to_port) if proto and port else None


def delete_ports(table: str, ports: list[PortRule]) -> None:
    """Delete a container's DNAT rules (found by their handles) in one transaction; missing ones are fine."""
    t = _table(table)
    want = {(p.proto, p.host_ip or "0.0.0.0", p.host_port, p.container_ip, p.container_port) for p in ports}
    data = _json(f"list chain ip {t} published")
    handles = []
    for item in data.get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if rule and _rule_key(rule.get("expr", [])) in want:
            handles.append(rule["handle"])
    if handles:
        nft("".join(f"delete rule ip {t} published handle {h}\n" for h in handles))


def delete_table(table: str, netns: str | None = None) -> None:
    t = _table(table)
    nft(f"table ip {t}\ndelete table ip {t}\ntable ip6 {t}\ndelete table ip6 {t}\n", netns)


def _json(cmd: str) -> dict[str, Any]:
    if _LIB is not None:
        out = _run_lib(_LIB, cmd, json_out=True)
    else:
        r = subprocess.run(["nft", "-j", *cmd.split()], capture_output=True, text=True)
        out = r.stdout if r.returncode == 0 else ""
    try:
        data = json.loads(out or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def foreign_published(own_table: str) -> set[tuple[str, str, int]]:
    """(proto, host ip or "0.0.0.0", port) DNATed by the `published` chain of any other portside engine's table.

    Engines share the host's ports but not their allocators: without this, two engines (or a test's service next
    to a daemon) both hand out 32768 and the first table in the hook order silently wins.
    """
    found: set[tuple[str, str, int]] = set()
    for item in _json("list ruleset ip").get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not rule or rule.get("table") == own_table or rule.get("chain") != "published":
            continue
        key = _rule_key(rule.get("expr", []))
        if key is not None:
            found.add(key[:3])
    return found


def table_exists(table: str) -> bool:
    r = subprocess.run(["nft", "-j", "list", "tables", "ip"], capture_output=True, text=True)
    if r.returncode != 0:
        return False
    data = json.loads(r.stdout or "{}")
    return any(item.get("table", {}).get("name") == table for item in data.get("nftables", []))


def list_rules(table: str) -> list[dict[str, object]]:
    """The table's rules as libnftables JSON objects (for tests and reconcile checks)."""
    r = subprocess.run(["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True)
    if r.returncode != 0:
        return []
    return [item["rule"] for item in json.loads(r.stdout).get("nftables", []) if "rule" in item]
