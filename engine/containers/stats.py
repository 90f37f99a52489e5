"""Container stats in Docker's shape, read from the container's cgroups (v1 or v2) and its network namespace."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from engine.containers.logs import format_time_ns

_CLK = os.sysconf("SC_CLK_TCK")


def cgroup_dirs(pid: int) -> dict[str, Path]:
    """controller -> the cgroup directory of `pid` (v2 under key "")."""
    out: dict[str, Path] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if not ctrls:
                base = Path("/sys/fs/cgroup/unified") if Path("/sys/fs/cgroup/unified").is_dir() else Path(
                    "/sys/fs/cgroup")
                out[""] = base / path.lstrip("/")
                continue
            for c in ctrls.split(","):
                c = c.removeprefix("name=")
                d = Path("/sys/fs/cgroup") / c / path.lstrip("/")
                if not d.is_dir():
                    d = Path("/sys/fs/cgroup") / ctrls / path.lstrip("/")
                out[c] = d
    return out


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def _int(p: Path, default: int = 0) -> int:
    v = _read(p)
    try:
        return int(v)
    except ValueError:
        return default


def _kv(p: Path) -> dict[str, int]:
    out = {}
    for line in _read(p).splitlines():
        k, _, v = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[k] = int(v)
    return out


def system_cpu_ns() -> int:
    with open("/proc/stat", encoding="utf-8") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * 1_000_000_000 // _CLK


def _mem_total() -> int:
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def sample(pid: int, networks: dict[str, Any] | None) -> dict[str, Any]:
    """One stats sample (without `precpu_stats`) for the container whose init is `pid`."""
    dirs = cgroup_dirs(pid)
    ncpu = os.cpu_count() or 1
    cpu: dict[str, Any] = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                           "system_cpu_usage": system_cpu_ns(), "online_cpus": ncpu,
                           "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    mem: dict[str, Any] = {}
    pids: dict[str, Any] = {}
    v2 = dirs.get("")
    if "cpuacct" in dirs:
        d = dirs["cpuacct"]
        cpu["cpu_usage"]["total_usage"] = _int(d / "cpuacct.usage")
        per = [int(x) for x in _read(d / "cpuacct.usage_percpu").split() if x.isdigit()]
        if per:
            cpu["cpu_usage"]["percpu_usage"] = per
        st = _kv(d / "cpuacct.stat")
        cpu["cpu_usage"]["usage_in_usermode"] = st.get("user", 0) * 1_000_000_000 // _CLK
        cpu["cpu_usage"]["usage_in_kernelmode"] = st.get("system", 0) * 1_000_000_000 // _CLK
    elif v2 is not None and (v2 / "cpu.stat").exists():
        st = _kv(v2 / "cpu.stat")
        cpu["cpu_usage"]["total_usage"] = st.get("usage_usec", 0) * 1000
        cpu["cpu_usage"]["usage_in_usermode"] = st.get("user_usec", 0) * 1000
        cpu["cpu_usage"]["usage_in_kernelmode"] = st.get("system_usec", 0) * 1000
    if "memory" in dirs and (dirs["memory"] / "memory.usage_in_bytes").exists():
        d = dirs["memory"]
        limit = _int(d / "memory.limit_in_bytes")
        mem = {"usage": _int(d / "memory.usage_in_bytes"), "max_usage": _int(d / "memory.max_usage_in_bytes"),
               "stats": _kv(d / "memory.stat"), "failcnt": _int(d / "memory.failcnt"),
               "limit": min(limit, _mem_total()) if limit else _mem_total()}
    elif v2 is not None and (v2 / "memory.current").exists():
        raw = _read(v2 / "memory.max")
        mem = {"usage": _int(v2 / "memory.current"), "stats": _kv(v2 / "memory.stat"),
               "limit": int(raw) if raw.isdigit() else _mem_total()}
    if "pids" in dirs:
        raw = _read(dirs["pids"] / "pids.max")
        pids = {"current": _int(dirs["pids"] / "pids.current")}
        if raw.isdigit():
            pids["limit"] = int(raw)
    elif v2 is not None and (v2 / "pids.current").exists():
        pids = {"current": _int(v2 / "pids.current")}
    if not mem:
        # No memory controller: the resident size of the container's processes is the best figure.
        rss = 0
        for p in procs(pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                rss += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        mem = {"usage": rss, "stats": {}, "limit": _mem_total()}
    if not pids:
        pids = {"current": len(procs(pid))}
    blkio: dict[str, Any] = {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                             "io_queue_recursive": None, "io_service_time_recursive": None,
                             "io_wait_time_recursive": None, "io_merged_recursive": None,
                             "io_time_recursive": None, "sectors_recursive": None}
    if "blkio" in dirs:
        rows = []
        for line in _read(dirs["blkio"] / "blkio.throttle.io_service_bytes").splitlines():
            parts = line.split()
            if len(parts) == 3 and ":" in parts[0]:
                major, minor = parts[0].split(":")
                rows.append({"major": int(major), "minor": int(minor), "op": parts[1].lower(), "value": int(parts[2])})
        blkio["io_service_bytes_recursive"] = rows or None
    out: dict[str, Any] = {
        "read": format_time_ns(time.time_ns()),
        "pids_stats": pids,
        "blkio_stats": blkio,
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu,
        "memory_stats": mem,
    }
    if networks:
        out["networks"] = networks
    return out


def procs(pid: int) -> list[int]:
    """Every process in the container: the members of its cgroup, else the init and its descendants."""
    dirs = cgroup_dirs(pid)
    for key in ("pids", "memory", "cpuacct", "freezer", ""):
        d = dirs.get(key)
        if d is not None and (d / "cgroup.procs").exists():
            vals = [int(x) for x in _read(d / "cgroup.procs").split() if x.isdigit()]
            if vals and (d != Path("/sys/fs/cgroup") / key):
                return vals
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for t in os.listdir(f"/proc/{p}/task"):
                todo.extend(int(c) for c in _read(Path(f"/proc/{p}/task/{t}/children")).split())
    return out
