"""Healthchecks as dockerd runs them: a probe exec'd in the running container every Interval, State.Health kept
in the record (Status starting|healthy|unhealthy, FailingStreak, the last 5 results), `health_status: X` events.

One asyncio task per running, unpaused container with a CMD or CMD-SHELL test. The probe goes through the same
exec machinery as `docker exec` (the container's user, env and working dir; no tty). Results update the record in
memory; it is saved when the status changes (as dockerd, the log itself is best-effort across engine restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from engine import ids
from engine.containers.logs import format_time_ns, parse_time_ns
from engine.errors import EngineError

# The Healthcheck's shape lives with the image config it is part of; re-exported for the callers that know it here.
from engine.images.healthcheck import _DURATIONS, SECOND, validate
from engine.images.healthcheck import parse_go_duration as parse_go_duration
from engine.images.healthcheck import parse_instruction as parse_instruction

if TYPE_CHECKING:
    from engine.containers.manager import ContainerManager

log = logging.getLogger("portside.health")

DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096
STATUSES = ("starting", "healthy", "unhealthy", "none")


def merge_config(config: dict[str, Any], image_config: dict[str, Any]) -> None:
    """The image's Healthcheck fills what the container's leaves unset (dockerd's merge at create), then checks."""
    image_hc = image_config.get("Healthcheck")
    hc = config.get("Healthcheck")
    if hc is None:
        if image_hc:
            config["Healthcheck"] = dict(image_hc)
    elif image_hc:
        if not hc.get("Test"):
            hc["Test"] = image_hc.get("Test")
        for key in (*_DURATIONS, "Retries"):
            if not hc.get(key) and image_hc.get(key):
                hc[key] = image_hc[key]
    validate(config.get("Healthcheck"))


def probe_command(config: dict[str, Any]) -> list[str] | None:
    """The probe's argv, or None when the container has no healthcheck (none, empty, NONE, unknown type)."""
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if not test:
        return None
    if test[0] == "CMD" and len(test) > 1:
        return list(test[1:])
    if test[0] == "CMD-SHELL" and len(test) > 1:
        shell = config.get("Shell") or ["/bin/sh", "-c"]
        return [*shell, *test[1:]]
    return None


def go_duration(ns: int) -> str:
    """Go's time.Duration.String() for the durations a healthcheck has (30s, 1.5s, 1m30s, 500ms)."""
    if ns == 0:
        return "0s"
    if ns < SECOND:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{_trim(ns / size)}{unit}"
    h, rest = divmod(ns, 3600 * SECOND)
    m, rest = divmod(rest, 60 * SECOND)
    s = _trim(rest / SECOND)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def _trim(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")


def status_suffix(state: dict[str, Any]) -> str:
    """What `docker ps` appends to "Up ...": " (health: starting)", " (healthy)", " (unhealthy)"."""
    h = state.get("Health")
    if not h or not h.get("Status") or h["Status"] == "none":
        return ""
    return " (health: starting)" if h["Status"] == "starting" else f" ({h['Status']})"


def status_of(rec: dict[str, Any]) -> str:
    """The value `--filter health=` compares: starting, healthy, unhealthy, or none."""
    h = rec["State"].get("Health")
    if not h or probe_command(rec["Config"]) is None:
        return "none"
    return str(h.get("Status") or "none")


class HealthMonitor:
    """The probe loops of a ContainerManager's containers."""

    def __init__(self, manager: ContainerManager) -> None:
        self.m = manager
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, rec: dict[str, Any]) -> None:
        """A (re)started container: status starting, streak 0 (the log is kept, as dockerd), probing from now.

        Call before the record is saved with its running state."""
        if probe_command(rec["Config"]) is None:
            return
        h = rec["State"].get("Health") or {"Log": []}
        h.update(Status="starting", FailingStreak=0)
        h.setdefault("Log", [])
        rec["State"]["Health"] = h
        self.resume(rec)

    def resume(self, rec: dict[str, Any]) -> None:
        """Probing for a running container whose health state is already set (unpause, engine restart)."""
        cid = rec["Id"]
        if probe_command(rec["Config"]) is None or self.m._closing:
            return
        if not rec["State"].get("Health"):
            rec["State"]["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        old = self._tasks.get(cid)
        if old is not None and not old.done():
            return
        self._tasks[cid] = asyncio.get_running_loop().create_task(self._loop(cid), name=f"health-{cid[:12]}")

    def stop(self, cid: str) -> None:
        """No more probes (stop, exit, pause, remove); a probe running now is killed and its result dropped."""
        task = self._tasks.pop(cid, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t

    def probing(self, cid: str) -> bool:
        task = self._tasks.get(cid)
        return task is not None and not task.done()

    # --- the loop ---

    async def _loop(self, cid: str) -> None:
        try:
            while True:
                rec = self.m.store.find(cid)
                if rec is None or not rec["State"]["Running"] or rec["State"]["Paused"]:
                    return
                await asyncio.sleep(self._interval(rec) / SECOND)
                rec = self.m.store.find(cid)
                if rec is None or not rec["State"]["Running"] or rec["State"]["Paused"]:
                    return
                result = await self._probe(rec)
                self._record(rec, result)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("healthcheck loop of %s", cid[:12])
        finally:
            if self._tasks.get(cid) is asyncio.current_task():
                self._tasks.pop(cid, None)

    def _interval(self, rec: dict[str, Any]) -> int:
        """dockerd's getInterval: StartInterval while starting within StartPeriod, the period's rest if shorter."""
        hc = rec["Config"].get("Healthcheck") or {}
        interval = hc.get("Interval") or DEFAULT_INTERVAL
        start_period = hc.get("StartPeriod") or DEFAULT_START_PERIOD
        elapsed = time.time_ns() - parse_time_ns(rec["State"]["StartedAt"])
        if elapsed >= start_period:
            return int(interval)
        remaining = start_period - elapsed
        if remaining < interval:
            return int(remaining)
        if (rec["State"].get("Health") or {}).get("Status") == "starting":
            return int(hc.get("StartInterval") or DEFAULT_START_INTERVAL)
        return int(interval)

    async def _probe(self, rec: dict[str, Any]) -> dict[str, Any]:
        config = rec["Config"]
        hc = config.get("Healthcheck") or {}
        argv = probe_command(config) or []
        start = time.time_ns()
        timeout = hc.get("Timeout") or DEFAULT_TIMEOUT
        m = self.m
        cfg = {"Cmd": argv, "User": config.get("User") or "", "WorkingDir": config.get("WorkingDir") or ""}
        out = bytearray()
        truncated = False
        # dockerd announces its probes as execs too
        eid, cmd = ids.new_id(), f"{' '.join(argv[:1])} {' '.join(argv[1:])}"  # as exec's: "true " for ["true"]
        m.emit(rec, f"exec_create: {cmd}", execID=eid)
        try:
            proc = await m.rt.exec(rec["Id"], cfg, rec, tty=False, stdin=False)
        except EngineError as e:
            return _result(start, -1, e.message)
        except (OSError, ConnectionError) as e:
            return _result(start, -1, str(e))
        m.emit(rec, f"exec_start: {cmd}", execID=eid)

        async def drain() -> None:
            nonlocal truncated
            while (item := await proc.read()) is not None:
                data = item[1]
                keep = max(0, MAX_OUTPUT - len(out))
                out.extend(data[:keep])
                truncated = truncated or keep < len(data)

        try:
            await asyncio.wait_for(drain(), timeout / SECOND)
        except TimeoutError:
            # dockerd cancels the exec: the probe process dies, and its (short) output is kept in the message
            _kill(proc.pid)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(proc.wait(), 5)
            text = _text(out, truncated)
            msg = f"Health check exceeded timeout ({go_duration(int(timeout))})" + (f": {text}" if text else "")
            return _result(start, -1, msg)
        except asyncio.CancelledError:
            _kill(proc.pid)
            raise
        code = await proc.wait()
        m.emit(rec, "exec_die", execID=eid, exitCode=str(code))
        return _result(start, code, _text(out, truncated))

    def _record(self, rec: dict[str, Any], result: dict[str, Any]) -> None:
        """dockerd's handleProbeResult."""
        hc = rec["Config"].get("Healthcheck") or {}
        retries = hc.get("Retries") or DEFAULT_RETRIES
        h = rec["State"].setdefault("Health", {"Status": "starting", "FailingStreak": 0, "Log": []})
        old = h.get("Status")
        h["Log"] = [*(h.get("Log") or []), result][-MAX_LOG_ENTRIES:]
        if result["ExitCode"] == 0:
            h.update(Status="healthy", FailingStreak=0)
        else:
            in_start_period = False
            if h.get("Status") == "starting":
                start_period = hc.get("StartPeriod") or DEFAULT_START_PERIOD
                in_start_period = parse_time_ns(result["Start"]) - parse_time_ns(rec["State"]["StartedAt"]) < (
                    start_period)  # fmt: skip
            if not in_start_period:
                h["FailingStreak"] = int(h.get("FailingStreak") or 0) + 1
                if h["FailingStreak"] >= retries:
                    h["Status"] = "unhealthy"
        if h["Status"] != old:
            self.m.store.save(rec)
            self.m.emit(rec, f"health_status: {h['Status']}")


def _kill(pid: int) -> None:
    """Kills a probe and what it started: its process group when it leads one (a group with the id of a live
    process can only be that process's own), else the process."""
    if pid <= 0:
        return
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _text(out: bytearray, truncated: bool) -> str:
    return out.decode(errors="replace") + ("..." if truncated else "")


def _result(start_ns: int, code: int, output: str) -> dict[str, Any]:
    return {"Start": format_time_ns(start_ns), "End": format_time_ns(time.time_ns()), "ExitCode": code,
            "Output": output}  # fmt: skip
