"""The container lifecycle: create, start, stop, kill, wait, restart policies, remove, rename, update, prune.

Records live in `ContainerStore`; the root filesystem comes from the images part (a container layer mounted on
the bundle's `rootfs`), the network from the net part (a sandbox made right before the process starts), and the
process from the runtime through `engine.containers.runtime.RuntimeAdapter`. Every change of state is saved
atomically before it is announced on the events bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib
import logging
import os
import re
import signal as signals
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import ids, mallopt
from engine.containers import logconfig, shape
from engine.containers.health import HealthMonitor, merge_config, status_of
from engine.containers.mountspec import DEFAULT_PROPAGATION, bind_propagation, check_mount_specs
from engine.containers.store import ContainerStore, check_name
from engine.crashpoints import crashpoint
from engine.errors import Conflict, EngineError, Forbidden, InvalidArgument, NotFound, NotModified
from engine.volumes import ANONYMOUS_LABEL

if TYPE_CHECKING:
    from engine.containers.host import ContainerHost

log = logging.getLogger("portside.containers")

# moby's pkg/signal SignalMap for Linux: the names (aliases such as CLD, IOT and POLL included), and the
# real-time ones as RTMIN, RTMIN+1 ... RTMAX-1, RTMAX (34..64)
_SIGRTMIN, _SIGRTMAX = 34, 64
_SIGNALS = {name[3:]: int(s) for name, s in signals.Signals.__members__.items()
            if name.startswith("SIG") and not name.startswith("SIG_") and not name.startswith("SIGRT")}
_SIGNALS.update({"RTMIN": _SIGRTMIN, "RTMAX": _SIGRTMAX})
_SIGNALS.update({f"RTMIN+{n}": _SIGRTMIN + n for n in range(1, 16)})
_SIGNALS.update({f"RTMAX-{n}": _SIGRTMAX - n for n in range(1, 15)})
_VALID_SIGNALS = frozenset(_SIGNALS.values())


def parse_signal(value: str | int | None, default: int = signals.SIGKILL) -> int:
    """moby's signal.ParseSignal plus ValidSignalForPlatform: a number (not 0) or a name with or without SIG, in
    any case; InvalidArgument (400) with dockerd's texts."""
    if value in (None, ""):
        return default
    raw = str(value)
    if re.fullmatch(r"[+-]?\d+", raw):
        n = int(raw)
        if n == 0:
            raise InvalidArgument(f"Invalid signal: {raw}")
        if n not in _VALID_SIGNALS:
            raise InvalidArgument(f"the linux daemon does not support signal {n}")
        return n
    name = raw.upper().removeprefix("SIG")
    if name not in _SIGNALS:
        raise InvalidArgument(f"Invalid signal: {raw}")
    return _SIGNALS[name]


# dockerd's execCommandGC tick: a finished exec is marked at one tick and dropped at the next, so it stays
# inspectable for 5 to 10 minutes
EXEC_GC_INTERVAL = 300.0


def restart_policy(hc: dict[str, Any]) -> tuple[str, int]:
    rp = hc.get("RestartPolicy") or {}
    return rp.get("Name") or "no", int(rp.get("MaximumRetryCount") or 0)


