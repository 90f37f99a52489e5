"""dockerd's checks of a container's HostConfig, run at create (and on POST /containers/{id}/update) so that a
malformed or out-of-range value is a 400 there, never a 500 at start, a silent default, or a value that reaches a
syscall: moby's verifyContainerSettings, verifyPlatformContainerSettings and adaptContainerSettings, plus the
checks dockerd leaves to runc or the kernel (tmpfs options, sysctl names, device modes) done early here.
Bind and --mount modes are mountspec.py's (also at create).
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any

from engine.errors import InvalidArgument
from engine.exec import seccomp, spec

_INT_FIELDS = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod",
               "PidsLimit", "ShmSize", "OomScoreAdj", "BlkioWeight", "MemorySwappiness", "CpuRealtimePeriod",
               "CpuRealtimeRuntime", "KernelMemory", "KernelMemoryTCP", "CpuCount", "CpuPercent")  # fmt: skip
_GO_TYPES = {"OomScoreAdj": "int", "BlkioWeight": "uint16", "CpuCount": "int64", "CpuPercent": "int64"}

MIN_MEMORY = 6 * 1024 * 1024

RLIMITS = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack", "as"}  # fmt: skip

MIN_CPU_SHARES, MAX_CPU_SHARES = 2, 262144  # moby's linuxMinCPUShares / linuxMaxCPUShares

_CPU_LIST_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*\Z")
# a sysctl name becomes a path below /proc/sys: dotted (or slashed, for interface names with dots) words, never
# an empty, "." or ".." component that would walk out of it
_SYSCTL_RE = re.compile(r"^[A-Za-z0-9_-]+([./][A-Za-z0-9_-]+)+\Z")
# moby/sys/mount: the flags a tmpfs option may be, and the data keys it may set
_TMPFS_FLAGS = {"defaults", "ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "sync", "async",
                "dirsync", "remount", "mand", "nomand", "atime", "noatime", "diratime", "nodiratime", "bind",
                "rbind", "unbindable", "runbindable", "private", "rprivate", "shared", "rshared", "slave",
                "rslave", "relatime", "norelatime", "strictatime", "nostrictatime", "tmpcopyup",
                "notmpcopyup"}  # fmt: skip
_TMPFS_DATA = {
    "size": re.compile(r"^\d+[kKmMgGtTpPeE%]?\Z"),
    "mode": re.compile(r"^[0-7]{1,4}\Z"),
    "uid": re.compile(r"^\d{1,10}\Z"),
    "gid": re.compile(r"^\d{1,10}\Z"),
    "nr_inodes": re.compile(r"^\d+[kKmMgG]?\Z"),
    "nr_blocks": re.compile(r"^\d+[kKmMgG]?\Z"),
    "mpol": re.compile(r"^[a-z]+(:[0-9,-]+)?\Z"),
}
_RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def _go_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _unmarshal_error(v: Any, field: str, go_type: str) -> InvalidArgument:
    # what Go's encoding/json says when dockerd decodes the request body (a 400)
    return InvalidArgument(f"json: cannot unmarshal {_go_kind(v)} into Go struct field "
                           f"HostConfig.HostConfig.{field} of type {go_type}")  # fmt: skip


def _strings(hc: dict[str, Any], field: str) -> list[str]:
    v = hc.get(field)
    if v is None:
        return []
    if not isinstance(v, list):
        raise _unmarshal_error(v, field, "[]string")
    for item in v:
        if not isinstance(item, str):
            raise _unmarshal_error(item, field, "string")
    return v


def _check_types(hc: dict[str, Any]) -> None:
    for name in _INT_FIELDS:
        v = hc.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise _unmarshal_error(v, name, _GO_TYPES.get(name, "int64"))
    for name in ("CapAdd", "CapDrop", "SecurityOpt", "Binds", "DeviceCgroupRules", "GroupAdd"):
        _strings(hc, name)
    for name in ("Sysctls", "Tmpfs"):
        v = hc.get(name)
        if v is None:
            continue
        if not isinstance(v, dict):
            raise _unmarshal_error(v, name, "map[string]string")
        for value in v.values():
            if not isinstance(value, str):
                raise _unmarshal_error(value, name, "string")
    for name in ("Ulimits", "Devices", "Mounts"):
        v = hc.get(name)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, dict) for x in v)):
            raise _unmarshal_error(v, name, f"[]{name.rstrip('s')}")


def check_restart_policy(hc: dict[str, Any]) -> None:
    """moby's ValidateRestartPolicy (and the AutoRemove conflict of validateHostConfig)."""
    rp = hc.get("RestartPolicy") or {}
    if not isinstance(rp, dict):
        raise _unmarshal_error(rp, "RestartPolicy", "container.RestartPolicy")
    name, maximum = rp.get("Name") or "no", rp.get("MaximumRetryCount") or 0
    if not isinstance(name, str):
        raise _unmarshal_error(name, "RestartPolicy.Name", "container.RestartPolicyMode")
    if isinstance(maximum, bool) or not isinstance(maximum, int):
        raise _unmarshal_error(maximum, "RestartPolicy.MaximumRetryCount", "int")
    if name not in _RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
                              "'on-failure', or 'unless-stopped'")  # fmt: skip
    if maximum and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if maximum < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count must be a positive integer")


