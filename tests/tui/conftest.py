"""Fixtures of the TUI tests: a private dockerd holding the test bed's busybox and nginx, and Pilot helpers."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from app.config import Config
from app.screens.main import MainScreen
from app.screens.resources import TableScreen
from app.widgets.settings_pane import SettingsPane
from tests.conftest import TestBed
from tests.testbed import dockerd, podman
from tests.testbed.registry import Registry


@dataclass
class Engine:
    """An Engine API endpoint under test, with the references its test images go by."""

    url: str
    api: Any  # docker.APIClient
    busybox: str
    nginx: str
    kind: str = ""  # "portside", "dockerd" or "podman": for what one of them lacks

    def skip_on(self, kind: str, lacks: str) -> None:
        """Skip the test on the engine `kind`, which lacks what `lacks` says."""
        if self.kind == kind:
            pytest.skip(f"{kind} lacks {lacks}")

    def publishes_all(self, data: dict[str, Any], port: str) -> bool:
        """The container (inspect's `data`) was created with its exposed ports published. Podman resolves
        PublishAllPorts into bindings at create and then reports it false: there the binding counts."""
        if self.kind == "podman":
            return bool((data["HostConfig"].get("PortBindings") or {}).get(port))
        return data["HostConfig"]["PublishAllPorts"] is True

    def config(self) -> Config:
        # Docker Hub stays unasked: tests reach no address outside 127.0.0.0/8.
        return Config(nginx_image=self.nginx, registries=[], log_tail=1000, hub_search=False)

    def run(self, cmd: list[str], name: str | None = None, **host: Any) -> str:
        """Create and start a busybox container (no network unless asked) and return its id."""
        name = name or f"pst-{uuid.uuid4().hex[:8]}"
        hc = self.api.create_host_config(network_mode=host.pop("network_mode", "none"), **host)
        cid: str = self.api.create_container(self.busybox, cmd, name=name, host_config=hc)["Id"]
        self.api.start(cid)
        return cid


def _pull_test_images(api: Any, registry: Registry) -> dict[str, str]:
    refs = {}
    for name in ("busybox", "nginx"):
        repo = f"{registry.host}/testbed/{name}"
        api.pull(repo, tag="latest")
        refs[name] = f"{repo}:latest"
    return refs


@pytest.fixture(scope="session")
def dockerd_engine(registry: Registry) -> Iterator[Engine]:
    """Debian's dockerd, private to this session, with busybox and nginx pulled from the test registry."""
    if not dockerd.available():
        pytest.skip("dockerd (Debian's docker.io) is not installed or we are not root")
    import docker

    d = dockerd.make(bridge=True)
    try:
        d.start()
        api = docker.APIClient(base_url=d.url, version="auto", timeout=120)
        refs = _pull_test_images(api, registry)
        yield Engine(d.url, api, refs["busybox"], refs["nginx"], "dockerd")
    finally:
        d.stop()


@pytest.fixture(scope="session")
def podman_engine(registry: Registry, testbed: TestBed) -> Iterator[Engine]:
    """Podman's Docker-compatible API (`podman system service`), fenced (tests.testbed.podman), with busybox and
    nginx pulled from the test registry."""
    if not podman.available():
        pytest.skip("podman (with runc and skopeo) is not installed, or we are not root")
    import docker

    with podman.fenced(testbed.layouts["busybox"], (registry.host,), service=True) as pm:
        api = docker.APIClient(base_url=pm.url, version="auto", timeout=120)
        refs = _pull_test_images(api, registry)
        yield Engine(pm.url, api, refs["busybox"], refs["nginx"], "podman")


@pytest.fixture(scope="session")
def portside_engine(registry: Registry) -> Iterator[Engine]:
    """portside's own engine, embedded in this process (DaemonThread, the TUI's in-process mode), with busybox
    and nginx pulled from the test registry. Private roots, a `pst` bridge and a portside-test cgroup parent."""
    import os

    if os.geteuid() != 0:
        pytest.skip("the portside engine needs root")
    import docker

    from engine.daemon import DaemonConfig, DaemonThread
    from tests.api.conftest import new_daemon, remove_daemon_dirs

    d = new_daemon()
    cfg = DaemonConfig(data_root=d.data_root, exec_root=d.exec_root, hosts=[d.host], bridge=d.bridge,
                       ip_forward=False, cgroup_parent=f"portside-test-{d.bridge}",
                       insecure_registries=[registry.host])
    thread = DaemonThread(cfg)
    try:
        thread.start()
        api = docker.APIClient(base_url=d.host, version="auto", timeout=120)
        refs = _pull_test_images(api, registry)
        yield Engine(d.host, api, refs["busybox"], refs["nginx"], "portside")
    finally:
        thread.stop()
        d.cleanup_containers()
        d.destroy_network_state()
        remove_daemon_dirs(d)


async def wait_for(pilot: Any, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Let the app run until `predicate()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.05)


S = TypeVar("S")


async def open_screen(pilot: Any, key: str, kind: type[S]) -> S:
    """Press `key` and wait for the screen it opens."""
    await pilot.press(key)
    app = pilot.app
    screen: S = await wait_for(pilot, lambda: isinstance(app.screen, kind) and app.screen, what=kind.__name__)
    return screen


async def confirm_yes(pilot: Any, key: str) -> None:
    """Press `key`, wait for its confirmation dialog and answer yes."""
    from app.screens.confirm import ConfirmScreen

    await open_screen(pilot, key, ConfirmScreen)
    await pilot.press("y")


def row_keys(screen: TableScreen) -> list[str]:
    return [str(k.value) for k in screen.table.rows]


async def cursor_to(pilot: Any, screen: TableScreen, key: str) -> None:
    """Wait for the row `key` on a resource screen and put the cursor on it, ready for a key."""
    await wait_for(pilot, lambda: key in row_keys(screen), what=f"{key} listed")
    screen.table.move_cursor(row=row_keys(screen).index(key))
    await pilot.pause()
    assert screen.current_key == key


def main_screen(app: Any) -> MainScreen:
    screen = app.screen
    assert isinstance(screen, MainScreen)
    return screen


async def select_container(pilot: Any, cid: str) -> MainScreen:
    """Wait for the container in the main screen's list and select it."""
    main = main_screen(pilot.app)
    await wait_for(pilot, lambda: main.tabs_built and cid in main.container_list.rows_by_id,
                   what="the container in the list")
    assert main.container_list.select_id(cid)
    await wait_for(pilot, lambda: main.selected_id == cid, what="the selection")
    return main


async def settings_settled(pilot: Any, main: MainScreen, cid: str, timeout: float = 30.0) -> SettingsPane:
    """Wait until the Settings pane holds `cid` with no reload of it still coming. A selection and a save each
    load the pane (a recreate: twice), and an app that exits while a load mounts its rows crashes in Textual's
    Select (NoMatches '#label' in Select._on_mount, seen once); a form edited meanwhile would be rebuilt."""
    pane = main.settings_pane
    app = pilot.app

    def settled() -> bool:
        loading = [w for w in app.workers if w.group == "inspect" and not w.is_finished]
        return not loading and main._message_queue.empty() and pane.container_id == cid

    await wait_for(pilot, settled, timeout, what=f"the settings of {cid[:12]} loaded")
    return pane


async def open_settings(pilot: Any, cid: str) -> tuple[MainScreen, SettingsPane]:
    """Select the container and show its Settings tab, loaded."""
    main = await select_container(pilot, cid)
    main.query_one("#tabs").active = "tab-settings"  # type: ignore[attr-defined]
    return main, await settings_settled(pilot, main, cid)


@pytest.fixture
def tmp_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty XDG config home, so a user's own config file cannot change what the tests see."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PORTSIDE_CONFIG", raising=False)
    return tmp_path / "xdg"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# PORTSIDE_TUI_ENGINES=dockerd,portside,podman chooses; by default every engine there is (one not installed skips).
ENGINES = [e for e in os.environ.get("PORTSIDE_TUI_ENGINES", "portside,dockerd,podman").split(",") if e]


# Podman runs the flows marked `every_engine` (a representative subset: every flow on it would add ~15 minutes to the
# suite); PORTSIDE_TUI_PODMAN=all runs all of them on it.
PODMAN_ALL = os.environ.get("PORTSIDE_TUI_PODMAN") == "all"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PODMAN_ALL:
        return
    left = [i for i in items if _podman_param(i) and i.get_closest_marker("every_engine") is None]
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = [i for i in items if i not in left]


def _podman_param(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("engine") == "podman"


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """Each Pilot flow runs against every engine we have: portside's own, Debian's dockerd and Podman's API."""
    value: Engine = request.getfixturevalue(f"{request.param}_engine")
    before = {c["Id"] for c in value.api.containers(all=True)}
    yield value
    import docker

    # What the test made goes, also when it failed. Podman refuses to remove a container another one shares a
    # namespace with (`network_mode: container:…`) before that one: newest first, then whatever is left.
    made = [c["Id"] for c in value.api.containers(all=True) if c["Id"] not in before]
    for attempt in range(2):
        for cid in list(made):
            try:
                value.api.remove_container(cid, force=True)
                made.remove(cid)
            except docker.errors.NotFound:
                made.remove(cid)
            except docker.errors.APIError:
                if attempt:
                    raise
