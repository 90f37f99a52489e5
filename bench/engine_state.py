"""What the soak and concurrency benchmarks share: a portside daemon on temp roots with the test bed's registry,
and a census of everything a container life cycle can leave behind (kernel objects, processes, the daemon's own
fds, threads and memory, files under its roots), to compare before and after as a leak table."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Bench:
    daemon: Any  # tests.api.conftest.PortsideDaemon
    registry: Any  # tests.testbed.registry.Registry

    @property
    def busybox(self) -> str:
        return f"{self.registry.host}/testbed/busybox:latest"

    @property
    def nginx(self) -> str:
        return f"{self.registry.host}/testbed/nginx:latest"

    def docker(self, *args: str, timeout: float = 120) -> str:
        out = self.daemon.docker(*args, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.strip()}")
        return str(out.stdout)


@contextlib.contextmanager
def bench_daemon() -> Iterator[Bench]:
    """A daemon (and a registry holding the test bed) for one benchmark; everything goes at the end."""
    sys.path.insert(0, str(ROOT))
    from tests.api.conftest import new_daemon, remove_daemon_dirs
    from tests.testbed import images
    from tests.testbed.registry import Registry, fill

    built = images.ensure_built()
    work = Path(tempfile.mkdtemp(prefix="portside-test-bench-"))
    reg = Registry(work / "registry")
    d = new_daemon()
    try:
        reg.start()
        fill(reg, built.layouts)
        d.start(timeout=60)
        b = Bench(d, reg)
        b.docker("pull", "-q", b.busybox)
        yield b
    finally:
        d.stop()
        d.cleanup_containers()
        d.destroy_network_state()
        remove_daemon_dirs(d)
        reg.stop()
        from tests.testbed.mounts import unmount_below

        unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _files(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + dirnames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _go_heap(pid: int) -> int:
    """Resident KiB of the Go runtime's heap (the Dockerfile parser's, engine/mallopt.py): Go maps it from
    0xc000000000 up on amd64."""
    total, inside = 0, False
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):
                inside = 0xC000000000 <= int(head.split("-")[0], 16) < 0xC100000000
            elif inside and head == "Rss:":
                total += int(line.split()[1])
    return total


def census_rss(b: Bench) -> int:
    """The daemon's resident set, KiB."""
    assert b.daemon.proc is not None
    return _status(b.daemon.proc.pid, "VmRSS")


