"""System endpoints: /_ping, /version, /info, /events, /system/df, /auth."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import socket
import time
from typing import Any

from aiohttp import web

from engine.api.params import check_filters, filters, json_body, timestamp_ns
from engine.api.server import add, daemon_of, json_response, json_stream_response
from engine.errors import InvalidArgument
from engine.events import matches
from engine.version import API_VERSION, MIN_API_VERSION, __version__

_PING_HEADERS = {
    "Api-Version": API_VERSION,
    "Builder-Version": "1",  # no BuildKit: clients must not try the session protocol
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Docker-Experimental": "false",
    "Ostype": "linux",
    "Swarm": "inactive",
}


async def ping(request: web.Request) -> web.Response:
    if request.method == "HEAD":
        return web.Response(headers=_PING_HEADERS, content_type="text/plain", body=b"")
    return web.Response(text="OK", headers=_PING_HEADERS, content_type="text/plain")


def _kernel() -> str:
    return platform.release()


def version_info() -> dict[str, Any]:
    build = time.strftime("%Y-%m-%dT%H:%M:%S.000000000+00:00", time.gmtime(0))
    details = {
        "ApiVersion": API_VERSION, "Arch": "amd64" if platform.machine() == "x86_64" else platform.machine(),
        "BuildTime": build, "Experimental": "false", "GitCommit": "portside",
        "GoVersion": f"python{platform.python_version()}",
        "KernelVersion": _kernel(), "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
    }
    return {
        "Platform": {"Name": "portside Engine"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "portside",
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": details["Arch"],
        "KernelVersion": _kernel(),
        "BuildTime": build,
    }


async def version(request: web.Request) -> web.Response:
    return json_response(version_info())


def _read_field(path: str, prefix: str) -> str:
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
    return ""


def _os_name() -> str:
    return _read_field("/etc/os-release", "PRETTY_NAME=").strip('"') or "Linux"


def _os_version() -> str:
    return _read_field("/etc/os-release", "VERSION_ID=").strip('"')


def _mem_total() -> int:
    v = _read_field("/proc/meminfo", "MemTotal:")
    return int(v.split()[0]) * 1024 if v else 0


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


async def info(request: web.Request) -> web.Response:
    d = daemon_of(request)
    counts = d.container_counts()
    cfg = d.config
    insecure = ["127.0.0.0/8", *[r for r in cfg.insecure_registries if "/" in r and r[0].isdigit()]]
    index_configs: dict[str, Any] = {
        "docker.io": {"Name": "docker.io", "Mirrors": list(cfg.registry_mirrors), "Secure": True, "Official": True}
    }
    for reg in cfg.insecure_registries:
        if not ("/" in reg and reg[0].isdigit()):
            index_configs[reg] = {"Name": reg, "Mirrors": [], "Secure": False, "Official": False}
    body = {
        "ID": d.engine_id,
        "Containers": counts["total"],
        "ContainersRunning": counts["running"],
        "ContainersPaused": counts["paused"],
        "ContainersStopped": counts["stopped"],
        "Images": d.image_count(),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Using metacopy", "false"],
                         ["Native Overlay Diff", "true"], ["userxattr", "false"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                    "Log": ["json-file", "local"]},
        "MemoryLimit": True, "SwapLimit": True, "KernelMemoryTCP": False, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "CPUSet": True, "PidsLimit": True, "OomKillDisable": False, "IPv4Forwarding": True,
        "BridgeNfIptables": False, "BridgeNfIp6tables": False, "Debug": cfg.log_level == "debug",
        "NFd": len(os.listdir("/proc/self/fd")), "NGoroutines": len(asyncio.all_tasks()),
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()) + time.strftime("%z"),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": _cgroup_version(),
        "NEventsListener": d.events.subscriber_count, "KernelVersion": _kernel(),
        "OperatingSystem": _os_name(), "OSVersion": _os_version(), "OSType": "linux",
        "Architecture": platform.machine(), "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": None,
                           "AllowNondistributableArtifactsHostnames": None,
                           "InsecureRegistryCIDRs": insecure, "IndexConfigs": index_configs,
                           "Mirrors": list(cfg.registry_mirrors)},
        "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(), "GenericResources": None,
        "DockerRootDir": str(cfg.data_root), "HttpProxy": os.environ.get("HTTP_PROXY", ""),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", ""), "NoProxy": os.environ.get("NO_PROXY", ""),
        "Name": socket.gethostname(), "Labels": [], "ExperimentalBuild": False, "ServerVersion": __version__,
        "Runtimes": {"runc": {"path": "portside"}}, "DefaultRuntime": "runc",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "", "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"] if _cgroup_version() == "2"
        else ["name=seccomp,profile=builtin"],
        "CDISpecDirs": [], "Containerd": None, "Warnings": None,
    }
    return json_response(body)


async def events(request: web.Request) -> web.StreamResponse:
    d = daemon_of(request)
    f = filters(request)
    check_filters(f, {"config", "container", "daemon", "event", "image", "label", "network", "node", "plugin",
                      "scope", "secret", "service", "type", "volume"})
    since = timestamp_ns(request.query.get("since", ""))
    until = timestamp_ns(request.query.get("until", ""))
    now = time.time_ns()
    if since is not None and until is not None and until < since:
        raise InvalidArgument("`since` time must be before `until` time")  # moby's wording
    resp = json_stream_response()
    with d.events.follow(since, until) as (past, queue):
        await resp.prepare(request)  # headers at once: `docker events` waits for them
        if since is not None or (until is not None and until <= now):
            for ev in past:
                if matches(ev, f):
                    await resp.write(json.dumps(ev).encode() + b"\n")
        if until is not None and until <= now:
            return resp
        deadline = None if until is None else asyncio.get_running_loop().time() + (until - now) / 1e9
        while True:
            timeout = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if timeout is not None and timeout <= 0:
                break
            try:
                ev = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                break
            if matches(ev, f):
                await resp.write(json.dumps(ev).encode() + b"\n")
    return resp


async def system_df(request: web.Request) -> web.Response:
    d = daemon_of(request)
    return json_response(await d.disk_usage(request.query.getall("type", [])))


async def auth(request: web.Request) -> web.Response:
    d = daemon_of(request)
    body = await json_body(request)
    status = await d.login(body.get("username", ""), body.get("password", ""), body.get("serveraddress", ""),
                           body.get("identitytoken", ""))
    return json_response({"Status": status, "IdentityToken": ""})


def register(app: web.Application) -> None:
    add(app, "GET", "/_ping", ping)
    add(app, "HEAD", "/_ping", ping)
    add(app, "GET", "/version", version)
    add(app, "GET", "/info", info)
    add(app, "GET", "/events", events)
    add(app, "GET", "/system/df", system_df)
    add(app, "POST", "/auth", auth)
