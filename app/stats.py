"""Container stats computed the way `docker stats` does (docker/cli command/container/stats_helpers.go)."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One `docker stats` line: CPU %, memory used (without page cache) and limit, net and block IO, PIDs."""

    cpu_percent: float
    mem_used: int
    mem_limit: int
    net_rx: int
    net_tx: int
    blk_read: int
    blk_write: int
    pids: int
    read: float  # the sample's timestamp, seconds since the epoch

    @property
    def mem_percent(self) -> float:
        return self.mem_used / self.mem_limit * 100.0 if self.mem_limit else 0.0


def cpu_percent(s: dict[str, Any]) -> float:
    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get(
        "total_usage", 0
    )
    if not pre.get("system_cpu_usage"):
        # A stream's first sample has no previous one: the delta would be the average since the container
        # started, a number of another kind that would set the CPU graph's scale for its whole window.
        return 0.0
    system_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def memory_used(mem: dict[str, Any]) -> int:
    usage = int(mem.get("usage") or 0)
    stats = mem.get("stats") or {}
    if "total_inactive_file" in stats and stats["total_inactive_file"] < usage:  # cgroup v1
        return usage - int(stats["total_inactive_file"])
    if stats.get("inactive_file", usage) < usage:  # cgroup v2
        return usage - int(stats["inactive_file"])
    return usage


def block_io(s: dict[str, Any]) -> tuple[int, int]:
    read = write = 0
    for entry in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += int(entry.get("value", 0))
        elif op == "write":
            write += int(entry.get("value", 0))
    return read, write


def network_io(s: dict[str, Any]) -> tuple[int, int]:
    rx = tx = 0
    for net in (s.get("networks") or {}).values():
        rx += int(net.get("rx_bytes", 0))
        tx += int(net.get("tx_bytes", 0))
    return rx, tx


_TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def _timestamp(value: str | None) -> float:
    """Seconds since the epoch of an RFC 3339 time with Go's nanoseconds (Python parses microseconds)."""
    m = _TS.match(value or "")
    if not m or m.group(1).startswith("0001"):
        return 0.0
    tz = m.group(3) or "Z"
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{'+00:00' if tz == 'Z' else tz}").timestamp()


def sample(s: dict[str, Any]) -> Sample:
    rx, tx = network_io(s)
    rd, wr = block_io(s)
    mem = s.get("memory_stats") or {}
    return Sample(
        cpu_percent=cpu_percent(s),
        mem_used=memory_used(mem),
        mem_limit=int(mem.get("limit") or 0),
        net_rx=rx,
        net_tx=tx,
        blk_read=rd,
        blk_write=wr,
        pids=int((s.get("pids_stats") or {}).get("current") or 0),
        read=_timestamp(s.get("read")),
    )


@dataclass
class History:
    """The last `size` samples of one container, with rates between consecutive samples for the graphs."""

    size: int = 120
    samples: deque[Sample] = field(default_factory=deque)
    cpu: deque[float] = field(default_factory=deque)
    mem: deque[float] = field(default_factory=deque)
    net_rx_rate: deque[float] = field(default_factory=deque)
    net_tx_rate: deque[float] = field(default_factory=deque)
    blk_read_rate: deque[float] = field(default_factory=deque)
    blk_write_rate: deque[float] = field(default_factory=deque)
    pids: deque[float] = field(default_factory=deque)

    def add(self, new: Sample) -> None:
        prev = self.samples[-1] if self.samples else None
        dt = (new.read - prev.read) if prev and new.read and prev.read else 1.0
        dt = dt if dt > 0 else 1.0

        def rate(a: int, b: int) -> float:
            return max(0.0, (a - b) / dt) if prev else 0.0

        for series, value in (
            (self.cpu, new.cpu_percent),
            (self.mem, float(new.mem_used)),
            (self.net_rx_rate, rate(new.net_rx, prev.net_rx if prev else 0)),
            (self.net_tx_rate, rate(new.net_tx, prev.net_tx if prev else 0)),
            (self.blk_read_rate, rate(new.blk_read, prev.blk_read if prev else 0)),
            (self.blk_write_rate, rate(new.blk_write, prev.blk_write if prev else 0)),
            (self.pids, float(new.pids)),
        ):
            series.append(value)
            while len(series) > self.size:
                series.popleft()
        self.samples.append(new)
        while len(self.samples) > 2:
            self.samples.popleft()

    @property
    def last(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


def human_bytes(n: float, binary: bool = True) -> str:
    """`docker stats` units: memory in binary (MiB), IO in decimal (MB)."""
    base = 1024.0 if binary else 1000.0
    units = ["B", "KiB", "MiB", "GiB", "TiB"] if binary else ["B", "kB", "MB", "GB", "TB"]
    value = float(n)
    for unit in units:
        if abs(value) < base or unit == units[-1]:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.2f}{unit}"
        value /= base
    return f"{value:.2f}{units[-1]}"