class ContainerManager:
    def __init__(self, daemon: ContainerHost) -> None:
        self.d = daemon
        self.store = ContainerStore(daemon.config.data_root / "containers")
        self._locks: dict[str, asyncio.Lock] = {}
        self._exit: dict[str, asyncio.Event] = {}  # set and replaced at each exit
        self._removed: dict[str, asyncio.Event] = {}
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._restart_tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        # attach calls that arrived before the start: the start lets them connect before the process runs
        self._pending_attach: dict[str, list[asyncio.Future[None]]] = {}
        self._created: dict[str, asyncio.Event] = {}
        self.execs: dict[str, dict[str, Any]] = {}  # exec id -> Docker's exec inspect shape (+ "_proc")
        self.exec_gc_interval = EXEC_GC_INTERVAL
        self._exec_gc: asyncio.Task[None] | None = None
        self.health = HealthMonitor(self)
        # what a removed container held is garbage now: its free pages go back to the system (mallopt.py)
        self.trimmer = mallopt.Trimmer()

    # -- helpers ------------------------------------------------------------------------------------------------
    @property
    def rt(self) -> Any:
        return self.d.runtime

    def lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def exit_event(self, cid: str) -> asyncio.Event:
        return self._exit.setdefault(cid, asyncio.Event())

    def removed_event(self, cid: str) -> asyncio.Event:
        return self._removed.setdefault(cid, asyncio.Event())

    def get(self, ref: str) -> dict[str, Any]:
        return self.store.get(ref)

    def bundle(self, cid: str) -> Path:
        return self.d.config.exec_root / "bundles" / cid

    def log_path(self, cid: str) -> Path:
        return self.store.dir(cid) / f"{cid}-json.log"

    def _attrs(self, rec: dict[str, Any], **extra: str) -> dict[str, str]:
        attrs = {str(k): str(v) for k, v in (rec["Config"].get("Labels") or {}).items()}
        attrs["image"] = rec["Config"].get("Image", "")
        attrs["name"] = rec["Name"].lstrip("/")
        attrs.update(extra)
        return attrs

    def emit(self, rec: dict[str, Any], action: str, **extra: str) -> None:
        self.d.events.publish("container", action, rec["Id"], self._attrs(rec, **extra))

    def counts(self) -> dict[str, int]:
        recs = self.store.all()
        running = sum(1 for r in recs if r["State"]["Running"] and not r["State"]["Paused"])
        paused = sum(1 for r in recs if r["State"]["Paused"])
        return {"total": len(recs), "running": running, "paused": paused, "stopped": len(recs) - running - paused}

    def volume_users(self, name: str) -> list[str]:
        return [r["Id"] for r in self.store.all() if any(m.get("Name") == name for m in r.get("Mounts") or [])]

    def image_users(self, image_id: str) -> list[str]:
        return [r["Id"] for r in self.store.all() if r["Image"] == image_id]

    # -- create -------------------------------------------------------------------------------------------------
    async def create(self, body: dict[str, Any], name: str, platform: str = "") -> tuple[str, list[str]]:
        d = self.d
        host_config = body.pop("HostConfig", None) or {}
        networking = body.pop("NetworkingConfig", None) or {}
        config = shape.merged(shape.CONFIG_DEFAULTS, {k: v for k, v in body.items() if k in shape.CONFIG_DEFAULTS
                                                      or k in ("ExposedPorts", "Healthcheck", "StopSignal",
                                                               "StopTimeout", "MacAddress", "ArgsEscaped",
                                                               "NetworkDisabled", "Shell")})
        hc = shape.merged(shape.HOST_CONFIG_DEFAULTS, host_config)
        if hc.get("NetworkMode") in (None, "", "default"):
            hc["NetworkMode"] = "bridge"
        eps = networking.get("EndpointsConfig") or {}
        if "default" in eps:  # the CLI names the endpoint after the mode it sent ("default")
            eps[hc["NetworkMode"]] = eps.pop("default") or {}
        for key, ep in list(eps.items()):
            if ep is None:
                eps[key] = {}
        if not config.get("Image"):
            raise InvalidArgument("No image specified")  # hmm: docker says 'Config cannot be empty...' for {}
        # dockerd's verifyContainerSettings: a bad value is a 400 here, not a 500 (or worse) at start
        from engine.containers.validate import check_container_config, check_host_config, check_namespace_conflicts

        check_container_config(config)
        check_host_config(hc)
        check_namespace_conflicts(config, hc)
        rp_name = restart_policy(hc)[0]
        if hc.get("AutoRemove") and rp_name not in ("no", ""):
            raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
        hc["LogConfig"] = logconfig.normalize(hc.get("LogConfig"))  # dockerd's default and checks, a 400
        if config.get("StopSignal"):
            parse_signal(config["StopSignal"])  # dockerd's verifyContainerSettings: "Invalid signal: ..."
        warnings: list[str] = []
        if d.networks is not None:
            # a malformed PortBindings/ExposedPorts is dockerd's 400 at create, not an error at start
            importlib.import_module("engine.net").check_port_bindings(
                hc.get("PortBindings") or None, tuple((config.get("ExposedPorts") or {}).keys()))
        img = await asyncio.to_thread(d.images.get, config["Image"])  # NotFound -> `docker run` pulls
        image_config = img.container_config
        cid = ids.new_id()
        if name:
            full_name = check_name(name)
        else:
            full_name = ""
            for retry in range(20):
                full_name = "/" + ids.random_name(retry)
                if not self.store.name_taken(full_name):
                    break
        self.store.reserve_name(full_name, cid)
        layer_made = False
        made_volumes: list[str] = []
        try:
            if not config.get("Hostname"):
                # the host's name where the container shares the host's network or UTS namespace
                shares_host = hc["NetworkMode"] == "host" or hc.get("UTSMode") == "host"
                config["Hostname"] = os.uname().nodename if shares_host else cid[:12]
            # The image's defaults show in the container's Config, as Docker merges them at create.
            if config.get("Env") is None or config["Env"] == []:
                config["Env"] = list(image_config.get("Env") or [])
            else:
                keys = {e.split("=", 1)[0] for e in config["Env"]}
                config["Env"] = [e for e in image_config.get("Env") or [] if e.split("=", 1)[0] not in keys] + list(
                    config["Env"])
            if config.get("Entrypoint") is None:
                config["Entrypoint"] = image_config.get("Entrypoint")
                if config.get("Cmd") is None:
                    config["Cmd"] = image_config.get("Cmd")
            for key in ("WorkingDir", "User", "StopSignal"):
                if not config.get(key) and image_config.get(key):
                    config[key] = image_config[key]
            merge_config(config, image_config)  # the image's HEALTHCHECK under the container's
            labels = dict(image_config.get("Labels") or {})
            labels.update(config.get("Labels") or {})
            config["Labels"] = labels
            exposed = dict(image_config.get("ExposedPorts") or {})
            exposed.update(config.get("ExposedPorts") or {})
            for key in (hc.get("PortBindings") or {}):
                exposed.setdefault(key if "/" in key else key + "/tcp", {})
            if exposed:
                config["ExposedPorts"] = exposed
            entry = config.get("Entrypoint") or []
            cmd = config.get("Cmd") or []
            if isinstance(entry, str):
                entry = [entry]
            if isinstance(cmd, str):
                cmd = ["/bin/sh", "-c", cmd]
            argv = [*entry, *cmd]
            if not argv:
                raise InvalidArgument("no command specified")
            mounts = await asyncio.to_thread(self._plan_mounts, cid, config, hc, image_config, made_volumes)
            await asyncio.to_thread(d.images.create_container_layer, cid, img.id)
            layer_made = True
            self.store.dir(cid).mkdir(parents=True, exist_ok=True)
            net_settings = shape.empty_network_settings()
            net_settings["Networks"] = await asyncio.to_thread(self._planned_endpoints, hc, eps)
            rec: dict[str, Any] = {
                "Id": cid,
                "Created": shape.now_rfc3339(),
                "Path": argv[0],
                "Args": argv[1:],
                "State": shape.new_state(),
                "Image": img.id,
                "ResolvConfPath": "",
                "HostnamePath": "",
                "HostsPath": "",
                "LogPath": str(self.log_path(cid)) if hc["LogConfig"]["Type"] == "json-file" else "",
                "Name": full_name,
                "RestartCount": 0,
                "Driver": "overlay2",
                "Platform": "linux",
                "MountLabel": "",
                "ProcessLabel": "",
                "AppArmorProfile": "",
                "ExecIDs": None,
                "HostConfig": hc,
                "GraphDriver": {"Name": "overlay2", "Data": None},
                "Mounts": mounts,
                "Config": config,
                "NetworkSettings": net_settings,
                "_portside": {"NetworkingConfig": networking, "ManuallyStopped": False,
                              "ImageConfig": image_config},
            }
            crashpoint("container.create.record")
            self.store.save(rec)
        except BaseException:
            self.store.release_name(full_name, cid)
            if layer_made:
                with contextlib.suppress(EngineError, OSError):
                    await asyncio.to_thread(lambda: d.images.container_layer(cid).remove())
            for v in made_volumes:
                with contextlib.suppress(EngineError):
                    d.volumes.remove(v)
            with contextlib.suppress(OSError):
                self.store.delete(cid)
            raise
        self.emit(rec, "create")
        return cid, warnings

    def _planned_endpoints(self, hc: dict[str, Any], eps: dict[str, Any]) -> dict[str, Any]:
        """NetworkSettings.Networks of a created container: its endpoints, addresses still empty (as Docker)."""
        mode = hc.get("NetworkMode") or "bridge"
        if mode in ("host", "none") or mode.startswith("container:") or self.d.networks is None:
            names = [mode] if mode in ("host", "none") and self.d.networks is not None else []
        else:
            names = list(dict.fromkeys([mode, *eps.keys()]))
        out: dict[str, Any] = {}
        for name in names:
            net = self.d.networks.inspect(name)  # NotFound: "network X not found", as dockerd answers create
            cfg = eps.get(name) or eps.get(net["Id"]) or {}
            out[net["Name"]] = shape.endpoint(net["Id"], cfg)
        return out

    def _plan_mounts(self, cid: str, config: dict[str, Any], hc: dict[str, Any], image_config: dict[str, Any],
                     made: list[str]) -> list[dict[str, Any]]:
        """Docker's `Mounts` of the record; named volumes are created now, anonymous ones for image VOLUMEs."""
        vols = self.d.volumes
        mounts: list[dict[str, Any]] = []
        taken: set[str] = set()

        def volume(name: str, dst: str, rw: bool, anonymous: bool = False) -> None:
            vol, created = vols.create(name, anonymous=anonymous)
            if created:
                made.append(vol["Name"])
                self.d.events.publish("volume", "create", vol["Name"], {"driver": "local"})
            mounts.append({"Type": "volume", "Name": vol["Name"], "Source": vol["Mountpoint"], "Destination": dst,
                           "Driver": "local", "Mode": "z" if False else "", "RW": rw, "Propagation": ""})
            taken.add(dst)

        check_mount_specs(hc)  # all of them before a volume is made
        for bind in hc.get("Binds") or []:
            parts = bind.split(":")
            src, dst, mode = parts[0], parts[1], parts[2] if len(parts) > 2 else ""
            rw = "ro" not in mode.split(",")
            if src.startswith("/"):
                mounts.append({"Type": "bind", "Source": src, "Destination": dst, "Mode": mode, "RW": rw,
                               "Propagation": bind_propagation(mode)})
                taken.add(dst)
            else:
                volume(src, dst, rw)
        for m in hc.get("Mounts") or []:
            kind, dst = m.get("Type", "volume"), m.get("Target", "")
            if kind == "volume":
                if not m.get("Source"):
                    vol, _ = vols.create("", anonymous=True)
                    made.append(vol["Name"])
                    m["Source"] = vol["Name"]
                volume(m["Source"], dst, not m.get("ReadOnly"))
            elif kind == "bind":
                mounts.append({"Type": "bind", "Source": m.get("Source", ""), "Destination": dst, "Mode": "",
                               "RW": not m.get("ReadOnly"),
                               "Propagation": (m.get("BindOptions") or {}).get("Propagation") or DEFAULT_PROPAGATION})
                taken.add(dst)
            elif kind == "tmpfs":
                mounts.append({"Type": "tmpfs", "Source": "", "Destination": dst, "Mode": "",
                               "RW": not m.get("ReadOnly"), "Propagation": ""})
                taken.add(dst)
        for dst in list((image_config.get("Volumes") or {}).keys()) + list((config.get("Volumes") or {}).keys()):
            if dst not in taken and dst not in (hc.get("Tmpfs") or {}):
                volume("", dst, True, anonymous=True)
        return mounts

    # -- start --------------------------------------------------------------------------------------------------
    async def start(self, ref: str) -> None:
        rec = self.get(ref)
        async with self.lock(rec["Id"]):
            rec = self.get(rec["Id"])
            st = rec["State"]
            if st["Paused"]:
                raise Conflict("cannot start a paused container, try unpause instead")
            if st["Running"]:
                raise NotModified("container already started")
            if st["Status"] == "removing" or st["Dead"]:
                raise Conflict("container is marked for removal and cannot be started")
            rec["_portside"]["ManuallyStopped"] = False
            await self._start_locked(rec)

    async def _start_locked(self, rec: dict[str, Any]) -> None:
        from engine.containers import runner

        try:
            await runner.start(self, rec)
        except EngineError as e:
            code = getattr(e, "exit_code", None)
            rec["State"].update(Error=e.message, ExitCode=code if code is not None else _start_exit_code(e.message))
            self.store.save(rec)
            if rec["HostConfig"].get("AutoRemove"):
                # as dockerd does: a --rm container that cannot start is removed at once
                self._restart_tasks[rec["Id"]] = asyncio.create_task(self._auto_remove(rec["Id"]))
            raise
        rec["State"].update(Status="running", Running=True, Paused=False, Restarting=False, OOMKilled=False,
                            Dead=False, Error="", ExitCode=0, StartedAt=shape.now_rfc3339(),
                            FinishedAt=shape.ZERO_TIME)
        self.health.start(rec)
        self.store.save(rec)
        self.emit(rec, "start")
        self._monitor(rec["Id"])

    async def attach(self, cid: str, *, stdin: bool, stdout: bool, stderr: bool) -> Any:
        """The container's stdio; called before the start (docker run), it connects before the process runs."""
        rec = self.store.find(cid)
        if rec is None:
            return None
        if not rec["State"]["Running"]:
            connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pending_attach.setdefault(cid, []).append(connected)
            created = self._created.setdefault(cid, asyncio.Event())
            removed = self.removed_event(cid)
            try:
                waits = [asyncio.ensure_future(created.wait()), asyncio.ensure_future(removed.wait())]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
                if not created.is_set():
                    return None
                return await self.rt.attach(cid, stdin=stdin, stdout=stdout, stderr=stderr)
            finally:
                if not connected.done():
                    connected.set_result(None)
                with contextlib.suppress(ValueError, KeyError):
                    self._pending_attach[cid].remove(connected)
                    if not self._pending_attach[cid]:
                        del self._pending_attach[cid]
        return await self.rt.attach(cid, stdin=stdin, stdout=stdout, stderr=stderr)

    async def _let_attachers_in(self, cid: str) -> None:
        """Between the runtime's create and start: wake early attach calls and wait until they are connected."""
        pending = list(self._pending_attach.get(cid, []))
        ev = self._created.pop(cid, None)
        if ev is not None:
            ev.set()
        if pending:
            await asyncio.wait(pending, timeout=10)

    def _monitor(self, cid: str) -> None:
        old = self._monitors.get(cid)
        if old is not None and not old.done():
            return
        self._monitors[cid] = asyncio.create_task(self._watch(cid), name=f"monitor-{cid[:12]}")

    async def _watch(self, cid: str) -> None:
        try:
            await self._watch_exit(cid)
        finally:
            # a finished monitor goes with its container's exit (a restart makes a new one)
            if self._monitors.get(cid) is asyncio.current_task():
                del self._monitors[cid]

    async def _watch_exit(self, cid: str) -> None:
        from engine.containers import runner

        try:
            code, oom = await self.rt.wait(cid)
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("waiting for container %s", cid)
            code, oom = 255, False
        if self._closing:
            return
        self.health.stop(cid)
        rec = self.store.find(cid)
        if rec is None:
            return
        t0 = time.monotonic()
        async with self.lock(cid):
            await runner.cleanup(self, rec, drop_layer=bool(rec["HostConfig"].get("AutoRemove")))
            self.drop_execs(cid, finished=False)
            log.debug("exit %s: cleanup %.1fms", cid[:12], 1000 * (time.monotonic() - t0))
            started = rec["State"].get("StartedAt", "")
            rec["State"].update(Status="exited", Running=False, Paused=False, Restarting=False, Pid=0,
                                ExitCode=code, OOMKilled=oom, FinishedAt=shape.now_rfc3339())
            if not rec["HostConfig"].get("AutoRemove"):
                # a --rm container's record goes right after this: no need to write it (a crash in between
                # leaves a "running" record, which restore() cleans up and removes as well)
                self.store.save(rec)
            if oom:
                self.emit(rec, "oom")
            self.emit(rec, "die", exitCode=str(code))
            ev = self._exit.pop(cid, None)
            if ev is not None:
                ev.set()
            if rec["HostConfig"].get("AutoRemove"):
                self._restart_tasks[cid] = asyncio.create_task(self._auto_remove(cid))
                return
            if self._should_restart(rec, code):
                self._schedule_restart(rec, started)

    async def _auto_remove(self, cid: str) -> None:
        self._restart_tasks.pop(cid, None)
        with contextlib.suppress(EngineError):
            await self.remove(cid, force=True, volumes=True)

    def _should_restart(self, rec: dict[str, Any], code: int) -> bool:
        name, maximum = restart_policy(rec["HostConfig"])
        if rec["_portside"].get("ManuallyStopped"):
            return False
        if name == "always" or name == "unless-stopped":
            return True
        if name == "on-failure":
            return code != 0 and (maximum == 0 or rec["RestartCount"] < maximum)
        return False

    def _schedule_restart(self, rec: dict[str, Any], started_at: str) -> None:
        cid = rec["Id"]
        from engine.containers.logs import parse_time_ns

        ran = (time.time_ns() - parse_time_ns(started_at)) / 1e9 if started_at != shape.ZERO_TIME else 0
        backoff = rec["_portside"].get("Backoff", 0.0)
        backoff = 0.1 if ran > 10 or not backoff else min(backoff * 2, 60.0)
        rec["_portside"]["Backoff"] = backoff
        rec["State"].update(Status="restarting", Restarting=True)
        self.store.save(rec)

        async def later() -> None:
            await asyncio.sleep(backoff)
            async with self.lock(cid):
                cur = self.store.find(cid)
                if cur is None or not cur["State"]["Restarting"] or cur["_portside"].get("ManuallyStopped"):
                    return
                cur["RestartCount"] += 1
                try:
                    await self._start_locked(cur)
                    self.emit(cur, "restart")
                except EngineError as e:
                    cur["State"].update(Status="exited", Restarting=False, Error=e.message)
                    self.store.save(cur)

        self._restart_tasks[cid] = asyncio.create_task(later())

    # -- stop / kill / restart / pause --------------------------------------------------------------------------
    async def kill(self, ref: str, sig: str | int | None = None) -> None:
        signum = parse_signal(sig)  # before the look-up, as dockerd's ContainerKill
        rec = self.get(ref)
        if rec["State"]["Restarting"]:
            # dockerd: nothing to signal between two restarts; the restart is called off and it stays exited
            task = self._restart_tasks.pop(rec["Id"], None)
            if task is not None:
                task.cancel()
            rec["_portside"]["ManuallyStopped"] = True
            rec["State"].update(Status="exited", Restarting=False)
            self.store.save(rec)
            return
        if not rec["State"]["Running"]:
            raise Conflict(f"container {rec['Id']} is not running")
        rec["_portside"]["ManuallyStopped"] = True  # as dockerd: a container the user signalled is not restarted
        self.store.save(rec)
        cid = rec["Id"]
        if signum != signals.SIGKILL:
            try:
                await self.rt.kill(cid, signum)  # any other signal: sent, and the call returns (dockerd's too)
            except (Conflict, NotFound):
                raise Conflict(f"container {cid} is not running") from None  # it exited meanwhile
            self.emit(rec, "kill", signal=str(signum))
            stop: int | None = None
            with contextlib.suppress(InvalidArgument):  # an image's odd STOPSIGNAL is refused at stop, not here
                stop = parse_signal(rec["Config"].get("StopSignal") or None, default=0) or None
            if rec["State"]["Paused"] and stop in (None, signum):
                # dockerd resumes a paused container sent its stop signal (any signal when it has none set), so
                # the signal is delivered
                try:
                    await self.rt.unpause(cid)
                except (EngineError, OSError):
                    return  # it went meanwhile (its cgroup too: ENODEV): its exit is recorded as any other
                rec["State"].update(Status="running", Paused=False)
                self.store.save(rec)
                self.health.resume(rec)
                self.emit(rec, "unpause")
            return
        # SIGKILL is dockerd's Kill(): it returns once the container is recorded as exited, so an inspect
        # right after shows exited/137; the event is armed before the signal so the exit cannot slip past.
        exited = self.exit_event(cid)
        # exited already (the runtime may even have dropped it): its exit is being recorded, which is waited for
        with contextlib.suppress(Conflict, NotFound):
            await self.rt.kill(cid, signum)
        self.emit(rec, "kill", signal=str(signum))
        if rec["State"]["Paused"]:
            # a frozen task takes the SIGKILL only once thawed (cgroup v1); the thaw can lose the race with the
            # exit it lets happen (the cgroup is removed under the write: ENODEV), which is no error of the kill
            with contextlib.suppress(EngineError, OSError):
                await self.rt.unpause(cid)
        try:
            await asyncio.wait_for(exited.wait(), 10)
        except TimeoutError:
            # as dockerd: not gone after 10 s, kill what is left of it (every process of its cgroup), then wait
            # once more (dockerd's words when that too goes by)
            log.warning("container %s did not exit within 10 s of SIGKILL; killing its cgroup", cid[:12])
            with contextlib.suppress(EngineError, ProcessLookupError):
                await self.rt.kill(cid, signum, all_=True)
            try:
                await asyncio.wait_for(exited.wait(), 10)
            except TimeoutError:
                raise EngineError("tried to kill container, but did not receive an exit event") from None

    async def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        rec = self.get(ref)
        cid = rec["Id"]
        if rec["State"]["Running"]:
            parse_signal(sig or rec["Config"].get("StopSignal") or "SIGTERM")  # a bad one changes nothing
        task = self._restart_tasks.pop(cid, None)
        if task is not None:
            task.cancel()
        rec["_portside"]["ManuallyStopped"] = True
        if rec["State"]["Restarting"]:
            rec["State"].update(Status="exited", Restarting=False)
            self.store.save(rec)
            return
        self.store.save(rec)
        if not rec["State"]["Running"]:
            raise NotModified("container already stopped")
        cfg = rec["Config"]
        signum = parse_signal(sig or cfg.get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = cfg.get("StopTimeout") if cfg.get("StopTimeout") is not None else 10
        exited = self.exit_event(cid)
        if rec["State"]["Paused"]:
            with contextlib.suppress(EngineError):
                await self.rt.unpause(cid)
        with contextlib.suppress(EngineError, ProcessLookupError):
            await self.rt.kill(cid, signum)
            self.emit(rec, "kill", signal=str(signum))
        crashpoint("container.stop.signalled")
        try:
            if timeout < 0:
                await exited.wait()
            else:
                await asyncio.wait_for(exited.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(EngineError, ProcessLookupError):
                await self.rt.kill(cid, signals.SIGKILL)
                self.emit(rec, "kill", signal=str(int(signals.SIGKILL)))
            await asyncio.wait_for(exited.wait(), 30)
        self.emit(rec, "stop")

    async def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        rec = self.get(ref)
        with contextlib.suppress(NotModified):
            await self.stop(rec["Id"], timeout, sig)
        await self.start(rec["Id"])
        self.emit(rec, "restart")

    async def pause(self, ref: str) -> None:
        rec = self.get(ref)
        if rec["State"]["Restarting"]:
            raise Conflict(f"Container {rec['Id']} is restarting, wait until the container is running")
        if not rec["State"]["Running"]:
            raise Conflict(f"container {rec['Id']} is not running")
        if rec["State"]["Paused"]:
            raise Conflict(f"Container {rec['Id']} is already paused")
        await self.rt.pause(rec["Id"])
        self.health.stop(rec["Id"])
        rec["State"].update(Status="paused", Paused=True)
        self.store.save(rec)
        self.emit(rec, "pause")

    async def unpause(self, ref: str) -> None:
        rec = self.get(ref)
        if not rec["State"]["Paused"]:
            raise Conflict(f"Container {rec['Id']} is not paused")
        await self.rt.unpause(rec["Id"])
        rec["State"].update(Status="running", Paused=False)
        self.store.save(rec)
        self.health.resume(rec)
        self.emit(rec, "unpause")

    # -- wait ---------------------------------------------------------------------------------------------------
    async def wait(self, rec: dict[str, Any], condition: str) -> dict[str, Any]:
        cid = rec["Id"]
        if condition == "removed":
            ev = self.removed_event(cid)
            if self.store.find(cid) is not None:
                await ev.wait()
        elif condition == "next-exit" or rec["State"]["Running"] or rec["State"]["Restarting"]:
            await self.exit_event(cid).wait()
        elif condition not in ("not-running", ""):
            raise InvalidArgument(f"invalid condition: \"{condition}\"")
        cur = self.store.find(cid) or rec
        err = cur["State"].get("Error") or ""
        return {"StatusCode": cur["State"]["ExitCode"], "Error": {"Message": err} if err else None}

    # -- remove -------------------------------------------------------------------------------------------------
    async def remove(self, ref: str, force: bool = False, volumes: bool = False, link: bool = False) -> None:
        rec = self.get(ref)
        cid = rec["Id"]
        if link:
            raise InvalidArgument("Conflict, cannot remove the default link name of the container")
        if rec["State"]["Running"] or rec["State"]["Restarting"]:
            if not force:
                state = "paused" if rec["State"]["Paused"] else ("restarting" if rec["State"]["Restarting"]
                                                                  else "running")
                raise Conflict(f"cannot remove container \"{rec['Name']}\": container is {state}: stop the "
                               "container before removing or force remove")
            task = self._restart_tasks.pop(cid, None)
            if task is not None:
                task.cancel()
            rec["_portside"]["ManuallyStopped"] = True
            if rec["State"]["Running"]:
                exited = self.exit_event(cid)
                # it may exit (and its supervisor go) while signalled: that is what was asked, not an error
                with contextlib.suppress(EngineError, OSError):
                    if rec["State"]["Paused"]:
                        await self.rt.unpause(cid)
                    await self.rt.kill(cid, signals.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(exited.wait(), 30)
        t0 = time.monotonic()
        async with self.lock(cid):
            if self.store.find(cid) is None:
                return  # removed meanwhile (auto-remove)
            from engine.containers import runner

            rec["State"]["Status"] = "removing"
            if not rec["_portside"].get("CleanedUp"):
                await runner.cleanup(self, rec)
            crashpoint("container.rm.cleaned")
            t1 = time.monotonic()
            await runner.remove_layer(self, rec)
            t2 = time.monotonic()
            crashpoint("container.rm.layer")
            await asyncio.to_thread(self.store.delete, cid)
            log.debug("remove %s: cleanup %.1fms, layer %.1fms, record %.1fms", cid[:12], 1000 * (t1 - t0),
                      1000 * (t2 - t1), 1000 * (time.monotonic() - t2))
            self._exit.pop(cid, None)
            self._locks.pop(cid, None)
            self._forget(cid)
        if volumes:
            for m in rec.get("Mounts") or []:
                if m.get("Type") == "volume" and m.get("Name"):
                    with contextlib.suppress(EngineError):
                        vol = self.d.volumes.inspect(m["Name"])
                        if ANONYMOUS_LABEL in (vol.get("Labels") or {}):
                            self.d.volumes.remove(m["Name"])
                            self.d.events.publish("volume", "destroy", m["Name"], {"driver": "local"})
        self.emit(rec, "destroy")
        self.trimmer.soon()
        ev = self._removed.pop(cid, None)
        if ev is not None:
            ev.set()

    # -- rename / update ----------------------------------------------------------------------------------------
    async def rename(self, ref: str, new: str) -> None:
        rec = self.get(ref)
        new_name = check_name(new)
        old = rec["Name"]
        if new_name == old:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        self.store.reserve_name(new_name, rec["Id"])
        rec["Name"] = new_name
        self.store.save(rec)
        self.store.release_name(old, rec["Id"])
        self.emit(rec, "rename", oldName=old)

    async def update(self, ref: str, body: dict[str, Any]) -> list[str]:
        rec = self.get(ref)
        hc = rec["HostConfig"]
        from engine.containers import validate as check
        check.check_resources(body, update=True)  # dockerd's verifyContainerSettings(update=true): a 400
        if body.get("RestartPolicy"):
            check.check_restart_policy(body)
            name, maximum = restart_policy(body)
            if hc.get("AutoRemove") and name not in ("no", ""):
                raise InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the "
                                      "container")
            hc["RestartPolicy"] = {"Name": name, "MaximumRetryCount": maximum}
        resources = {k: v for k, v in body.items() if k != "RestartPolicy" and k in shape.HOST_CONFIG_DEFAULTS}
        hc.update(resources)
        if resources and rec["State"]["Running"] and hasattr(self.rt, "update"):
            await self.rt.update(rec["Id"], resources)
        self.store.save(rec)
        self.emit(rec, "update")
        return []

    # -- list ---------------------------------------------------------------------------------------------------
    def list_containers(
        self, all_: bool, limit: int | None, size: bool, filters: dict[str, list[str]]
    ) -> list[dict[str, Any]]:
        recs = sorted(self.store.all(), key=lambda r: r["Created"], reverse=True)
        before = since = None
        if filters.get("before"):
            before = self.get(filters["before"][0])["Created"]
        if filters.get("since"):
            since = self.get(filters["since"][0])["Created"]
        out = []
        from engine.net.legacy_links import LINKS_KEY

        link_names: dict[str, list[str]] = {}  # child id -> "/parent/alias" names its parents link it by
        for r in recs:
            for li in r["_portside"].get(LINKS_KEY) or []:
                link_names.setdefault(li["Child"], []).append(li["Name"])
        for r in recs:
            st = r["State"]
            # `docker ps` lists a restarting container too (dockerd counts it as running)
            if not all_ and not (st["Running"] or st["Restarting"]) and not filters.get("status") and limit in (
                None, -1, 0) and not (before or since or filters.get("exited")):
                continue
            if before and r["Created"] >= before:
                continue
            if since and r["Created"] <= since:
                continue
            if not _match_filters(self, r, filters):
                continue
            item = shape.summary(r)
            item["Names"] += sorted(link_names.get(r["Id"], ()))  # dockerd lists a linked child's link names too
            if size:
                item["SizeRw"], item["SizeRootFs"] = self.sizes(r)
            out.append(item)
        if limit is not None and limit > 0:
            out = out[:limit]
        return out

    def sizes(self, rec: dict[str, Any]) -> tuple[int, int]:
        from engine.volumes import dir_size

        try:
            layer = self.d.images.container_layer(rec["Id"])
            rw = dir_size(layer.upper_dir)
        except EngineError:
            rw = 0
        try:
            img_size = int(self.d.images.get(rec["Image"]).size)
        except EngineError:
            img_size = 0
        return rw, rw + img_size

    async def disk_usage(self) -> list[dict[str, Any]]:
        def build() -> list[dict[str, Any]]:
            out = []
            for r in self.store.all():
                item = shape.summary(r)
                item["SizeRw"], item["SizeRootFs"] = self.sizes(r)
                out.append(item)
            return out

        return await asyncio.to_thread(build)

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        deleted, reclaimed = [], 0
        until = None
        if filters.get("until"):
            from engine.timestamps import timestamp_ns

            until = timestamp_ns(filters["until"][0])
        from engine.containers.logs import parse_time_ns

        for r in self.store.all():
            if r["State"]["Running"] or r["State"]["Restarting"]:
                continue
            if until is not None and parse_time_ns(r["Created"]) > until:
                continue
            if not _labels_ok(r["Config"].get("Labels") or {}, filters.get("label", []),
                              filters.get("label!", [])):
                continue
            rw, _ = await asyncio.to_thread(self.sizes, r)
            with contextlib.suppress(EngineError):
                await self.remove(r["Id"])
                deleted.append(r["Id"])
                reclaimed += rw
        self.d.events.publish("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # -- daemon start / stop ------------------------------------------------------------------------------------
    async def restore(self) -> None:
        """Re-adopt containers that kept running while no engine was up; apply restart policies to the rest."""
        from engine.containers import runner

        for rec in self.store.all():
            cid = rec["Id"]
            st = rec["State"]
            if st["Status"] == "removing":
                with contextlib.suppress(EngineError):
                    await self.remove(cid, force=True)
                continue
            alive = self.rt is not None and await self.rt.alive(cid)
            if alive:
                if not st["Running"]:
                    st.update(Status="running", Running=True)
                self.store.save(rec)
                self._monitor(cid)
                self.health.resume(rec)
                continue
            if not (st["Running"] or st["Restarting"]) and (not rec["_portside"].get("CleanedUp", True)
                                                             or self.bundle(cid).exists()):
                # the engine died during a start or mid-cleanup: release what is left (a start makes the bundle
                # directory before anything else, and a cleanup removes it last)
                await runner.cleanup(self, rec)
                self.store.save(rec)
            if st["Running"] or st["Restarting"]:
                code = await self.rt.exit_code(cid) if self.rt is not None else None
                await runner.cleanup(self, rec)
                st.update(Status="exited", Running=False, Paused=False, Restarting=False, Pid=0,
                          ExitCode=code if code is not None else 255, FinishedAt=shape.now_rfc3339())
                self.store.save(rec)
            name, _ = restart_policy(rec["HostConfig"])
            if rec["HostConfig"].get("AutoRemove"):
                with contextlib.suppress(EngineError):
                    await self.remove(cid, force=True)
                continue
            if name in ("always", "unless-stopped") and not rec["_portside"].get("ManuallyStopped"):
                try:
                    async with self.lock(cid):
                        await self._start_locked(rec)
                except EngineError as e:
                    log.warning("restarting %s on daemon start: %s", cid[:12], e.message)

    async def close(self) -> None:
        self._closing = True
        self.trimmer.cancel()
        await self.health.close()
        tasks = [*self._monitors.values(), *self._restart_tasks.values(), *([self._exec_gc] if self._exec_gc else [])]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t

    def _forget(self, cid: str) -> None:
        """A removed container's last in-memory traces: its exec records, a finished restart task, what early
        attach calls waited on (its monitor ends with its process and takes itself out)."""
        self.drop_execs(cid, finished=True)
        task = self._restart_tasks.pop(cid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._created.pop(cid, None)
        self._pending_attach.pop(cid, None)

    # -- exec records -------------------------------------------------------------------------------------------
    def add_exec(self, rec: dict[str, Any], ex: dict[str, Any]) -> None:
        self.execs[ex["ID"]] = ex
        rec["ExecIDs"] = [*(rec.get("ExecIDs") or []), ex["ID"]]
        if self._exec_gc is None or self._exec_gc.done():
            self._exec_gc = asyncio.create_task(self._collect_execs_forever(), name="exec-gc")

    def drop_execs(self, cid: str, *, finished: bool) -> None:
        """dockerd's Cleanup at a container's exit drops its execs that have not exited (their processes went with
        it; the finished ones stay inspectable until the collector takes them); at removal every one goes."""
        for eid, ex in list(self.execs.items()):
            if ex["ContainerID"] == cid and (finished or ex["ExitCode"] is None):
                del self.execs[eid]
        rec = self.store.find(cid)
        if rec is not None:
            rec["ExecIDs"] = None
        if not self.execs and self._exec_gc is not None:
            self._exec_gc.cancel()  # nothing left to collect: the next exec starts the collector again
            self._exec_gc = None

    def collect_execs(self) -> int:
        """One tick of dockerd's execCommandGC: what the last tick marked goes, and every exec that has exited
        (or whose container is gone) is marked, CanRemove in its inspect. Returns how many went."""
        gone = 0
        for eid, ex in list(self.execs.items()):
            if ex["CanRemove"]:
                del self.execs[eid]
                gone += 1
            elif ex["ExitCode"] is not None or self.store.find(ex["ContainerID"]) is None:
                ex["CanRemove"] = True
        if gone:
            log.debug("exec collector: dropped %d finished execs", gone)
        return gone

    async def _collect_execs_forever(self) -> None:
        while self.execs:
            await asyncio.sleep(self.exec_gc_interval)
            self.collect_execs()


def _start_exit_code(message: str) -> int:
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message:
        return 126
    return 128


def _labels_ok(labels: dict[str, str], want: list[str], not_want: list[str]) -> bool:
    def ok(w: str) -> bool:
        k, sep, v = w.partition("=")
        return k in labels and (not sep or labels[k] == v)

    return all(ok(w) for w in want) and not any(ok(w) for w in not_want)


def _match_filters(m: ContainerManager, r: dict[str, Any], f: dict[str, list[str]]) -> bool:
    st = r["State"]
    if (v := f.get("id")) and not any(r["Id"].startswith(x) for x in v):
        return False
    if (v := f.get("name")) and not any(x.lstrip("/") in r["Name"].lstrip("/") for x in v):
        return False
    if (v := f.get("status")) and st["Status"] not in v:
        return False
    if (v := f.get("health")) and status_of(r) not in v:
        return False
    if (v := f.get("exited")) and (st["Status"] != "exited" or str(st["ExitCode"]) not in v):
        return False
    if (v := f.get("label")) and not _labels_ok(r["Config"].get("Labels") or {}, v, []):
        return False
    if v := f.get("ancestor"):
        ok = False
        for ref in v:
            try:
                img = m.d.images.get(ref)
            except EngineError:
                continue
            if img.id == r["Image"]:
                ok = True
        if not ok and not any(r["Config"].get("Image") == x for x in v):
            return False
    if (v := f.get("volume")) and not any(
        x in (mt.get("Name"), mt.get("Destination"), mt.get("Source")) for mt in r.get("Mounts") or [] for x in v
    ):
        return False
    if v := f.get("network"):
        nets = (r.get("NetworkSettings") or {}).get("Networks") or {}
        if not any(x in nets or any(n.get("NetworkID", "").startswith(x) for n in nets.values()) for x in v):
            return False
    if (v := f.get("publish")) or (v := f.get("expose")):
        ports = {p.get("PublicPort") for p in shape.ports_summary(r)} | {
            p.get("PrivatePort") for p in shape.ports_summary(r)}
        if not any(int(x.split("/")[0]) in ports for x in v if x.split("/")[0].isdigit()):
            return False
    return not ((v := f.get("is-task")) and v[0] in ("true", "1"))


def copy_record(rec: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(rec)


async def net_connect(m: ContainerManager, ref: str, net: dict[str, Any], cfg: dict[str, Any]) -> None:
    rec = m.get(ref)
    d = m.d
    if rec["State"]["Running"]:
        sb = await asyncio.to_thread(d.networks.connect, rec["Id"], net["Id"], cfg)
        rec["NetworkSettings"] = sb.network_settings
    else:
        eps = rec["_portside"].setdefault("NetworkingConfig", {}).setdefault("EndpointsConfig", {}) or {}
        if net["Name"] in eps:
            raise Forbidden(f"endpoint with name {rec['Name'].lstrip('/')} already exists in network {net['Name']}")
        if not eps and rec["HostConfig"].get("NetworkMode") in ("bridge", "default", ""):
            eps["bridge"] = {}
        eps[net["Name"]] = cfg
        rec["_portside"]["NetworkingConfig"]["EndpointsConfig"] = eps
        rec["NetworkSettings"].setdefault("Networks", {})[net["Name"]] = shape.endpoint(net["Id"], cfg)
    m.store.save(rec)
    d.events.publish("network", "connect", net["Id"], {"name": net["Name"], "type": net["Driver"],
                                                       "container": rec["Id"]})


async def net_disconnect(m: ContainerManager, ref: str, net: dict[str, Any], force: bool) -> None:
    rec = m.store.find(ref)
    d = m.d
    if rec is None:
        if not force:
            m.get(ref)
        await asyncio.to_thread(d.networks.disconnect, ref, net["Id"], True)
        return
    if rec["State"]["Running"]:
        sb = await asyncio.to_thread(d.networks.disconnect, rec["Id"], net["Id"], force)
        rec["NetworkSettings"] = sb.network_settings
    else:
        eps = (rec["_portside"].get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        nets = rec["NetworkSettings"].get("Networks") or {}
        if net["Name"] not in eps and net["Name"] not in nets and not (
            net["Name"] == "bridge" and rec["HostConfig"].get("NetworkMode") == "bridge"
        ):
            raise Forbidden(f"container {rec['Id']} is not connected to network {net['Name']}")
        eps.pop(net["Name"], None)
        nets.pop(net["Name"], None)
    m.store.save(rec)
    d.events.publish("network", "disconnect", net["Id"], {"name": net["Name"], "type": net["Driver"],
                                                          "container": rec["Id"]})

