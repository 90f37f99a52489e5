"""cgroups v1 (legacy and hybrid) and v2, detected at start-up: create, limit, freeze, kill, stats, delete.

Imports only `os` and `time`: the supervisor uses it too and its memory is a benchmark figure.
"""

from __future__ import annotations

import os
import time

from engine.exec.lean import suppress

# No typing at run time (annotations only): what the zygote imports is shared by every supervisor, each
# paying its share of those pages in PSS (see lean.py); mypy reads the block below as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ROOT = "/sys/fs/cgroup"
# the v1 controllers a container gets a directory in, when the host mounts them
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "blkio", "devices")
_UNLIMITED_V1 = 0x7FFFFFFFFFFFF000


def read_bytes(path: str) -> bytes:
    # os-level: the supervisor calls it, and io's file objects touch (copy) many pages of the zygote's objects
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        return data
    finally:
        os.close(fd)


def _read(path: str) -> str:
    return read_bytes(path).decode()


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _v1_mounts() -> dict[str, str]:
    """controller -> mount point of its v1 hierarchy; "" -> the cgroup2 mount of a hybrid host."""
    out: dict[str, str] = {}
    try:
        text = _read("/proc/self/mountinfo")
    except OSError:
        return out
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        fields = post.split()
        if len(fields) >= 1 and fields[0] == "cgroup2" and "" not in out:
            out[""] = pre.split()[4]
        if len(fields) < 3 or fields[0] != "cgroup":
            continue
        mnt = pre.split()[4]
        for opt in fields[2].split(","):
            if opt in V1_CONTROLLERS and opt not in out:
                out[opt] = mnt
    return out


_layout: tuple[int, dict[str, str]] | None = None


def layout() -> tuple[int, dict[str, str]]:
    """(2, {}) on a pure cgroup v2 host; (1, {controller: mount point}) on a legacy or hybrid one."""
    global _layout
    if _layout is None:
        if os.path.exists(ROOT + "/cgroup.controllers"):
            _layout = (2, {})
        else:
            mounts = _v1_mounts()
            global _hybrid_v2
            _hybrid_v2 = mounts.pop("", None)
            _layout = (1, mounts)
    return _layout


_hybrid_v2: str | None = None


def hybrid_v2_root() -> str | None:
    """The cgroup2 mount of a hybrid host (/sys/fs/cgroup/unified), None on legacy and pure v2 hosts."""
    layout()
    return _hybrid_v2