def _cpu_list(value: str, what: str, online: str) -> None:
    if not value:
        return
    if not _CPU_LIST_RE.match(value):
        raise InvalidArgument(f"Invalid value {value} for cpuset {what}: invalid format: {value}")
    have = _expand(online) if online else None
    for part in value.split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if a > b:
            raise InvalidArgument(f"Invalid value {value} for cpuset {what}: invalid format: {value}")
        if have is not None and not set(range(a, b + 1)) <= have:
            kind = "CPUs" if what == "cpus" else "memory nodes"
            raise InvalidArgument(f"Requested {kind} are not available - requested {value}, available: {online}")


def _expand(cpus: str) -> set[int]:
    out: set[int] = set()
    for part in cpus.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _online(kind: str) -> str:
    try:
        with open(f"/sys/devices/system/{kind}/online") as f:
            return f.read().strip()
    except OSError:
        return ""


def check_resources(hc: dict[str, Any], *, update: bool = False) -> None:
    """moby's verifyPlatformContainerResources: the memory, CPU, cpuset, pids and blkio fields."""
    _check_types(hc)
    memory = hc.get("Memory") or 0
    swap = hc.get("MemorySwap") or 0
    reservation = hc.get("MemoryReservation") or 0
    nano = hc.get("NanoCpus") or 0
    period, quota = hc.get("CpuPeriod") or 0, hc.get("CpuQuota") or 0
    if memory and memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if memory == 0 and swap > 0 and not update:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    if reservation and reservation < MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    if nano > 0 and period > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    ncpu = os.cpu_count() or 1
    if nano < 0 or nano > ncpu * 10**9:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    if period and not 1000 <= period <= 1000000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if quota > 0 and quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    for field, what, kind in (("CpusetCpus", "cpus", "cpu"), ("CpusetMems", "mems", "node")):
        value = hc.get(field)
        if value is not None and not isinstance(value, str):
            raise _unmarshal_error(value, field, "string")
        _cpu_list(value or "", what, _online(kind))
    weight = hc.get("BlkioWeight") or 0
    if weight < 0 or weight > 65535:
        raise _unmarshal_error(weight, "BlkioWeight", "uint16")
    if weight and not 10 <= weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    # dockerd's adaptContainerSettings clamps the shares into the kernel's range; 0 keeps the default
    shares = hc.get("CpuShares") or 0
    if shares:
        hc["CpuShares"] = min(max(shares, MIN_CPU_SHARES), MAX_CPU_SHARES)
    if (hc.get("PidsLimit") or 0) < 0:
        hc["PidsLimit"] = 0  # dockerd: a negative limit is no limit (getPidsLimit)


def check_seccomp(value: str) -> None:
    """A `seccomp=` security option is `unconfined`, `builtin` or a JSON profile (the docker CLI inlines a file's
    content); never a path read on the daemon's host."""
    if value not in ("unconfined", "builtin"):
        seccomp.load_profile(value)


def _check_security(hc: dict[str, Any]) -> None:
    _nnp, profile = spec.security_opts(hc)
    if profile is not None:
        check_seccomp(profile)
    # moby's validateCapabilities: names (any case, with or without CAP_, or ALL) known to this kernel
    spec.tweak_capabilities(hc.get("CapAdd"), hc.get("CapDrop"), False)


