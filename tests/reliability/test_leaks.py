"""Per-container state in the engine's memory goes with the container: exec records (dropped at the container's
exit when they had not exited, at its removal in any case, and by the collector once finished, as dockerd's
execCommandGC), exit monitors, restart tasks, the events early attach calls wait on, the network's sandboxes and
port claims. Run against an engine embedded in the test process (DaemonThread, the TUI's mode), so the maps can
be counted as well as seen through the API."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.conftest import PortsideDaemon, new_daemon, remove_daemon_dirs
from tests.testbed.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
pytest.importorskip("engine.exec.runtime", reason="no container runtime in this tree yet")

NET, VOL = "pst-leak-net", "pst-leak-vol"


@dataclass
class Embedded:
    d: PortsideDaemon  # its dirs, socket and CLI; the engine itself runs in this process
    thread: Any  # engine.daemon.DaemonThread
    image: str

    @property
    def engine(self) -> Any:
        return self.thread.daemon

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        """Calls `fn` on the engine's event loop (where its maps change) and returns its result."""
        import asyncio

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.thread._loop).result(30)

    def ok(self, *args: str) -> str:
        out = self.d.docker(*args)
        assert out.returncode == 0, f"docker {' '.join(args)}: {out.stderr}"
        return out.stdout

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        status, _h, raw = self.d.request(method, path, data, {"Content-Type": "application/json"} if data else None)
        return status, json.loads(raw) if raw.strip() else None

    def sizes(self) -> dict[str, int]:
        """How much per-container state the engine holds now."""
        m = self.engine.containers
        net = self.engine.networks
        return {
            "execs": len(m.execs), "monitors": len(m._monitors), "locks": len(m._locks), "exit events": len(m._exit),
            "removed events": len(m._removed), "restart tasks": len(m._restart_tasks),
            "pending attach": len(m._pending_attach), "created events": len(m._created),
            "health probes": len(m.health._tasks), "sandboxes": len(net.sandboxes),
            "port claims": len(net.allocator.used), "records": len(m.store.all()),
        }


@pytest.fixture(scope="module")
def embedded(registry: Registry) -> Iterator[Embedded]:
    if os.geteuid() != 0:
        pytest.skip("the engine needs root")
    from engine.daemon import DaemonConfig, DaemonThread

    d = new_daemon()
    cfg = DaemonConfig(data_root=d.data_root, exec_root=d.exec_root, hosts=[d.host], bridge=d.bridge,
                       ip_forward=False, cgroup_parent=f"portside-test-{d.bridge}")
    thread = DaemonThread(cfg)
    try:
        thread.start(timeout=60)
        e = Embedded(d, thread, f"{registry.host}/testbed/busybox:latest")
        e.ok("pull", "-q", e.image)
        e.ok("network", "create", NET)
        e.ok("volume", "create", VOL)
        yield e
    finally:
        thread.stop()
        d.cleanup_containers()
        d.destroy_network_state()
        remove_daemon_dirs(d)


