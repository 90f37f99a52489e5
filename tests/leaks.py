"""Kernel and process state that tests leave behind, found by the names test resources must carry.

Test resources are named with a recognisable prefix (`portside-test` in paths, cgroups, nft tables; `pst` for
links and network namespaces). The session snapshots what carries those names at its start and reports what
is new at its end: a leak, which fails the run under CI.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

MARK = "portside-test"
LINK_PREFIX = "pst"


def _mounts() -> set[str]:
    out = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and MARK in fields[4]:
            out.add(f"mount {fields[4]}")
    return out


def _links() -> set[str]:
    try:
        res = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, timeout=10, check=False)
        links = json.loads(res.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return set()
    return {f"link {link['ifname']}" for link in links if link.get("ifname", "").startswith((LINK_PREFIX, MARK))}


def _netns() -> set[str]:
    run_netns = Path("/run/netns")
    if not run_netns.is_dir():
        return set()
    return {f"netns {p.name}" for p in run_netns.iterdir() if p.name.startswith((LINK_PREFIX, MARK))}


def _cgroups() -> set[str]:
    out = set()
    root = Path("/sys/fs/cgroup")
    if not root.is_dir():
        return out
    for hierarchy in [root, *(p for p in root.iterdir() if p.is_dir())]:
        try:
            for child in hierarchy.iterdir():
                if child.is_dir() and child.name.startswith(MARK):
                    out.add(f"cgroup {child}")
        except OSError:
            continue
    return out


def _nft_tables() -> set[str]:
    try:
        res = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True, timeout=10, check=False)
        data = json.loads(res.stdout or "{}")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return set()
    out = set()
    for item in data.get("nftables", []):
        table = item.get("table")
        if table and (MARK in table.get("name", "") or table.get("name", "").startswith(LINK_PREFIX)):
            out.add(f"nft table {table['family']} {table['name']}")
    return out


def _processes() -> set[str]:
    out = set()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if MARK in cmd:
            out.add(f"process {entry.name}: {cmd[:160]}")
    return out


def snapshot() -> set[str]:
    return _mounts() | _links() | _netns() | _cgroups() | _nft_tables() | _processes()
