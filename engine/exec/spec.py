"""Docker's container config (Engine API `Config` and `HostConfig` dicts) plus the image config, turned into an OCI
runtime spec with Docker's defaults: capabilities, masked and read-only paths, default mounts, seccomp, resources.

The result is the `config.json` of an OCI bundle, the same input runc takes.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import EngineError, InvalidArgument
from engine.exec import seccomp
from engine.exec.users import resolve_user

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]  # fmt: skip

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
]  # fmt: skip
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEFAULT_SHM_SIZE = 64 * 1024 * 1024
# namespaced sysctls (moby's validation): the IPC ones, and net.* unless the network namespace is the host's
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
                "kernel.shmmni", "kernel.shm_rmid_forced"}  # fmt: skip

_DEFAULT_DEVICES = [
    # path, type, major, minor
    ("/dev/null", "c", 1, 3),
    ("/dev/zero", "c", 1, 5),
    ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8),
    ("/dev/urandom", "c", 1, 9),
    ("/dev/tty", "c", 5, 0),
]
# the device cgroup rules Docker gives every container (besides the devices above)
_DEFAULT_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},  # mknod of any device is allowed, using one is not
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # /dev/ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # /dev/net/tun
]

DEVICE_RULE_RE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})\Z")

ANNOTATION_INIT = "io.portside.init"
ANNOTATION_STOP_SIGNAL = "io.portside.stop-signal"

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)$", re.IGNORECASE)


def parse_memory(value: str | int) -> int:
    """Docker's RAMInBytes: "512m", "1g", "1024" -> bytes; anything else is Docker's `invalid size` error."""
    if isinstance(value, int):
        return value
    m = _SIZE_RE.match(value.strip())
    if not m:
        raise InvalidArgument(f"invalid size: '{value}'")
    num = float(m.group(1))
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}[m.group(2).lower()]
    return int(num * mult)


def _int_field(hc: dict[str, Any], name: str) -> int:
    v = hc.get(name)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        kind = "string" if isinstance(v, str) else type(v).__name__
        raise InvalidArgument(
            f"json: cannot unmarshal {kind} into Go struct field HostConfig.HostConfig.{name} of type int64"
        )
    return v


def _normalize_cap(name: str) -> str:
    up = name.upper()
    return up if up.startswith("CAP_") or up == "ALL" else "CAP_" + up


def tweak_capabilities(cap_add: list[str] | None, cap_drop: list[str] | None, privileged: bool) -> list[str]:
    """Docker's TweakCapabilities: the default set, with CapAdd/CapDrop (names with or without CAP_, or ALL)."""
    from engine.exec.linux import CAPABILITIES, last_cap

    all_caps = CAPABILITIES[: last_cap() + 1]
    if privileged:
        return list(all_caps)
    adds = [_normalize_cap(c) for c in cap_add or []]
    drops = [_normalize_cap(c) for c in cap_drop or []]
    for kind, names in (("CapAdd", adds), ("CapDrop", drops)):
        for c in names:
            if c != "ALL" and c not in CAPABILITIES:
                raise InvalidArgument(f'invalid {kind}: unknown capability: "{c}"')
    if "ALL" in adds:
        caps = list(all_caps)
    else:
        caps = [] if "ALL" in drops else list(DEFAULT_CAPABILITIES)
        caps = [c for c in caps if c not in drops]
        for c in adds:
            if c not in caps:
                caps.append(c)
        return caps
    return [c for c in caps if c not in drops]


def _merge_env(*lists: list[str] | None) -> list[str]:
    order: list[str] = []
    values: dict[str, str] = {}
    for lst in lists:
        for item in lst or []:
            key = item.split("=", 1)[0]
            if key not in values:
                order.append(key)
            values[key] = item
    return [values[k] for k in order]


def _default_mounts(shm_size: int, readonly_sys: bool) -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", *(["ro"] if readonly_sys else [])]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro" if readonly_sys else "rw"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]},
    ]  # fmt: skip


PROPAGATIONS = {"private", "rprivate", "shared", "rshared", "slave", "rslave"}


def _mount_holding(path: str) -> tuple[str, str]:
    """(mount point, optional fields) of the mount `path` is on, from this namespace's mountinfo (moby's
    getSourceMount: symlinks resolved, the longest mount point that is a prefix, the last one mounted there)."""
    real = os.path.realpath(path)
    best, fields = "", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head = line.split(" - ", 1)[0].split(" ")
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), head[4])
            inside = real == mp or real.startswith(mp.rstrip("/") + "/")
            if inside and len(mp) >= len(best):
                best, fields = mp, " ".join(head[6:])
    return best or "/", fields


