"""Bringing a container record to a running process and back: rootfs, volumes, network, OCI spec, runtime.

Each step of `start` is undone when a later one fails, so a failed start leaves no mount, netns or process.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import posixpath
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from engine.containers import logconfig
from engine.crashpoints import crashpoint
from engine.errors import Conflict, EngineError, InvalidArgument, NotFound

if TYPE_CHECKING:
    from engine.containers.manager import ContainerManager

log = logging.getLogger("portside.containers")


def _resolve_network_mode(m: ContainerManager, mode: str) -> str:
    if mode.startswith("container:"):
        other = m.get(mode.split(":", 1)[1])
        if not other["State"]["Running"]:
            raise InvalidArgument(f"cannot join network of a non running container: {other['Id']}")
        return "container:" + other["Id"]
    return mode


def _donor(m: ContainerManager, ref: str, what: str) -> dict[str, Any]:
    """moby's getPIDContainer/getIPCContainer: the container whose namespace is joined must exist and run."""
    try:
        other = m.get(ref)
    except NotFound as e:
        raise InvalidArgument(f"failed to join {what} namespace: {e}") from None
    if not other["State"]["Running"] or not other["State"].get("Pid"):
        raise Conflict(f"failed to join {what} namespace: Container {other['Id']} is not running")
    if other["State"].get("Restarting"):
        raise Conflict(f"failed to join {what} namespace: Container {other['Id']} is restarting, wait until the "
                       "container is running")
    return other