def _check_ulimits(hc: dict[str, Any]) -> None:
    for u in hc.get("Ulimits") or []:
        name = u.get("Name")
        if not isinstance(name, str):
            raise _unmarshal_error(name, "Ulimits.Name", "string")
        soft, hard = u.get("Soft", 0), u.get("Hard", 0)
        for field, v in (("Soft", soft), ("Hard", hard)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise _unmarshal_error(v, f"Ulimits.{field}", "int64")
        if name.lower() not in RLIMITS:
            raise InvalidArgument(f"invalid ulimit type: {name}")
        if soft > hard:
            raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        if soft < -1 or hard < -1:
            raise InvalidArgument(f"invalid ulimit {name}: a limit is -1 (unlimited) or at least 0")


def _check_sysctls(hc: dict[str, Any]) -> None:
    host_net = hc.get("NetworkMode") == "host"
    for key in hc.get("Sysctls") or {}:
        if not _SYSCTL_RE.match(key):
            raise InvalidArgument(f'sysctl "{key}" is not a valid sysctl name')
        if not spec.sysctl_namespaced(key, host_net):
            raise InvalidArgument(f'sysctl "{key}" is not in a separate kernel namespace')


def _check_tmpfs(hc: dict[str, Any]) -> None:
    for dest, opts in (hc.get("Tmpfs") or {}).items():
        if not dest.startswith("/"):
            raise InvalidArgument(f"invalid mount path: '{dest}' mount path must be absolute")
        if os.path.normpath(dest) == "/":
            raise InvalidArgument("invalid specification: destination can't be '/'")
        for opt in opts.split(","):
            if opt in _TMPFS_FLAGS or opt == "":
                continue
            key, sep, value = opt.partition("=")
            pattern = _TMPFS_DATA.get(key)
            if not sep or pattern is None:
                raise InvalidArgument(f'invalid tmpfs option "{key}"')
            if not pattern.match(value):
                raise InvalidArgument(f'invalid tmpfs option "{opt}": invalid value "{value}"')
    for m in hc.get("Mounts") or []:
        t = m.get("TmpfsOptions")
        if not t:
            continue
        size, mode = t.get("SizeBytes", 0), t.get("Mode", 0)
        if isinstance(size, bool) or not isinstance(size, int):
            raise _unmarshal_error(size, "Mounts.TmpfsOptions.SizeBytes", "int64")
        if isinstance(mode, bool) or not isinstance(mode, int):
            raise _unmarshal_error(mode, "Mounts.TmpfsOptions.Mode", "fs.FileMode")
        if size < 0:
            raise InvalidArgument(f'invalid mount config for type "tmpfs": invalid tmpfs size: {size}')
        if not 0 <= mode <= 0o7777:
            raise InvalidArgument(f'invalid mount config for type "tmpfs": invalid tmpfs mode: {mode:o}')


def _check_mount_targets(hc: dict[str, Any]) -> None:
    """moby's parser: a mount's destination is absolute and not the container's root (modes: mountspec.py)."""
    root = "invalid specification: destination can't be '/'"
    for bind in _strings(hc, "Binds"):
        parts = bind.split(":")
        if len(parts) >= 2 and os.path.normpath(parts[1]) == "/":
            kind = "bind" if parts[0].startswith("/") else "volume"
            raise InvalidArgument(f"invalid volume specification: '{bind}': invalid mount config for type "
                                  f'"{kind}": {root}')  # fmt: skip
    for m in hc.get("Mounts") or []:
        kind, target = m.get("Type", "volume"), m.get("Target", "")
        if not isinstance(target, str) or not target.startswith("/"):
            raise InvalidArgument(f"invalid mount config for type \"{kind}\": invalid mount path: '{target}' mount "
                                  "path must be absolute")  # fmt: skip
        if os.path.normpath(target) == "/":
            raise InvalidArgument(f'invalid mount config for type "{kind}": {root}')


def _check_devices(hc: dict[str, Any]) -> None:
    for d in hc.get("Devices") or []:
        host, inside = d.get("PathOnHost", ""), d.get("PathInContainer", "")
        perms = d.get("CgroupPermissions", "")
        for v, field in ((host, "PathOnHost"), (inside, "PathInContainer"), (perms, "CgroupPermissions")):
            if not isinstance(v, str):
                raise _unmarshal_error(v, f"Devices.{field}", "string")
        if not host.startswith("/"):
            raise InvalidArgument(f"{host} is not an absolute path")
        if inside and (not inside.startswith("/") or ".." in inside.split("/")):
            raise InvalidArgument(f"{inside} is not an absolute path")
        if perms and (not set(perms) <= set("rwm") or len(set(perms)) != len(perms)):
            raise InvalidArgument(f"invalid device mode: {perms}")


def _container_ref_ok(mode: str) -> bool:
    # moby's validContainer: "container:<name or id>" with a non-empty reference
    kind, sep, ref = mode.partition(":")
    return kind == "container" and bool(sep) and ref != ""


def _check_namespace_modes(hc: dict[str, Any]) -> None:
    """moby's IpcMode/PidMode/UTSMode/CgroupnsMode Valid(): a mode that is none of the known ones is refused."""
    modes = {name: hc.get(name) or "" for name in ("IpcMode", "PidMode", "UTSMode", "CgroupnsMode")}
    for name, v in modes.items():
        if not isinstance(v, str):
            raise _unmarshal_error(v, name, f"container.{name}")
    ipc, pid, uts, cgroupns = modes.values()
    # moby's IpcMode.IsContainer takes "container:" with no reference too (a TODO there); PidMode's does not
    if not (ipc in ("", "none", "private", "host", "shareable") or ipc.startswith("container:")):
        raise InvalidArgument(f"invalid IPC mode: {ipc}")
    if not (pid in ("", "host") or _container_ref_ok(pid)):
        raise InvalidArgument(f"invalid PID mode: {pid}")
    if uts not in ("", "host"):
        raise InvalidArgument(f"invalid UTS mode: {uts}")
    if cgroupns not in ("", "private", "host"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {cgroupns}")


def _check_device_cgroup_rules(hc: dict[str, Any]) -> None:
    for rule in hc.get("DeviceCgroupRules") or []:
        if not spec.DEVICE_RULE_RE.match(rule):
            raise InvalidArgument(f"invalid device cgroup rule format: '{rule}'")


def _check_extra_hosts(hc: dict[str, Any]) -> None:
    """moby's ValidateExtraHost: "name:ip" (the first ":" splits, for IPv6; docker 28's "name=ip" too), the ip an
    address or "host-gateway"; a name with white space would write a second line into the container's hosts."""
    for item in _strings(hc, "ExtraHosts"):
        name, sep, ip = item.partition(":")
        if not sep:
            name, sep, ip = item.partition("=")
        if not sep or name == "" or any(ch.isspace() for ch in name):
            raise InvalidArgument(f'bad format for add-host: "{item}"')
        if ip != "host-gateway":
            try:
                ipaddress.ip_address(ip.strip("[]"))
            except ValueError:
                raise InvalidArgument(f'invalid IP address in add-host: "{ip}"') from None


def _check_dns(hc: dict[str, Any]) -> None:
    """Dns servers are addresses (moby decodes them as netip.Addr: its error is ParseAddr's); a search domain or
    an option with white space in it would write another line into the container's resolv.conf."""
    for d in _strings(hc, "Dns"):
        try:
            ipaddress.ip_address(d)
        except ValueError:
            raise InvalidArgument(f'ParseAddr("{d}"): unable to parse IP') from None
    for field, what in (("DnsSearch", "DNS search domain"), ("DnsOptions", "DNS option")):
        for v in _strings(hc, field):
            if v == "" or any(ch.isspace() for ch in v):
                raise InvalidArgument(f'invalid {what}: "{v}"')


MAX_HOSTNAME_LEN = 64  # moby's maxHostnameLen: the kernel's HOST_NAME_MAX


def check_container_config(config: dict[str, Any]) -> None:
    """moby's validateContainerConfig and the hostname check of verifyPlatformContainerSettings."""
    env = config.get("Env")
    if env is not None:
        if not isinstance(env, list):
            raise InvalidArgument(f"json: cannot unmarshal {_go_kind(env)} into Go struct field Config.Env of type "
                                  "[]string")  # fmt: skip
        for item in env:
            if not isinstance(item, str):
                raise InvalidArgument(f"json: cannot unmarshal {_go_kind(item)} into Go struct field Config.Env "
                                      "of type string")  # fmt: skip
            if item.partition("=")[0] == "":
                raise InvalidArgument(f"invalid environment variable: {item}")
    hostname = config.get("Hostname") or ""
    if not isinstance(hostname, str):
        raise InvalidArgument(f"json: cannot unmarshal {_go_kind(hostname)} into Go struct field Config.Hostname "
                              "of type string")  # fmt: skip
    if len(hostname.encode()) > MAX_HOSTNAME_LEN:
        raise InvalidArgument(f'hostname "{hostname}" is too long (maximum {MAX_HOSTNAME_LEN} bytes)')


def check_namespace_conflicts(config: dict[str, Any], hc: dict[str, Any]) -> None:
    """moby's validateHostConfig on Linux: a hostname is the UTS namespace's, so it cannot go with the host's."""
    if hc.get("UTSMode") == "host" and config.get("Hostname"):
        raise InvalidArgument("conflicting options: hostname and the UTS mode")


def check_host_config(hc: dict[str, Any]) -> None:
    """All of dockerd's create-time checks of a HostConfig (InvalidArgument, a 400, on the first bad value);
    values dockerd adapts (CpuShares, a negative PidsLimit) are adapted in place."""
    _check_types(hc)
    shm = hc.get("ShmSize") or 0
    if shm < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    oom = hc.get("OomScoreAdj") or 0
    if not -1000 <= oom <= 1000:
        raise InvalidArgument(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    check_restart_policy(hc)
    _check_namespace_modes(hc)
    for key in hc.get("Annotations") or {}:
        if key == "":
            raise InvalidArgument("invalid Annotations: the empty string is not permitted as an annotation key")
    check_resources(hc)
    _check_security(hc)
    _check_ulimits(hc)
    _check_sysctls(hc)
    _check_tmpfs(hc)
    _check_mount_targets(hc)
    _check_devices(hc)
    _check_device_cgroup_rules(hc)
    _check_extra_hosts(hc)
    _check_dns(hc)
