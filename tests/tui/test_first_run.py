"""A first run that never dead-ends: a typed reference runs without a search hit, a search that names a
registry asks that registry (and says so when it fails), and an empty container list says what to do next."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.images import is_loopback_registry, registry_of, typed_reference
from app.screens.main import MainScreen, first_run_hint
from app.tui import PortsideApp
from tests.tui.conftest import Engine, main_screen, wait_for

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(("text", "expected"), [
    ("nginx", None),  # a word is a search
    ("team/app", None),  # so is a Docker Hub repository without a tag
    ("nginx:1.27", "nginx:1.27"),
    (f"nginx@{DIGEST}", f"nginx@{DIGEST}"),
    ("registry:5000/team/app:1.2", "registry:5000/team/app:1.2"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x"),
    ("localhost/x", "localhost/x"),
    ("[::1]:5000/x:1", "[::1]:5000/x:1"),
    ("NGINX:1", None),  # upper case is no repository
    ("nginx:", None),
    ("a b:1", None),
    (f"nginx@sha256:{'0' * 10}", None),
])
def test_typed_reference(text: str, expected: str | None) -> None:
    assert typed_reference(text) == expected


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1:5000", True), ("127.8.9.10", True), ("localhost:5000", True), ("[::1]:5000", True),
    ("localhost.example.com", False), ("10.0.0.1:5000", False), ("registry:5000", False),
    ("128.0.0.1", False),
])
def test_loopback_registries_are_insecure(host: str, loopback: bool) -> None:
    assert is_loopback_registry(host) is loopback


def test_registry_of_a_search() -> None:
    assert registry_of("127.0.0.1:5000/team") == "127.0.0.1:5000"
    assert registry_of("localhost/x") == "localhost"
    assert registry_of("team/app") is None and registry_of("nginx") is None


@pytest.mark.integration
@pytest.mark.tui
@pytest.mark.timeout(180)
async def test_typed_reference_runs_without_a_search_hit(engine: Engine, registry: Any, tmp_config_home: Any) -> None:
    """No registry configured: the typed reference of the test registry's busybox is offered first and Enter
    pulls (plain HTTP: a loopback registry) and runs it; a typed reference on a registry that does not answer
    is still offered, and the note names that registry, not Docker Hub."""
    from app.screens.new_container import NewContainerScreen

    cfg = engine.config()
    assert cfg.registries == []
    app = PortsideApp(host=engine.url, config=cfg)
    ref = f"{registry.host}/testbed/busybox:oci"
    async with app.run_test(size=(160, 45)) as pilot:
        main = main_screen(app)
        await wait_for(pilot, lambda: app.connected and main.loaded.is_set(), what="connection")
        await pilot.press("c")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, NewContainerScreen) and app.screen)
        await pilot.press(*"127.0.0.1:1/team/app:1.2")
        await wait_for(pilot, lambda: "127.0.0.1:1 not reachable" in str(screen.query_one("#search-note").render()),
                       what="the typed registry named as unreachable")
        note = str(screen.query_one("#search-note").render())
        assert "Docker Hub" not in note, note
        assert screen.shown[0].source == "reference" and screen.shown[0].reference == "127.0.0.1:1/team/app:1.2"

        search = screen.query_one("#image-search")
        search.value = ""  # type: ignore[attr-defined]
        await pilot.press(*ref)
        await wait_for(pilot, lambda: screen.shown and screen.shown[0].reference == ref, what="the typed reference")
        assert screen.shown[0].source == "reference"
        await pilot.press("enter")
        cid = await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and main.selected_id and any(
            c["Id"] == main.selected_id and c["Image"] == ref for c in engine.api.containers(all=True))
            and main.selected_id, timeout=90, what="a container of the typed reference selected")
        assert engine.api.inspect_container(cid)["Config"]["Image"] == ref
        assert not [n for n in app._notifications if n.severity == "error"]
        engine.api.remove_container(cid, force=True)


@pytest.mark.integration
@pytest.mark.tui
@pytest.mark.timeout(120)
async def test_empty_container_list_shows_the_first_run_hint(engine: Engine, tmp_config_home: Any) -> None:
    """The hint is there exactly while the list has no container: it goes when one appears, and comes back when
    the last one goes. It names the keys as configured."""
    cfg = engine.config()
    cfg.keys = {"run_nginx": "W"}
    app = PortsideApp(host=engine.url, config=cfg)
    async with app.run_test(size=(160, 45)) as pilot:
        main = main_screen(app)
        await wait_for(pilot, lambda: app.connected and main.loaded.is_set(), what="connection")
        hint = main.query_one("#first-run")
        await pilot.pause(0.2)
        assert hint.display is (not main.container_list.rows_by_id)
        text = first_run_hint(app)
        assert "W[/] runs nginx" in text and "New container" in text and "-H URL" in text

        hc = engine.api.create_host_config(network_mode="none")
        cid = engine.api.create_container(engine.busybox, ["true"], name=f"pst-first-{uuid.uuid4().hex[:6]}",
                                          host_config=hc)["Id"]
        await wait_for(pilot, lambda: cid in main.container_list.rows_by_id, what="the new container listed")
        await pilot.pause(0.1)
        assert hint.display is False
        engine.api.remove_container(cid, force=True)
        await wait_for(pilot, lambda: cid not in main.container_list.rows_by_id, what="the container gone")
        await pilot.pause(0.1)
        assert hint.display is (not main.container_list.rows_by_id)
        if not main.container_list.rows_by_id:
            assert "No containers yet" in str(hint.render())