def _parse_kv(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            with suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


class Cgroup:
    """One container's cgroup, `path` relative to the hierarchy roots (e.g. "portside/<id>")."""

    def __init__(self, path: str, *, v2_root: str | None = None) -> None:
        """`v2_root`: use this cgroup2 mount as a pure v2 host would (tests: the hybrid host's unified one).

        A `path` inside a hybrid host's cgroup2 mount (an OCI cgroupsPath such as
        "/sys/fs/cgroup/unified/portside-test-x/<id>") means the same: that cgroup2 directory only, so tests
        run real containers through the v2 code (device filter included) on a hybrid host.
        """
        if v2_root is None and path.startswith("/"):
            hybrid = hybrid_v2_root()
            if hybrid and path.startswith(hybrid + "/"):
                v2_root, path = hybrid, path[len(hybrid) :]
        self.path = path.strip("/")
        self.root = v2_root or ROOT
        self.version, self.mounts = (2, {}) if v2_root else layout()

    def dir(self, controller: str = "") -> str:
        if self.version == 2:
            return f"{self.root}/{self.path}"
        return f"{self.mounts[controller]}/{self.path}"

    def dirs(self) -> list[str]:
        if self.version == 2:
            return [self.dir()]
        seen: list[str] = []
        for c in self.mounts:
            d = self.dir(c)
            if d not in seen:
                seen.append(d)
        return seen

    def join_files(self) -> list[str]:
        """The files a process writes "0" to, to join this cgroup itself. On v1, `tasks` (one thread: callers
        are single-threaded, fresh from fork): writing `cgroup.procs` takes the kernel's threadgroup rwsem for
        writing, which waits for an RCU grace period (7-20 ms per run here); moving only the calling thread
        skips that lock. v2 keeps `cgroup.procs`: its `cgroup.threads` cannot cross into another domain."""
        name = "cgroup.procs" if self.version == 2 else "tasks"
        return [f"{d}/{name}" for d in self.dirs()]

    def has(self, controller: str) -> bool:
        return self.version == 2 or controller in self.mounts

    # --- life cycle ---

    def create(self) -> None:
        if self.version == 2:
            self._create_v2()
            return
        for c in self.mounts:
            base = self.mounts[c]
            if c != "cpuset":
                try:  # the parents exist most often: one mkdir, no exception (a supervisor makes its cgroup)
                    os.mkdir(f"{base}/{self.path}")
                    continue
                except OSError:
                    pass
            cur = base
            for part in self.path.split("/"):
                parent, cur = cur, f"{cur}/{part}"
                try:
                    os.mkdir(cur)
                except FileExistsError:
                    continue
                if c == "cpuset":
                    # a new cpuset is empty and takes no task until it gets its parent's cpus and mems
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        if not _read(f"{cur}/{f}").strip():
                            _write(f"{cur}/{f}", _read(f"{parent}/{f}").strip())

    def _create_v2(self) -> None:
        cur = self.root
        for part in self.path.split("/"):
            try:
                wanted = _read(cur + "/cgroup.controllers").split()
                enabled = _read(cur + "/cgroup.subtree_control").split()
                for c in ("cpu", "cpuset", "io", "memory", "pids"):
                    if c in wanted and c not in enabled:
                        with suppress(OSError):
                            _write(cur + "/cgroup.subtree_control", "+" + c)
            except OSError:
                pass
            cur = f"{cur}/{part}"
            with suppress(FileExistsError):
                os.mkdir(cur)

    def add(self, pid: int) -> None:
        for d in self.dirs():
            _write(d + "/cgroup.procs", str(pid))

    def procs(self) -> list[int]:
        d = self.dir("pids" if self.version == 1 and "pids" in self.mounts else next(iter(self.mounts), ""))
        try:
            return [int(p) for p in _read(d + "/cgroup.procs").split()]
        except OSError:
            return []

    def kill_all(self, sig: int = 9) -> None:
        if self.version == 2 and os.path.exists(self.dir() + "/cgroup.kill"):
            try:
                _write(self.dir() + "/cgroup.kill", "1")
                return
            except OSError:
                pass
        if not self.procs():
            # most often, as a container's init has exited (its pid namespace took the rest along): nothing can
            # fork into an empty cgroup, so no freeze (a write and a poll of freezer.state, a thaw likewise)
            return
        frozen = self.has("freezer")
        if frozen:
            self.freeze()
        for pid in self.procs():
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        if frozen:
            self.thaw()

    def delete(self, timeout: float = 2.0) -> None:
        """Removes the container's directories (not the shared parents), waiting for the last tasks to go."""
        deadline = time.monotonic() + timeout
        for d in self.dirs():
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs())

    # --- limits ---

    def set_resources(self, res: dict[str, Any]) -> None:
        if self.version == 2:
            self._set_v2(res)
        else:
            self._set_v1(res)

    def _set_v1(self, res: dict[str, Any]) -> None:
        mem = res.get("memory") or {}
        if self.has("memory"):
            d = self.dir("memory")
            limit, swap = mem.get("limit"), mem.get("swap")
            memsw = os.path.exists(d + "/memory.memsw.limit_in_bytes")
            if limit is not None:
                writes = [("memory.limit_in_bytes", limit)]
                if memsw and swap is not None:
                    writes.append(("memory.memsw.limit_in_bytes", swap))
                try:
                    for f, v in writes:
                        _write(f"{d}/{f}", str(v))
                except OSError:
                    # the memory limit may never exceed memory+swap: raising both goes the other way round
                    for f, v in reversed(writes):
                        _write(f"{d}/{f}", str(v))
            if mem.get("reservation") is not None:
                _write(d + "/memory.soft_limit_in_bytes", str(mem["reservation"]))
            if mem.get("disableOOMKiller"):
                _write(d + "/memory.oom_control", "1")
        cpu = res.get("cpu") or {}
        if self.has("cpu"):
            d = self.dir("cpu")
            if cpu.get("shares"):
                _write(d + "/cpu.shares", str(cpu["shares"]))
            if cpu.get("period"):
                _write(d + "/cpu.cfs_period_us", str(cpu["period"]))
            if cpu.get("quota"):
                _write(d + "/cpu.cfs_quota_us", str(cpu["quota"]))
        if self.has("cpuset"):
            d = self.dir("cpuset")
            if cpu.get("cpus"):
                _write(d + "/cpuset.cpus", cpu["cpus"])
            if cpu.get("mems"):
                _write(d + "/cpuset.mems", cpu["mems"])
        pids = res.get("pids") or {}
        if self.has("pids") and pids.get("limit"):
            lim = pids["limit"]
            _write(self.dir("pids") + "/pids.max", "max" if lim <= 0 else str(lim))
        if self.has("devices") and res.get("devices"):
            d = self.dir("devices")
            for rule in res["devices"]:
                kind = rule.get("type", "a")
                major = "*" if rule.get("major") is None else str(rule["major"])
                minor = "*" if rule.get("minor") is None else str(rule["minor"])
                entry = "a" if kind == "a" and major == "*" else f"{kind} {major}:{minor} {rule.get('access', 'rwm')}"
                if "type" not in rule and rule.get("major") is None:
                    entry = "a"
                _write(d + ("/devices.allow" if rule.get("allow") else "/devices.deny"), entry)

    def _set_v2(self, res: dict[str, Any]) -> None:
        d = self.dir()
        mem = res.get("memory") or {}
        if mem.get("limit") is not None:
            _write(d + "/memory.max", "max" if mem["limit"] <= 0 else str(mem["limit"]))
            swap = mem.get("swap")
            if swap is not None and os.path.exists(d + "/memory.swap.max"):
                _write(d + "/memory.swap.max", "max" if swap < 0 else str(max(0, swap - mem["limit"])))
        if mem.get("reservation") is not None:
            _write(d + "/memory.low", str(mem["reservation"]))
        if mem.get("disableOOMKiller") and os.path.exists(d + "/memory.oom.group"):
            _write(d + "/memory.oom.group", "0")
        cpu = res.get("cpu") or {}
        if cpu.get("shares") and os.path.exists(d + "/cpu.weight"):
            _write(d + "/cpu.weight", str(1 + ((cpu["shares"] - 2) * 9999) // 262142))
        if (cpu.get("quota") or cpu.get("period")) and os.path.exists(d + "/cpu.max"):
            quota = cpu.get("quota") or 0
            _write(d + "/cpu.max", f"{quota if quota > 0 else 'max'} {cpu.get('period') or 100000}")
        if cpu.get("cpus") and os.path.exists(d + "/cpuset.cpus"):
            _write(d + "/cpuset.cpus", cpu["cpus"])
        if cpu.get("mems") and os.path.exists(d + "/cpuset.mems"):
            _write(d + "/cpuset.mems", cpu["mems"])
        pids = res.get("pids") or {}
        if pids.get("limit") and os.path.exists(d + "/pids.max"):
            _write(d + "/pids.max", "max" if pids["limit"] <= 0 else str(pids["limit"]))
        if "devices" in res:
            # no devices controller on v2: an eBPF program attached to the directory filters device access; it
            # goes away with the cgroup
            from engine.exec import devicefilter

            devicefilter.apply(d, res["devices"] or [])

    # --- freezer ---

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        if self.version == 2:
            _write(self.dir() + "/cgroup.freeze", "1" if frozen else "0")
            want = "frozen 1" if frozen else "frozen 0"
            path = self.dir() + "/cgroup.events"
        else:
            _write(self.dir("freezer") + "/freezer.state", "FROZEN" if frozen else "THAWED")
            want = "FROZEN" if frozen else "THAWED"
            path = self.dir("freezer") + "/freezer.state"
        deadline = time.monotonic() + 5
        while want not in _read(path) and time.monotonic() < deadline:
            time.sleep(0.002)

    def frozen(self) -> bool:
        try:
            if self.version == 2:
                return "frozen 1" in _read(self.dir() + "/cgroup.events")
            return _read(self.dir("freezer") + "/freezer.state").strip() == "FROZEN"
        except OSError:
            return False

    # --- events and stats ---

    def oom_kills(self) -> int:
        try:
            if self.version == 2:
                return _parse_kv(_read(self.dir() + "/memory.events")).get("oom_kill", 0)
            return _parse_kv(_read(self.dir("memory") + "/memory.oom_control")).get("oom_kill", 0)
        except (OSError, KeyError):
            return 0

    def stats(self) -> dict[str, Any]:
        """memory_stats, cpu_stats, pids_stats and blkio_stats in the shape of Docker's stats JSON."""
        return {
            "memory_stats": self._memory_stats(),
            "cpu_stats": self._cpu_stats(),
            "pids_stats": self._pids_stats(),
            "blkio_stats": self._blkio_stats(),
        }

    def _safe(self, path: str) -> str | None:
        try:
            return _read(path)
        except OSError:
            return None

    def _memory_stats(self) -> dict[str, Any]:
        host_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if self.version == 2:
            d = self.dir()
            usage = int(self._safe(d + "/memory.current") or 0)
            raw = (self._safe(d + "/memory.max") or "max").strip()
            limit = host_total if raw == "max" else int(raw)
            return {"usage": usage, "limit": limit, "stats": _parse_kv(self._safe(d + "/memory.stat") or "")}
        if not self.has("memory"):
            return {}
        d = self.dir("memory")
        limit = int(self._safe(d + "/memory.limit_in_bytes") or _UNLIMITED_V1)
        return {
            "usage": int(self._safe(d + "/memory.usage_in_bytes") or 0),
            "max_usage": int(self._safe(d + "/memory.max_usage_in_bytes") or 0),
            "failcnt": int(self._safe(d + "/memory.failcnt") or 0),
            "limit": min(limit, host_total),
            "stats": _parse_kv(self._safe(d + "/memory.stat") or ""),
        }

    def _cpu_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"online_cpus": os.cpu_count() or 1, "system_cpu_usage": _system_cpu_ns()}
        if self.version == 2:
            st = _parse_kv(self._safe(self.dir() + "/cpu.stat") or "")
            out["cpu_usage"] = {
                "total_usage": st.get("usage_usec", 0) * 1000,
                "usage_in_kernelmode": st.get("system_usec", 0) * 1000,
                "usage_in_usermode": st.get("user_usec", 0) * 1000,
            }
            out["throttling_data"] = {"periods": st.get("nr_periods", 0), "throttled_periods": st.get(
                "nr_throttled", 0), "throttled_time": st.get("throttled_usec", 0) * 1000}  # fmt: skip
            return out
        acct = "cpuacct" if self.has("cpuacct") else "cpu"
        d = self.dir(acct) if self.has(acct) else ""
        ticks = os.sysconf("SC_CLK_TCK")
        st = _parse_kv(self._safe(d + "/cpuacct.stat") or "")
        out["cpu_usage"] = {
            "total_usage": int(self._safe(d + "/cpuacct.usage") or 0),
            "percpu_usage": [int(x) for x in (self._safe(d + "/cpuacct.usage_percpu") or "").split()],
            "usage_in_kernelmode": st.get("system", 0) * 10**9 // ticks,
            "usage_in_usermode": st.get("user", 0) * 10**9 // ticks,
        }
        th = _parse_kv(self._safe(self.dir("cpu") + "/cpu.stat") or "") if self.has("cpu") else {}
        out["throttling_data"] = {"periods": th.get("nr_periods", 0), "throttled_periods": th.get("nr_throttled", 0),
                                  "throttled_time": th.get("throttled_time", 0)}  # fmt: skip
        return out

    def _pids_stats(self) -> dict[str, Any]:
        d = self.dir("pids") if self.has("pids") else None
        if d is None:
            return {}
        out: dict[str, Any] = {"current": int(self._safe(d + "/pids.current") or 0)}
        lim = (self._safe(d + "/pids.max") or "max").strip()
        if lim != "max":
            out["limit"] = int(lim)
        return out

    def _blkio_stats(self) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        if self.version == 2:
            for line in (self._safe(self.dir() + "/io.stat") or "").splitlines():
                parts = line.split()
                if not parts or ":" not in parts[0]:
                    continue
                major, minor = (int(x) for x in parts[0].split(":"))
                kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
                entries.append({"major": major, "minor": minor, "op": "read", "value": int(kv.get("rbytes", 0))})
                entries.append({"major": major, "minor": minor, "op": "write", "value": int(kv.get("wbytes", 0))})
        elif self.has("blkio"):
            text = self._safe(self.dir("blkio") + "/blkio.throttle.io_service_bytes") or ""
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 3 and ":" in parts[0]:
                    major, minor = (int(x) for x in parts[0].split(":"))
                    entries.append({"major": major, "minor": minor, "op": parts[1].lower(), "value": int(parts[2])})
        return {"io_service_bytes_recursive": entries or None}


def _system_cpu_ns() -> int:
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:8]
        return sum(int(x) for x in fields) * 10**9 // os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0


def remove_parent(parent: str) -> None:
    """Removes an (empty) parent cgroup in every hierarchy; tests use it to leave nothing behind."""
    version, mounts = layout()
    bases = [ROOT] if version == 2 else sorted(set(mounts.values()))
    for base in bases:
        parts = parent.strip("/").split("/")
        for i in range(len(parts), 0, -1):
            try:
                os.rmdir(f"{base}/{'/'.join(parts[:i])}")
            except (FileNotFoundError, OSError):
                break