def _shared_namespaces(m: ContainerManager, hc: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """PidMode, IpcMode, UTSMode and CgroupnsMode as the runtime's namespaces ("host" or a file to join), and the
    /dev/shm that goes with a shared IPC namespace (the host's, or the donor's through its /proc root)."""
    shared: dict[str, str] = {}
    mounts: list[dict[str, Any]] = []
    pid_mode, ipc_mode = hc.get("PidMode") or "", hc.get("IpcMode") or ""
    if pid_mode == "host":
        shared["pid"] = "host"
    elif pid_mode.startswith("container:"):
        shared["pid"] = f"/proc/{_donor(m, pid_mode[10:], 'PID')['State']['Pid']}/ns/pid"
    shm = None
    if ipc_mode == "host":
        shared["ipc"], shm = "host", "/dev/shm"
    elif ipc_mode.startswith("container:"):
        donor = _donor(m, ipc_mode[10:], "IPC")
        if (donor["HostConfig"].get("IpcMode") or "") not in ("shareable", "host"):
            raise InvalidArgument(f"failed to join IPC namespace: container {donor['Id']}: non-shareable IPC (hint: "
                                  "use IpcMode:shareable for the donor container)")
        shared["ipc"] = f"/proc/{donor['State']['Pid']}/ns/ipc"
        # a mount cannot be bound from another mount namespace, so a shareable container's /dev/shm is made on
        # the host (in its bundle, as Docker's ShmPath) and the guest binds that
        shm = "/dev/shm" if donor["HostConfig"].get("IpcMode") == "host" else str(m.bundle(donor["Id"]) / "shm")
    if shm is not None:
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": shm, "options": ["rbind", "rprivate"]})
    if hc.get("UTSMode") == "host":
        shared["uts"] = "host"
    if hc.get("CgroupnsMode") == "host":
        shared["cgroup"] = "host"
    return shared, mounts


async def start(m: ContainerManager, rec: dict[str, Any]) -> None:
    d = m.d
    if d.runtime is None:
        raise EngineError("no container runtime in this engine")
    cid = rec["Id"]
    cfg, hc = rec["Config"], rec["HostConfig"]
    logconfig.log_file(hc.get("LogConfig"))  # a refused option value fails the start before anything is made
    bundle = m.bundle(cid)
    rootfs = bundle / "rootfs"
    undo: list[tuple[bool, Any]] = []  # (is_async, step) to run in reverse when a later step fails
    t0 = time.monotonic()
    marks: list[tuple[str, float]] = []
    # From here on, something may need releasing. Not written to disk now: restore() cleans up after a crash
    # before the start is recorded, as it finds this bundle directory (the first thing made).
    rec["_portside"]["CleanedUp"] = False
    bundle.mkdir(parents=True, exist_ok=True)

    def mark(step: str) -> None:
        marks.append((step, time.monotonic()))

    pending: list[asyncio.Future[Any]] = []  # the network being made while the runtime creates (see below)

    try:
        mode = _resolve_network_mode(m, hc.get("NetworkMode") or "bridge")
        shared_ns, shm_mounts = _shared_namespaces(m, hc)
        if hc.get("IpcMode") == "shareable":
            shm_dir = bundle / "shm"
            await asyncio.to_thread(_mount_shm, shm_dir, int(hc.get("ShmSize") or 0))
            undo.append((False, lambda: _unmount_shm(shm_dir)))
            shm_mounts.append({"destination": "/dev/shm", "type": "bind", "source": str(shm_dir),
                               "options": ["rbind", "rprivate"]})
        from engine.net import legacy_links  # imported with the network part, as the manager does

        linked = legacy_links.for_start(rec, m.store.find)  # legacy --link: hosts lines and ALIAS_* variables
        networking = rec["_portside"].get("NetworkingConfig") or {}
        endpoints = networking.get("EndpointsConfig") or None

        async def filesystem() -> None:
            layer = await asyncio.to_thread(d.images.container_layer, cid)
            await asyncio.to_thread(layer.mount, rootfs)
            undo.append((False, lambda: layer.unmount(rootfs)))
            mark("rootfs")
            # Docker's copy-up: a volume's first mount gets what the image has at the mount path.
            for mt in rec.get("Mounts") or []:
                if mt.get("Type") == "volume" and mt.get("Name"):
                    src = rootfs / mt["Destination"].lstrip("/")
                    await asyncio.to_thread(d.volumes.populate, mt["Name"], src)

        async def network() -> Any:
            sb = await asyncio.to_thread(
                lambda: d.networks.create_sandbox(
                    cid, name=rec["Name"].lstrip("/"), hostname=cfg.get("Hostname") or cid[:12],
                    domainname=cfg.get("Domainname") or "", network_mode=mode, endpoints=endpoints,
                    port_bindings=hc.get("PortBindings") or None, publish_all=bool(hc.get("PublishAllPorts")),
                    exposed_ports=tuple((cfg.get("ExposedPorts") or {}).keys()), dns=hc.get("Dns") or None,
                    dns_search=hc.get("DnsSearch") or None, dns_options=hc.get("DnsOptions") or None,
                    extra_hosts=hc.get("ExtraHosts") or None, link_hosts=linked.hosts or None,
                )
            )
            undo.append((False, lambda: d.networks.remove_sandbox(cid)))
            mark("network")
            return sb

        async def supervisor() -> None:
            # the runtime's supervisor and init get ready (cgroup joined) meanwhile, when the runtime can
            if hasattr(d.runtime, "prepare"):
                undo.append((True, lambda: d.runtime.discard(cid)))
                await d.runtime.prepare(cid, bundle, tty=bool(cfg.get("Tty")), stdin=bool(cfg.get("OpenStdin")),
                                        stdin_once=bool(cfg.get("StdinOnce")), log_path=m.log_path(cid),
                                        log_config=hc.get("LogConfig") or {})
                mark("supervisor")

        # A container with a network namespace of its own (bridge, none, a user network) gets that netns and its
        # empty /etc files first (~1 ms); its endpoints, published ports and the files' content are made while
        # the runtime sets the container up in it (in the init's process, off this one's GIL), and the process
        # starts once both are done, as with Docker. Sysctls may name an interface the runtime would set before
        # it exists: such a container waits for its whole network first.
        ahead = mode != "host" and not mode.startswith("container:") and not hc.get("Sysctls")

        async def network_ahead() -> tuple[Path, Path]:
            got = await asyncio.to_thread(d.networks.prepare_sandbox, cid)
            undo.append((False, lambda: d.networks.discard_prepared(cid)))
            pending.append(asyncio.ensure_future(network()))
            return got

        # The root filesystem, the network and the supervisor do not depend on each other: all at once. Each
        # adds its undo step, so a failure of one still releases the others.
        done = await asyncio.gather(filesystem(), network_ahead() if ahead else network(), supervisor(),
                                    return_exceptions=True)
        for res in done:
            if isinstance(res, BaseException):
                raise res
        sb: Any = None
        if ahead:
            netns_path, fdir = cast("tuple[Path, Path]", done[1])
            etc_files: tuple[Any, Any, Any] = (fdir / "hosts", fdir / "resolv.conf", fdir / "hostname")
        else:
            sb = done[1]
            netns_path = sb.netns_path
            etc_files = (sb.hosts_path, sb.resolv_conf_path, sb.hostname_path)
        crashpoint("container.start.prepared")
        extra: list[dict[str, Any]] = list(shm_mounts)
        for path, dest in zip(etc_files, ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname"), strict=True):
            if path is not None:
                extra.append({"destination": dest, "type": "bind", "source": str(path),
                              "options": ["rbind", "rprivate", "ro" if hc.get("ReadonlyRootfs") else "rw"]})
        spec_hc = dict(hc)
        # Named and anonymous volumes are resolved to their directories by name.
        spec_hc["Binds"] = [b for b in hc.get("Binds") or [] if b.startswith("/")] or None
        subpaths = {mm.get("Target"): (mm.get("VolumeOptions") or {}).get("Subpath") or ""
                    for mm in hc.get("Mounts") or [] if mm.get("Type") == "volume"}
        spec_hc["Mounts"] = [*(mm for mm in hc.get("Mounts") or [] if mm.get("Type") != "volume"),
                             *({"Type": "volume", "Source": mt["Name"], "Target": mt["Destination"],
                                "ReadOnly": not mt["RW"],
                                "VolumeOptions": {"Subpath": subpaths.get(mt["Destination"], "")}}
                               for mt in rec.get("Mounts") or [] if mt["Type"] == "volume")]
        spec_hc["NetworkMode"] = mode
        oci = importlib.import_module("engine.exec.spec")

        netns = "host" if mode == "host" else (str(netns_path) if netns_path else None)
        spec_cfg = {**cfg, "Env": [*linked.env, *(cfg.get("Env") or [])]} if linked.env else cfg
        spec = await asyncio.to_thread(
            lambda: oci.build(spec_cfg, spec_hc, rec["_portside"].get("ImageConfig") or {}, rootfs=rootfs, netns=netns,
                              extra_mounts=extra, volume_path=lambda name: d.volumes.inspect(name)["Mountpoint"],
                              shared_namespaces=shared_ns)
        )
        if hc.get("CgroupParent"):
            # moby's cgroupfs driver: filepath.Join(parent, id); made absolute first, so `..` cannot climb out of
            # the hierarchy's root
            spec["linux"]["cgroupsPath"] = posixpath.join(posixpath.normpath("/" + hc["CgroupParent"]), cid)
        mark("spec")
        try:
            await d.runtime.create(cid, bundle, spec, tty=bool(cfg.get("Tty")), stdin=bool(cfg.get("OpenStdin")),
                                   stdin_once=bool(cfg.get("StdinOnce")), log_path=m.log_path(cid),
                                   log_config=hc.get("LogConfig") or {})
        except BaseException as exc:
            if pending:  # the network's own failure is the one to report (Docker makes the network first)
                try:
                    await pending.pop()
                except BaseException as net_exc:
                    raise net_exc from exc
            raise
        undo.append((True, lambda: d.runtime.delete(cid)))
        mark("create")
        if pending:
            sb = await pending.pop()
        rec["HostsPath"] = str(sb.hosts_path or "")
        rec["ResolvConfPath"] = str(sb.resolv_conf_path or "")
        rec["HostnamePath"] = str(sb.hostname_path or "")
        rec["NetworkSettings"] = sb.network_settings
        await m._let_attachers_in(cid)
        mark("attach")
        rec["State"]["Pid"] = await d.runtime.start(cid)
        mark("start")
        if log.isEnabledFor(logging.DEBUG):
            # when each step finished, from the start (rootfs, network and supervisor run at the same time)
            log.debug("start %s: %s", cid[:12], ", ".join(f"{step} +{1000 * (t - t0):.1f}ms" for step, t in marks))
    except BaseException:
        for task in pending:  # the network being made: let it finish (adding its undo step) or fail by itself
            with contextlib.suppress(BaseException):
                await task
        for is_async, fn in reversed(undo):
            try:
                if is_async:
                    await fn()
                else:
                    await asyncio.to_thread(fn)
            except Exception:
                log.exception("undoing a failed start of %s", cid[:12])
        if not rootfs.is_mount():  # never through a rootfs whose unmount failed: that would delete its files
            await asyncio.to_thread(shutil.rmtree, bundle, True)
        rec["NetworkSettings"]["Ports"] = {}
        rec["_portside"]["CleanedUp"] = True
        raise


async def cleanup(m: ContainerManager, rec: dict[str, Any], *, drop_layer: bool = False) -> None:
    """After the process exited: release the runtime state, the network and the rootfs mount. `drop_layer`: the
    container is about to be removed (--rm): its layer goes too, while the network is being released."""
    d = m.d
    cid = rec["Id"]

    async def runtime_state() -> None:
        if d.runtime is not None:
            with contextlib.suppress(EngineError, OSError):
                await d.runtime.delete(cid)

    async def network() -> None:
        if d.networks is not None:
            try:
                await asyncio.to_thread(d.networks.remove_sandbox, cid)
            except Exception:
                log.exception("removing the network of %s", cid[:12])

    async def filesystem() -> None:
        await runtime_state()  # no process may hold the rootfs when it is unmounted
        rootfs = m.bundle(cid) / "rootfs"
        if d.images is not None:
            try:
                layer = await asyncio.to_thread(d.images.container_layer, cid)
                await asyncio.to_thread(_unmount_quiet, layer, rootfs)
                if drop_layer:
                    await asyncio.to_thread(layer.remove)
            except EngineError:
                pass
        await asyncio.to_thread(_unmount_shm, m.bundle(cid) / "shm")
        await asyncio.to_thread(shutil.rmtree, m.bundle(cid), True)

    # The process is gone: its network goes while its runtime state and root filesystem go.
    await asyncio.gather(filesystem(), network())
    ns = rec.get("NetworkSettings") or {}
    ns["Ports"] = {}
    for ep in (ns.get("Networks") or {}).values():
        for key in ("IPAddress", "Gateway", "MacAddress", "EndpointID"):
            if key in ep:
                ep[key] = ""
        ep["IPPrefixLen"] = 0
    for key in ("IPAddress", "Gateway", "MacAddress", "EndpointID", "SandboxKey", "SandboxID"):
        if key in ns:
            ns[key] = ""
    rec["_portside"]["CleanedUp"] = True


def _mount_shm(path: Path, size: int) -> None:
    """A shareable container's /dev/shm, a tmpfs on the host that containers joining its IPC namespace bind too."""
    from engine.exec import linux
    from engine.exec.spec import DEFAULT_SHM_SIZE

    path.mkdir(exist_ok=True)
    linux.mount("shm", str(path), "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                f"mode=1777,size={size or DEFAULT_SHM_SIZE}")


def _unmount_shm(path: Path) -> None:
    if path.is_mount():
        from engine.exec import linux

        linux.umount2(str(path), linux.MNT_DETACH)


def _unmount_quiet(layer: Any, rootfs: Path) -> None:
    if rootfs.is_mount():
        layer.unmount(rootfs)


async def remove_layer(m: ContainerManager, rec: dict[str, Any]) -> None:
    if m.d.images is None:
        return
    try:
        layer = await asyncio.to_thread(m.d.images.container_layer, rec["Id"])
    except EngineError:
        return
    await asyncio.to_thread(layer.remove)