def poll(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_life_cycles_with_execs_leave_the_engine_as_it_was(embedded: Embedded) -> None:
    e = embedded
    e.ok("run", "--rm", e.image, "true")  # warm-up: the default bridge's sandbox machinery and the like exist
    base = e.sizes()
    assert base["execs"] == 0 and base["records"] == 0
    for i in range(3):
        name = f"pst-leak-{i}"
        e.ok("run", "-d", "--name", name, "-p", "127.0.0.1::80", "-v", f"{VOL}:/v", "--network", NET, e.image,
             "sleep", "600")
        assert e.ok("exec", name, "echo", "hi").strip() == "hi"
        e.ok("exec", "-d", name, "sleep", "600")  # still running when the container goes
        status, created = e.api("POST", f"/containers/{name}/exec", {"Cmd": ["true"]})  # never started
        assert status == 201
        ids = json.loads(e.ok("inspect", name))[0]["ExecIDs"]
        assert len(ids) == 2 and created["Id"] in ids  # the running one and the unstarted one; `echo` exited
        assert len(e.engine.containers.execs) == 3
        e.ok("logs", name)
        e.ok("stop", "-t", "0", name)
        # dockerd's Cleanup at the exit: the execs that had not exited go (the unstarted one; the `sleep` died with
        # the container, and its exit may be seen first), the finished ones stay inspectable
        status, body = e.api("GET", f"/exec/{created['Id']}/json")
        assert status == 404 and "No such exec instance" in body["message"]
        assert json.loads(e.ok("inspect", name))[0]["ExecIDs"] is None
        left = list(e.engine.containers.execs)
        assert 1 <= len(left) <= 2
        for eid in left:
            status, body = e.api("GET", f"/exec/{eid}/json")
            assert status == 200 and body["ExitCode"] is not None and body["Running"] is False
        e.ok("rm", "-f", "-v", name)
        for eid in left:  # removal takes the rest
            assert e.api("GET", f"/exec/{eid}/json")[0] == 404
        e.ok("run", "--name", f"pst-leak-fg-{i}", e.image, "true")  # attached before its start
        e.ok("rm", f"pst-leak-fg-{i}")
    poll(lambda: e.sizes() == base, f"the engine's maps back to {base} (now {e.sizes()})")


def test_finished_execs_are_collected_while_their_container_runs(embedded: Embedded) -> None:
    e = embedded
    m = e.engine.containers
    e.ok("run", "-d", "--name", "pst-leak-gc", e.image, "sleep", "600")
    try:
        assert m.execs == {} and m._exec_gc is None  # no exec left: no collector runs
        # the collector's own ticks, with dockerd's 5 minutes shortened
        m.exec_gc_interval = 0.1
        e.ok("exec", "pst-leak-gc", "true")
        poll(lambda: m.execs == {}, "the collector to drop a finished exec")
        poll(lambda: m._exec_gc is None or m._exec_gc.done(), "the collector to stop with nothing to collect")
        m.exec_gc_interval = 300.0
        # its two steps, one tick at a time: a finished exec is marked (CanRemove), then dropped; one that has not
        # run stays while its container runs
        e.ok("exec", "pst-leak-gc", "true")
        (eid,) = list(m.execs)
        status, body = e.api("GET", f"/exec/{eid}/json")
        assert status == 200 and body["CanRemove"] is False and body["ExitCode"] == 0
        status, live = e.api("POST", "/containers/pst-leak-gc/exec", {"Cmd": ["true"]})
        assert status == 201
        assert e.on_loop(m.collect_execs) == 0
        status, body = e.api("GET", f"/exec/{eid}/json")
        assert status == 200 and body["CanRemove"] is True
        assert e.on_loop(m.collect_execs) == 1
        assert e.api("GET", f"/exec/{eid}/json")[0] == 404
        status, body = e.api("GET", f"/exec/{live['Id']}/json")
        assert status == 200 and body["CanRemove"] is False
    finally:
        m.exec_gc_interval = 300.0
        e.ok("rm", "-f", "pst-leak-gc")
    assert m.execs == {} and m._exec_gc is None


def test_removals_give_freed_memory_back_in_one_trim_a_burst(embedded: Embedded) -> None:
    # what a removed container held is garbage: malloc's free pages go back to the system (engine/mallopt.py), in
    # one malloc_trim a second after a removal, shared by the removals meanwhile (not put off by them)
    from engine import mallopt

    m = embedded.engine.containers
    m.trimmer.delay = 600.0  # long enough to see the one scheduled
    try:
        for i in range(2):
            embedded.ok("create", "--name", f"pst-leak-trim-{i}", embedded.image, "true")
        embedded.on_loop(m.trimmer.cancel)  # one an earlier test's removal scheduled
        before = m.trimmer.trims
        embedded.ok("rm", "pst-leak-trim-0")
        due = m.trimmer.due()
        assert due is not None
        embedded.ok("rm", "pst-leak-trim-1")
        assert m.trimmer.due() == due
        m.trimmer.delay = 0.05
        embedded.on_loop(m.trimmer.cancel)
        embedded.ok("create", "--name", "pst-leak-trim-2", embedded.image, "true")
        embedded.ok("rm", "pst-leak-trim-2")
        poll(lambda: m.trimmer.trims == before + 1 and m.trimmer.due() is None, "the trim after the removal")
    finally:
        m.trimmer.delay = mallopt.TRIM_DELAY
        for i in range(3):
            embedded.d.docker("rm", "-f", f"pst-leak-trim-{i}")


def test_failed_starts_leave_no_network_behind(embedded: Embedded) -> None:
    """A start makes the netns and /etc files ahead, then the runtime's create and the endpoints at once
    (engine/containers/runner.py): when either fails, the other's part goes too."""
    e = embedded
    e.ok("run", "--rm", e.image, "true")
    net = e.engine.networks
    base = e.sizes()

    def netns_files() -> set[str]:
        return {p.name for p in net.netns_dir.iterdir()} if net.netns_dir.is_dir() else set()

    def files_dirs() -> set[str]:
        return {p.name for p in net.files_dir.iterdir()} if net.files_dir.is_dir() else set()

    before_ns, before_files = netns_files(), files_dirs()
    # the runtime fails (no such executable: 127) while the endpoint and its published port are being made
    out = e.d.docker("run", "--name", "pst-leak-noexec", "-p", "127.0.0.1::80", "--network", NET, e.image,
                     "/pst-no-such-binary")
    assert out.returncode == 127, out.stderr
    # the network fails (removed after the create) once the netns and files were made ahead
    e.ok("network", "create", "pst-leak-gone")
    e.ok("create", "--name", "pst-leak-nonet", "--network", "pst-leak-gone", e.image, "true")
    e.ok("network", "rm", "pst-leak-gone")
    out = e.d.docker("start", "pst-leak-nonet")
    assert out.returncode != 0 and "pst-leak-gone" in out.stderr and "not found" in out.stderr, out.stderr
    for name in ("pst-leak-noexec", "pst-leak-nonet"):
        cid = json.loads(e.ok("inspect", name))[0]["Id"]
        assert cid not in net.sandboxes and cid not in net.prepared
        assert cid[:64] not in netns_files() and cid not in files_dirs()
        e.ok("rm", name)
    assert netns_files() == before_ns and files_dirs() == before_files
    assert e.on_loop(lambda: set(net.prepared)) == set()
    poll(lambda: e.sizes() == base, f"the engine's maps back to {base} (now {e.sizes()})")
