"""Docker's JSON shapes for containers: the defaults of a new record, inspect, the list summary, status text."""

from __future__ import annotations

import copy
import time
from typing import Any

from engine.containers.health import status_suffix
from engine.containers.logs import format_time_ns, parse_time_ns

ZERO_TIME = "0001-01-01T00:00:00Z"

CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": {},
}  # fmt: skip

HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}}, "NetworkMode": "bridge",
    "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
    "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None, "CapDrop": None,
    "CgroupnsMode": "host", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
    "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
    "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
    "ShmSize": 67108864, "Runtime": "runc", "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0,
    "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
    "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0,
    "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
    "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
    "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None, "Ulimits": [], "CpuCount": 0,
    "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "Mounts": None, "Init": None,
    "MaskedPaths": None, "ReadonlyPaths": None, "Tmpfs": None, "Sysctls": None,
}  # fmt: skip


def now_rfc3339() -> str:
    return format_time_ns(time.time_ns())


def new_state() -> dict[str, Any]:
    return {
        "Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
        "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME,
    }  # fmt: skip


def merged(defaults: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
    out = copy.deepcopy(defaults)
    for k, v in (given or {}).items():
        out[k] = v
    return out


def inspect(rec: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy({k: v for k, v in rec.items() if not k.startswith("_")})
    state = out.get("State") or {}
    if state.get("Restarting"):
        # moby's SetRestarting: a container between two restarts counts as running (rm, stop and clients rely on
        # it), with no process and the last exit's code
        state["Running"] = True
    return out


def human_duration(seconds: float) -> str:
    """Docker's units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def _ago(ts: str) -> float:
    ns = parse_time_ns(ts) if ts and ts != ZERO_TIME else time.time_ns()
    return max(0.0, (time.time_ns() - ns) / 1e9)


def status_text(state: dict[str, Any]) -> str:
    st = state["Status"]
    if st == "running":
        return f"Up {human_duration(_ago(state['StartedAt']))}{status_suffix(state)}"
    if st == "paused":
        return f"Up {human_duration(_ago(state['StartedAt']))} (Paused)"
    if st == "restarting":
        return f"Restarting ({state['ExitCode']}) {human_duration(_ago(state['FinishedAt']))} ago"
    if st == "exited":
        return f"Exited ({state['ExitCode']}) {human_duration(_ago(state['FinishedAt']))} ago"
    if st == "removing":
        return "Removal In Progress"
    if st == "dead":
        return "Dead"
    return "Created"


def ports_summary(rec: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ports = (rec.get("NetworkSettings") or {}).get("Ports") or {}
    for key, bindings in sorted(ports.items()):
        port, _, proto = key.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
            continue
        for b in bindings:
            entry: dict[str, Any] = {"IP": b.get("HostIp", ""), "PrivatePort": int(port), "Type": proto or "tcp"}
            if b.get("HostPort"):
                entry["PublicPort"] = int(b["HostPort"])
            out.append(entry)
    for key in (rec["Config"].get("ExposedPorts") or {}):
        if key not in ports:
            port, _, proto = key.partition("/")
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
    return out


def summary(rec: dict[str, Any]) -> dict[str, Any]:
    cmd = " ".join([rec.get("Path", ""), *rec.get("Args", [])]).strip()
    ns = rec.get("NetworkSettings") or {}
    return {
        "Id": rec["Id"],
        "Names": [rec["Name"]],
        "Image": rec["Config"].get("Image", ""),
        "ImageID": rec["Image"],
        "Command": cmd,
        "Created": parse_time_ns(rec["Created"]) // 1_000_000_000,
        "Ports": ports_summary(rec),
        "Labels": rec["Config"].get("Labels") or {},
        "State": rec["State"]["Status"],
        "Status": status_text(rec["State"]),
        "HostConfig": {"NetworkMode": rec["HostConfig"].get("NetworkMode", "bridge")},
        "NetworkSettings": {"Networks": copy.deepcopy(ns.get("Networks") or {})},
        "Mounts": copy.deepcopy(rec.get("Mounts") or []),
    }


def empty_network_settings() -> dict[str, Any]:
    return {
        "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
        "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": {},
    }  # fmt: skip


def endpoint(network_id: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """An EndpointSettings before the container runs."""
    return {
        "IPAMConfig": cfg.get("IPAMConfig"), "Links": cfg.get("Links"), "MacAddress": cfg.get("MacAddress") or "",
        "Aliases": cfg.get("Aliases"), "DriverOpts": cfg.get("DriverOpts"), "GwPriority": 0,
        "NetworkID": network_id, "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None,
    }  # fmt: skip