def root_propagation(binds: list[dict[str, Any]], default: str = "rprivate") -> str:
    """linux.rootfsPropagation for these bind mounts, as moby's WithMounts sets it: a shared bind needs its source
    on a shared mount and a shared root, a slave bind a shared or slave source and a root that passes events on.
    EngineError (dockerd's 500 at start) when the source's mount cannot give what was asked."""
    root = default
    for m in binds:
        prop = next((o for o in m.get("options") or [] if o in PROPAGATIONS), "rprivate")
        if prop in ("shared", "rshared"):
            mp, fields = _mount_holding(m["source"])
            if "shared:" not in fields:
                raise EngineError(f"path {m['source']} is mounted on {mp} but it is not a shared mount")
            if root not in ("shared", "rshared"):
                root = "shared"
        elif prop in ("slave", "rslave"):
            mp, fields = _mount_holding(m["source"])
            if "shared:" not in fields and "master:" not in fields:
                raise EngineError(f"path {m['source']} is mounted on {mp} but it is not a shared or slave mount")
            if root not in ("shared", "rshared", "slave", "rslave"):
                root = "rslave"
    return root


def _in_volume(base: str, subpath: str) -> str:
    """A volume's Subpath, resolved as if the volume were the root: a `..` or a symlink (another container may
    have put one there) cannot lead out of it. moby's safepath.Join, with its texts."""
    from engine.exec.linux import open_in_root

    root_fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = open_in_root(root_fd, subpath, os.O_PATH)
        except OSError as e:
            why = os.strerror(e.errno).lower() if e.errno else str(e)
            raise InvalidArgument(f"cannot access path {os.path.join(base, subpath)}: {why}") from None
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)
    if real != base and not real.startswith(base.rstrip("/") + "/"):
        raise InvalidArgument(f"path {os.path.join(base, subpath)} escapes the base {base}")
    return real