def census(b: Bench) -> dict[str, set[str] | int]:
    """Sets of named things (compared by content) and counters (compared by value)."""
    d = b.daemon
    marks = (str(d.tmp), str(d.exec_root))
    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(marks)}
    from engine.parts import nft_table_for

    table = nft_table_for(d.bridge)
    # this engine's links carry its alias (engine/net names them so); other engines on the machine are not counted
    links_json = [link for link in json.loads(_run(["ip", "-j", "-d", "link", "show"]) or "[]")
                  if str(link.get("ifalias", "")).startswith(f"portside {table} ") or link["ifname"] == d.bridge]
    links = {f"{link['ifname']}" for link in links_json}
    bridges = {link["ifname"] for link in links_json
               if (link.get("linkinfo") or {}).get("info_kind") == "bridge"}
    netns = {p.name for p in (d.exec_root / "netns").iterdir()} if (d.exec_root / "netns").is_dir() else set()
    rules: set[str] = set()
    nft = json.loads(_run(["nft", "-j", "list", "table", "ip", table]) or "{}")
    for item in nft.get("nftables", []):
        if "rule" in item:
            r = item["rule"]
            rules.add(f"{r.get('chain')}: {json.dumps(r.get('expr'), sort_keys=True)}")
        elif "element" in item or "set" in item or "map" in item:
            rules.add(json.dumps(item, sort_keys=True))
    cgroups: set[str] = set()
    for parent in Path("/sys/fs/cgroup").glob(f"*/portside-test-{d.bridge}"):
        for dirpath, dirnames, _ in os.walk(parent):
            cgroups.update(os.path.join(dirpath, n) for n in dirnames)
    assert d.proc is not None
    pid = d.proc.pid
    procs: set[str] = set()
    kids = _descendants(pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pid:
            continue
        with contextlib.suppress(OSError):
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            # the daemon's children, and what runs with its roots in its command line (supervisors, zygote)
            if int(entry.name) in kids or any(m in cmd for m in marks):
                procs.add(f"{entry.name} {cmd[:100]}")
    return {
        "mounts": mounts, "netns": netns, "links": links, "bridges": bridges, "nft rules": rules,
        "cgroups": cgroups, "processes": procs,
        "data-root files": _files(d.data_root), "exec-root files": _files(d.exec_root),
        "daemon fds": len(os.listdir(f"/proc/{pid}/fd")), "daemon threads": _status(pid, "Threads"),
        "daemon RSS KiB": _status(pid, "VmRSS"), "of it Go heap KiB": _go_heap(pid),
    }


def leak_table(before: dict[str, set[str] | int], after: dict[str, set[str] | int]) -> tuple[str, int]:
    """The table of before/after figures, and how many rows show something left over."""
    lines = [f"  {'what':<18} {'before':>9} {'after':>9} {'delta':>9}  left over"]
    leaks = 0
    for key, was in before.items():
        now = after[key]
        if isinstance(was, set) and isinstance(now, set):
            new = sorted(now - was)
            delta = len(now) - len(was)
            lines.append(f"  {key:<18} {len(was):>9} {len(now):>9} {delta:>+9}  {', '.join(new[:3])[:90]}"
                         + (f" (+{len(new) - 3} more)" if len(new) > 3 else ""))
            leaks += bool(new)
        else:
            assert isinstance(was, int) and isinstance(now, int)
            lines.append(f"  {key:<18} {was:>9} {now:>9} {now - was:>+9}")
    return "\n".join(lines), leaks


def settle(b: Bench, timeout: float = 10) -> None:
    """Waits until no container is left (removal is synchronous; the kernel destroys veths a moment later) and
    the daemon has given the freed memory back (a trim a second after a removal, engine/mallopt.py): else the
    RSS read next may or may not have had its trim, a 1-2 MiB difference from one run to the next."""
    from engine import mallopt

    deadline = time.monotonic() + timeout
    while b.docker("ps", "-aq").strip() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(mallopt.TRIM_DELAY + 0.5)


def memtrace_snapshot(b: Bench, directory: Path, timeout: float = 60) -> Path:
    """Asks a daemon started with PORTSIDE_TRACEMALLOC=<directory> (engine/memtrace.py) for a snapshot."""
    import signal

    assert b.daemon.proc is not None
    n = len(list(directory.glob("*.snap"))) + 1
    path = directory / f"{n}.snap"
    os.kill(b.daemon.proc.pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    size = -1
    while time.monotonic() < deadline:  # written in place: done when its size stops changing
        if path.exists() and path.stat().st_size == size and size > 0:
            return path
        size = path.stat().st_size if path.exists() else -1
        time.sleep(0.5)
    raise RuntimeError(f"the daemon wrote no snapshot {path}")


def memtrace_diff(old: Path, new: Path, top: int = 12) -> str:
    """The allocation sites that grew most between two snapshots, with the frames that led there."""
    import tracemalloc

    skip = tracemalloc.Filter(False, tracemalloc.__file__)
    a = tracemalloc.Snapshot.load(str(old)).filter_traces([skip])
    z = tracemalloc.Snapshot.load(str(new)).filter_traces([skip])
    lines = [f"  python heap: {sum(s.size for s in a.statistics('filename')) / 2**20:.2f} MiB -> "
             f"{sum(s.size for s in z.statistics('filename')) / 2**20:.2f} MiB"]
    with contextlib.suppress(OSError, ValueError):
        ma = json.loads(old.with_suffix(".malloc.json").read_text())
        mz = json.loads(new.with_suffix(".malloc.json").read_text())
        lines.append("  glibc malloc (MiB): " + ", ".join(
            f"{k} {ma[k] / 2**20:.2f} -> {mz[k] / 2**20:.2f}" for k in ("in_use", "free", "mmapped") if k in ma))
    with contextlib.suppress(OSError, ValueError):
        ta = json.loads(old.with_suffix(".types.json").read_text())
        tz = json.loads(new.with_suffix(".types.json").read_text())
        grew = sorted(((tz[k] - ta.get(k, 0), k) for k in tz if tz[k] > ta.get(k, 0)), reverse=True)[:top]
        lines.append("  live objects that grew in number: " + ", ".join(f"{k} {n:+d}" for n, k in grew))
    for stat in z.compare_to(a, "traceback")[:top]:
        lines.append(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
        frames = list(stat.traceback)  # oldest first
        ours = [f for f in frames if f.filename.startswith(str(ROOT)) and "/.venv/" not in f.filename]
        # the allocation site, and the innermost of this project's frames that led there
        for frame in [*ours[-4:], *[f for f in frames[-2:] if f not in ours[-4:]]]:
            lines.append(f"        {frame.filename.replace(str(ROOT) + '/', '')}:{frame.lineno}")
    return "\n".join(lines)