def _bind_mounts(hc: dict[str, Any], volume_path: Callable[[str], str] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for bind in hc.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) < 2 or len(parts) > 3 or not parts[1].startswith("/"):
            raise InvalidArgument(f"invalid volume specification: '{bind}'")
        src, dst = parts[0], parts[1]
        opts = parts[2].split(",") if len(parts) == 3 else []
        if not src.startswith("/"):
            if volume_path is None:
                raise InvalidArgument(f"invalid volume specification: '{bind}'")
            src = volume_path(src)
        elif not os.path.exists(src):
            # Docker creates a missing host directory of a bind (-v); --mount type=bind refuses instead
            os.makedirs(src, exist_ok=True)
        options = ["rbind", "ro" if "ro" in opts else "rw"]
        options += [o for o in opts if o in PROPAGATIONS][:1] or ["rprivate"]
        out.append({"destination": dst, "type": "bind", "source": src, "options": options})
    for m in hc.get("Mounts") or []:
        kind = m.get("Type", "volume")
        target = m.get("Target", "")
        if not target.startswith("/"):
            raise InvalidArgument(f"invalid mount config for type \"{kind}\": invalid mount path: '{target}'")
        if kind == "bind":
            src = m.get("Source", "")
            if not os.path.exists(src):
                raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: {src}')
            prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
            if prop not in PROPAGATIONS:
                raise InvalidArgument(f'invalid mount config for type "bind": invalid propagation mode: {prop}')
            options = ["rbind", "ro" if m.get("ReadOnly") else "rw", prop]
            out.append({"destination": target, "type": "bind", "source": src, "options": options})
        elif kind == "volume":
            if volume_path is None or not m.get("Source"):
                raise InvalidArgument(f'invalid mount config for type "volume": no volume for {target}')
            options = ["rbind", "ro" if m.get("ReadOnly") else "rw", "rprivate"]
            src = volume_path(m["Source"])
            subpath = (m.get("VolumeOptions") or {}).get("Subpath") or ""
            if subpath:
                src = _in_volume(src, subpath)
            out.append({"destination": target, "type": "bind", "source": src, "options": options})
        elif kind == "tmpfs":
            t = m.get("TmpfsOptions") or {}
            options = ["nosuid", "nodev", "noexec"]
            if t.get("SizeBytes"):
                options.append(f"size={t['SizeBytes']}")
            if t.get("Mode"):
                options.append(f"mode={t['Mode']:o}")
            if m.get("ReadOnly"):
                options.append("ro")
            out.append({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
        else:
            raise InvalidArgument(f'invalid mount config: mount type unknown: "{kind}"')
    for target, opts in (hc.get("Tmpfs") or {}).items():
        options = ["nosuid", "nodev", "noexec", *[o for o in opts.split(",") if o]]
        out.append({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
    return out


def _devices(hc: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    devices: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for d in hc.get("Devices") or []:
        host = d.get("PathOnHost", "")
        try:
            st = os.stat(host)
        except OSError:
            raise InvalidArgument(f"error gathering device information while adding custom device \"{host}\": "
                                  "no such file or directory") from None  # fmt: skip
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise InvalidArgument(f"error gathering device information while adding custom device \"{host}\": "
                                  "not a device node")  # fmt: skip
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        devices.append({"path": d.get("PathInContainer") or host, "type": kind, "major": major, "minor": minor,
                        "fileMode": stat.S_IMODE(st.st_mode), "uid": 0, "gid": 0})  # fmt: skip
        rules.append({"allow": True, "type": kind, "major": major, "minor": minor,
                      "access": d.get("CgroupPermissions") or "rwm"})  # fmt: skip
    for text in hc.get("DeviceCgroupRules") or []:  # --device-cgroup-rule 'c 42:* rmw'
        m = DEVICE_RULE_RE.match(text)
        if m is None:
            raise InvalidArgument(f"invalid device cgroup rule format: '{text}'")
        kind, major_s, minor_s, access = m.groups()
        rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
        if major_s != "*":
            rule["major"] = int(major_s)
        if minor_s != "*":
            rule["minor"] = int(minor_s)
        rules.append(rule)
    return devices, rules


def sysctl_namespaced(key: str, host_network: bool) -> bool:
    """moby's validation: the IPC sysctls, fs.mqueue.* and net.* (unless the network namespace is the host's)."""
    return key in _IPC_SYSCTLS or key.startswith("fs.mqueue.") or (key.startswith("net.") and not host_network)


def security_opts(hc: dict[str, Any]) -> tuple[bool, str | None]:
    """(no_new_privileges, seccomp profile: None = default, "unconfined", or the profile's JSON text)."""
    nnp = False
    profile: str | None = None
    for opt in hc.get("SecurityOpt") or []:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if opt == "no-new-privileges":
            nnp = True
            continue
        if opt in ("writable-cgroups", "disable"):
            continue  # cgroups stay read-only here; "disable" is an SELinux label option
        if not sep:
            raise InvalidArgument(f'invalid --security-opt 1: "{opt}"')
        if key == "no-new-privileges":
            if value in ("1", "t", "T", "true", "TRUE", "True"):  # Go's strconv.ParseBool
                nnp = True
            elif value in ("0", "f", "F", "false", "FALSE", "False"):
                nnp = False
            else:
                raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
        elif key == "seccomp":
            profile = value
        elif key in ("label", "apparmor", "writable-cgroups"):
            continue  # no LSM here; Docker also ignores these where the LSM is absent
        else:
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
    return nnp, profile


def build(
    config: dict[str, Any],
    host_config: dict[str, Any],
    image_config: dict[str, Any] | None = None,
    *,
    rootfs: Path,
    netns: str | None = None,
    extra_mounts: list[dict[str, Any]] | None = None,
    volume_path: Callable[[str], str] | None = None,
    shared_namespaces: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The OCI spec for one container.

    `rootfs` is the mounted root filesystem (users are resolved from its /etc/passwd and /etc/group).
    `netns`: a path to a network namespace file (made by engine/net), "host", or None for a fresh one with only lo.
    `extra_mounts`: OCI mounts added last (/etc/hosts, /etc/resolv.conf, /etc/hostname from engine/net).
    `volume_path`: maps a named volume to its host directory.
    `shared_namespaces`: OCI namespace kind (pid, ipc, uts, cgroup) -> "host" (none of its own) or a namespace file
    to join (another container's, from PidMode/IpcMode `container:NAME`).
    """
    img = image_config or {}
    hc = host_config or {}
    privileged = bool(hc.get("Privileged"))

    entrypoint = config.get("Entrypoint")
    cmd = config.get("Cmd")
    if entrypoint is None:
        entrypoint = img.get("Entrypoint")
        if cmd is None:
            cmd = img.get("Cmd")
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    if isinstance(cmd, str):
        cmd = ["/bin/sh", "-c", cmd]
    args = [a for a in (entrypoint or []) if a != ""] + list(cmd or [])
    if not args:
        raise InvalidArgument("No command specified")

    memory = _int_field(hc, "Memory")
    swap = _int_field(hc, "MemorySwap")
    reservation = _int_field(hc, "MemoryReservation")
    nano_cpus = _int_field(hc, "NanoCpus")
    shares = _int_field(hc, "CpuShares")
    quota = _int_field(hc, "CpuQuota")
    period = _int_field(hc, "CpuPeriod")
    pids_limit = _int_field(hc, "PidsLimit")
    shm_size = _int_field(hc, "ShmSize") or DEFAULT_SHM_SIZE
    # the values' ranges and relations were checked at create (engine/containers/validate.py, dockerd's checks)

    hostname = config.get("Hostname") or ""
    user = resolve_user(rootfs, config.get("User") or img.get("User") or "", hc.get("GroupAdd"))
    caps = tweak_capabilities(hc.get("CapAdd"), hc.get("CapDrop"), privileged)
    nnp, seccomp_opt = security_opts(hc)

    env = _merge_env(
        [f"PATH={DEFAULT_PATH}"],
        [f"HOSTNAME={hostname}"] if hostname else [],
        ["TERM=xterm"] if config.get("Tty") else [],
        img.get("Env"),
        config.get("Env"),
    )
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")

    rlimits = []
    for u in hc.get("Ulimits") or []:
        name = str(u.get("Name", "")).lower()
        soft, hard = int(u.get("Soft", 0)), int(u.get("Hard", 0))
        rlimits.append({"type": "RLIMIT_" + name.upper(), "soft": soft, "hard": hard})

    sysctls = dict(hc.get("Sysctls") or {})
    for key in sysctls:
        # also checked at create; here too, as the runtime writes these before the container's /proc/sys is
        # read-only, and a sysctl that is not namespaced would change the host's
        if not sysctl_namespaced(key, netns == "host"):
            raise InvalidArgument(f'sysctl "{key}" is not in a separate kernel namespace')

    devices, device_rules = _devices(hc)
    device_rules = [{"allow": True, "access": "rwm"}] if privileged else _DEFAULT_DEVICE_RULES + device_rules

    shared = shared_namespaces or {}
    namespaces: list[dict[str, str]] = []
    for kind in ("pid", "ipc", "uts", "mount", "cgroup"):
        how = shared.get(kind)
        if how is None:
            namespaces.append({"type": kind})
        elif how != "host":
            namespaces.append({"type": kind, "path": how})
    if shared.get("uts") == "host":
        hostname = ""  # moby's too: the host's name stays, as sethostname here would rename the host
    if netns is None:
        namespaces.append({"type": "network"})
    elif netns != "host":
        namespaces.append({"type": "network", "path": netns})

    resources: dict[str, Any] = {"devices": device_rules}
    mem: dict[str, Any] = {}
    if memory:
        mem["limit"] = memory
        # Docker's default: swap as much as the memory (MemorySwap 0 means twice the memory), -1 unlimited
        mem["swap"] = swap if swap else memory * 2
    if reservation:
        mem["reservation"] = reservation
    if hc.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        resources["memory"] = mem
    cpu: dict[str, Any] = {}
    if shares:
        cpu["shares"] = shares
    if nano_cpus:
        cpu["period"] = 100000
        cpu["quota"] = nano_cpus * 100000 // 10**9
    if quota:
        cpu["quota"] = quota
    if period:
        cpu["period"] = period
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        resources["cpu"] = cpu
    if pids_limit:
        resources["pids"] = {"limit": pids_limit}

    mounts = _default_mounts(shm_size, readonly_sys=not privileged)
    user_mounts = _bind_mounts(hc, volume_path) + list(extra_mounts or [])
    user_dests = {m["destination"].rstrip("/") for m in user_mounts}
    mounts = [m for m in mounts if m["destination"] not in user_dests] + user_mounts

    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": resources,
        "devices": [
            {"path": p, "type": t, "major": ma, "minor": mi, "fileMode": 0o666, "uid": 0, "gid": 0}
            for p, t, ma, mi in _DEFAULT_DEVICES
        ]
        + devices,
        # rprivate unless a bind asks for more (Docker leaves it to runc's rslave, but its overlay mounts are
        # private, so a container's root takes no events either way)
        "rootfsPropagation": root_propagation(
            [m for m in user_mounts if m["type"] == "bind" and m not in (extra_mounts or [])]),
    }
    if sysctls:
        linux["sysctl"] = sysctls
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        if seccomp_opt != "unconfined":
            profile = seccomp.load_profile(_profile_text(seccomp_opt))
            linux["seccomp"] = seccomp.render(profile, caps)

    capabilities: dict[str, list[str]] = {"bounding": caps, "effective": caps, "permitted": caps}
    if user.uid != 0:
        # like Docker: a non-root user keeps the bounding set only, so it has no effective capabilities
        capabilities = {"bounding": caps}

    process: dict[str, Any] = {
        "terminal": bool(config.get("Tty")),
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": args,
        "env": env,
        "cwd": config.get("WorkingDir") or img.get("WorkingDir") or "/",
        "capabilities": capabilities,
        "noNewPrivileges": nnp,
    }
    if rlimits:
        process["rlimits"] = rlimits
    if hc.get("OomScoreAdj"):
        process["oomScoreAdj"] = int(hc["OomScoreAdj"])
    size = hc.get("ConsoleSize") or [0, 0]
    if size[0] or size[1]:  # the pty's first size (moby's WithConsoleSize): `docker run -it` sends its terminal's
        process["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}

    annotations = {}
    if hc.get("Init"):
        annotations[ANNOTATION_INIT] = "true"
    if config.get("StopSignal"):
        annotations[ANNOTATION_STOP_SIGNAL] = str(config["StopSignal"])

    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": bool(hc.get("ReadonlyRootfs"))},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
    if config.get("Domainname"):
        spec["domainname"] = config["Domainname"]
    if annotations:
        spec["annotations"] = annotations
    return spec


def _profile_text(value: str | None) -> str | None:
    # dockerd's values: none or `builtin` is the default profile, anything else the profile's JSON (the docker CLI
    # reads `seccomp=<file>` itself and sends the content); never a path read on the daemon's host
    return None if value in (None, "builtin") else value


def resources_from_host_config(hc: dict[str, Any]) -> dict[str, Any]:
    """OCI `linux.resources` from Docker's resource fields (those of POST /containers/{id}/update)."""
    res: dict[str, Any] = {}
    memory = _int_field(hc, "Memory")
    swap = _int_field(hc, "MemorySwap")
    mem: dict[str, Any] = {}
    if memory:
        mem["limit"] = memory
        mem["swap"] = swap if swap else memory * 2
    if _int_field(hc, "MemoryReservation"):
        mem["reservation"] = hc["MemoryReservation"]
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if _int_field(hc, "CpuShares"):
        cpu["shares"] = hc["CpuShares"]
    if _int_field(hc, "NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = hc["NanoCpus"] * 100000 // 10**9
    if _int_field(hc, "CpuQuota"):
        cpu["quota"] = hc["CpuQuota"]
    if _int_field(hc, "CpuPeriod"):
        cpu["period"] = hc["CpuPeriod"]
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    if _int_field(hc, "PidsLimit"):
        res["pids"] = {"limit": hc["PidsLimit"]}
    return res


def exec_process(
    spec: dict[str, Any],
    bundle: Path,
    args: list[str],
    *,
    env: list[str] | None = None,
    user: str = "",
    cwd: str = "",
    tty: bool = False,
    privileged: bool = False,
) -> dict[str, Any]:
    """The OCI process of `docker exec`: the container's process with these args, env, user, cwd and tty."""
    if not args:
        raise InvalidArgument("No exec command specified")
    base = spec["process"]
    root = spec["root"]["path"]
    rootfs = Path(root) if root.startswith("/") else Path(bundle) / root
    proc: dict[str, Any] = dict(base)
    proc["args"] = list(args)
    proc["terminal"] = tty
    proc["env"] = _merge_env(base.get("env"), ["TERM=xterm"] if tty else [], env)
    if cwd:
        proc["cwd"] = cwd
    caps = list(base.get("capabilities", {}).get("bounding") or [])
    if privileged:
        from engine.exec.linux import CAPABILITIES, last_cap

        caps = CAPABILITIES[: last_cap() + 1]
        proc["privileged"] = True
    if user:
        u = resolve_user(rootfs, user)
        proc["user"] = {"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids}
    uid = int(proc.get("user", {}).get("uid", 0))
    proc["capabilities"] = {"bounding": caps} if uid != 0 else {"bounding": caps, "effective": caps,
                                                                "permitted": caps}  # fmt: skip
    return proc
