"""Pilot flows of the main screen against a real engine: list, live logs, stats, lifecycle keys, errors."""

from __future__ import annotations

import uuid

import pytest
from textual.widgets import Input

from app.messages import ActionFailed
from app.screens.main import MainScreen
from app.tui import PortsideApp
from tests.tui.conftest import Engine, main_screen, open_settings, select_container, settings_settled, wait_for

# A PID 1 that ends on SIGTERM at once, so `stop` does not wait out its 10 s grace period.
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]

pytestmark = [pytest.mark.integration, pytest.mark.tui, pytest.mark.timeout(120)]


@pytest.mark.every_engine
async def test_list_shows_containers_and_logs_appear_live(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """A container started outside the app shows up by event, and the lines it prints arrive while it runs."""
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 45)) as pilot:
        main = main_screen(app)
        await wait_for(pilot, lambda: app.connected and main.loaded.is_set(), what="connection")
        name = f"pst-logs-{uuid.uuid4().hex[:6]}"
        cid = engine.run(["sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"], name)
        main = await select_container(pilot, cid)
        row = main.container_list.rows_by_id[cid]
        assert row.name == name and row.state == "running"
        assert row.image == engine.busybox
        await wait_for(pilot, lambda: "line 2" in main.log_view.lines, what="first lines")
        seen = len(main.log_view.lines)
        await wait_for(pilot, lambda: len(main.log_view.lines) >= seen + 3, what="more lines, live")
        lines = main.log_view.lines
        assert lines == [f"line {i}" for i in range(len(lines))]  # in order, none lost, none doubled
        # search highlights and n/N move between matches
        main.log_view.focus()
        assert main.log_view.search(r"line [12]$") == 2
        await pilot.press("n")
        assert main.log_view.match_index == 0


@pytest.mark.every_engine
async def test_stats_show_nonzero_memory(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """The Stats tab graphs memory from the stats stream, computed like `docker stats` (non-zero for a shell)."""
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 45)) as pilot:
        cid = engine.run(SLEEPER)
        main = await select_container(pilot, cid)
        main.query_one("#tabs").active = "tab-stats"
        await wait_for(pilot, lambda: main.history.last and main.history.last.mem_used > 0, what="memory > 0")

        def used() -> float:
            # the label follows the sample on the screen's next turn: it may still show an earlier (0B) one
            label = str(main.query_one("#label-mem").render())
            if "Memory:" not in label:
                return 0.0
            text = label.split(":")[1].split("/")[0].strip()
            return float(text.rstrip("KMGiB")) if text[:1].isdigit() else 0.0

        assert await wait_for(pilot, used, what="a non-zero memory label") > 0
        assert main.history.last.pids >= 1


@pytest.mark.every_engine
async def test_stop_start_remove_by_key(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """x stops, s starts, d then y removes: the engine and the list both agree after each key."""
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 45)) as pilot:
        cid = engine.run(SLEEPER)
        main = await select_container(pilot, cid)
        main.container_list.focus()

        def state() -> str:
            return main.container_list.rows_by_id[cid].state if cid in main.container_list.rows_by_id else ""

        await pilot.press("x")
        await wait_for(pilot, lambda: state() == "exited", timeout=30, what="exited")
        assert engine.api.inspect_container(cid)["State"]["Running"] is False
        main.container_list.select_id(cid)
        await pilot.press("s")
        await wait_for(pilot, lambda: state() == "running", what="running again")
        assert engine.api.inspect_container(cid)["State"]["Running"] is True
        main.container_list.select_id(cid)
        await pilot.press("d")
        await pilot.press("y")
        await wait_for(pilot, lambda: cid not in main.container_list.rows_by_id, what="removed from the list")
        assert not [c for c in engine.api.containers(all=True) if c["Id"] == cid]


@pytest.mark.every_engine
async def test_marked_containers_stop_together(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """Space marks rows; a verb then applies to every marked container."""
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 45)) as pilot:
        tag = uuid.uuid4().hex[:6]
        ids = [engine.run(SLEEPER, f"pst-multi-{tag}-{i}") for i in range(2)]
        main = main_screen(app)
        await wait_for(pilot, lambda: all(i in main.container_list.rows_by_id for i in ids), what="both listed")
        main.container_list.set_filter(f"pst-multi-{tag}")
        main.container_list.focus()
        await pilot.pause(0.1)
        main.container_list.move_cursor(row=0)
        await pilot.press("space", "space", "x")
        await wait_for(
            pilot,
            lambda: all(main.container_list.rows_by_id[i].state == "exited" for i in ids),
            timeout=30,
            what="both exited",
        )


@pytest.mark.every_engine
async def test_errors_are_messages_not_crashes(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """Starting a container whose command does not exist shows Docker's error; the app keeps running."""
    app = PortsideApp(host=engine.url, config=engine.config())
    failures: list[ActionFailed] = []
    async with app.run_test(size=(160, 45), message_hook=lambda m: isinstance(m, ActionFailed) and failures.append(m)) as pilot:  # noqa: E501
        hc = engine.api.create_host_config(network_mode="none")
        cid = engine.api.create_container(engine.busybox, ["/no/such/binary"], host_config=hc,
                                          name=f"pst-bad-{uuid.uuid4().hex[:6]}")["Id"]
        main = await select_container(pilot, cid)
        main.container_list.focus()
        await pilot.press("s")
        await wait_for(pilot, lambda: failures, what="an error message")
        assert "no such file or directory" in failures[0].error.lower()
        assert app.is_running
        assert any("no such file" in n.message.lower() for n in app._notifications)


async def test_unreachable_engine_shows_a_banner(tmp_path, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """A socket nobody listens on: the banner says the connection is lost and the app keeps retrying."""
    app = PortsideApp(host=f"unix://{tmp_path}/nothing.sock", config=None)
    async with app.run_test(size=(120, 30)) as pilot:
        main = main_screen(app)
        await wait_for(pilot, lambda: main.banner.display, what="the banner")
        assert "Connection to the engine lost" in str(main.banner.render())
        assert "disconnected" in app.sub_title


@pytest.mark.every_engine
async def test_one_key_nginx_runs_and_answers_200(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """`w` pulls nginx with per-layer progress, runs it with port 80 published, selects it, shows its URL -> 200."""
    for img in engine.api.images(name=engine.nginx.rsplit(":", 1)[0]):
        for c in engine.api.containers(all=True, filters={"ancestor": img["Id"]}):
            engine.api.remove_container(c["Id"], force=True)
        engine.api.remove_image(img["Id"], force=True)  # so the flow has to pull it
    from app.screens.pull import PullScreen

    app = PortsideApp(host=engine.url, config=engine.config())
    seen: list[object] = []
    hook = lambda m: isinstance(m, PullScreen.Step | PullScreen.Finished | PullScreen.Progress) and seen.append(m)  # noqa: E731
    async with app.run_test(size=(160, 45), message_hook=hook) as pilot:
        main = main_screen(app)
        await wait_for(pilot, lambda: app.connected and main.loaded.is_set(), what="connection")
        await pilot.press("w")
        finished = await wait_for(pilot, lambda: [m for m in seen if isinstance(m, PullScreen.Finished)], timeout=60,
                                  what="the pull and run to finish")
        assert not finished[0].error, finished[0].error
        steps = [m.text for m in seen if isinstance(m, PullScreen.Step)]
        assert steps[0].startswith("Pulling") and "Creating container" in steps
        assert any(isinstance(m, PullScreen.Progress) for m in seen), "no per-layer progress was shown"
        await wait_for(pilot, lambda: app.screen is main, what="back on the main screen")
        cid = finished[0].container_id
        await wait_for(pilot, lambda: main.selected_id == cid, what="the new container selected")
        await wait_for(pilot, lambda: main.container_list.rows_by_id[cid].state == "running", what="running")
        assert main.container_list.rows_by_id[cid].name.startswith("nginx")
        assert engine.publishes_all(engine.api.inspect_container(cid), "80/tcp")
        if engine.kind == "podman":
            # Podman forwards a published port with iptables DNAT (CNI's portmap), which the test fence leaves out
            pytest.skip("the fenced podman forwards no published port (no iptables on the host)")
        await wait_for(pilot, lambda: any(s == "200" for s in main.url_states.values()), timeout=30,
                       what="an HTTP 200 from the published URL")
        url = next(u for u, s in main.url_states.items() if s == "200")
        assert url.startswith("http://127.0.0.1:")
        assert f"{url} -> 200" in str(main.query_one("#urls").render())
        engine.api.remove_container(cid, force=True)


async def test_new_container_screen_finds_local_and_recommended(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """Typing narrows local images and the recommended list (nginx first); no error appears (Docker Hub is not
    asked in tests: hub_search is off)."""
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 45)) as pilot:
        from app.screens.new_container import NewContainerScreen

        main = main_screen(app)
        await wait_for(pilot, lambda: app.connected and main.loaded.is_set(), what="connection")
        await pilot.press("c")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, NewContainerScreen) and app.screen)
        await wait_for(pilot, lambda: screen.shown, what="recommended list")
        assert screen.by_source["recommended"][0].reference == "nginx"
        await pilot.press(*"busybox")
        await wait_for(pilot, lambda: screen.by_source.get("local") and all(
            "busybox" in c.reference for c in screen.by_source["local"]), what="local busybox")
        assert screen.shown[0].reference == engine.busybox.rsplit(":", 1)[0]
        await pilot.pause(1.0)
        assert not [n for n in app._notifications if n.severity == "error"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.every_engine
async def test_editing_a_port_recreates_keeping_env_and_command(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """Settings > Ports: a new host port recreates the container there; env, command and labels stay."""
    import urllib.request

    from app.screens.confirm import ConfirmScreen
    from app.screens.main import http_check

    old_port, new_port = _free_port(), _free_port()
    name = f"pst-web-{uuid.uuid4().hex[:6]}"
    cmd = ["sh", "-c", "echo started with FOO=$FOO; exec nginx -g 'daemon off;'"]
    hc = engine.api.create_host_config(port_bindings={80: ("127.0.0.1", old_port)})
    cid = engine.api.create_container(engine.nginx, cmd, name=name, environment={"FOO": "bar baz"},
                                      labels={"keep": "me"}, host_config=hc, ports=[80])["Id"]
    engine.api.start(cid)
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 50)) as pilot:
        main, pane = await open_settings(pilot, cid)
        row = pane.ports_editor.rows[0]
        assert str(row.value()) == f"80/tcp -> 127.0.0.1:{old_port}"
        # a bad port is caught before anything is sent
        hport = row.query_one(".port-hport", Input)
        hport.value = "99999"
        pane.query_one("#set-name").focus()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "65535" in str(pane.query_one("#set-errors").render()), what="a range error")
        hport.value = str(new_port)
        await pilot.press("ctrl+s")

        def state() -> str:  # what the screen said, should a wait below time out
            return f"errors: {pane.query_one('#set-errors').render()}; notes: {[n.message for n in app._notifications]}"

        try:
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            await pilot.press("y")
            await wait_for(pilot, lambda: any(n.message == "Settings saved" for n in app._notifications),
                           timeout=60, what="the settings saved")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {state()}") from None
        new_id = await wait_for(pilot, lambda: main.selected_id not in (None, cid) and main.selected_id,
                                what="the recreated container selected")
        data = engine.api.inspect_container(new_id)
        assert data["Name"] == f"/{name}"
        assert data["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(new_port)}]}
        assert "FOO=bar baz" in data["Config"]["Env"]
        assert data["Config"]["Cmd"] == cmd
        assert data["Config"]["Labels"]["keep"] == "me"
        assert data["State"]["Running"], (data["State"], engine.api.logs(new_id)[-2000:])
        assert not [c for c in engine.api.containers(all=True) if c["Id"] == cid]  # the old one is gone
        if engine.kind != "podman":  # the fenced podman forwards no published port (no iptables on the host)
            await wait_for(pilot, lambda: http_check(f"http://127.0.0.1:{new_port}/") == "200",
                           what="200 on new port")
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    f"http://127.0.0.1:{new_port}/", timeout=5) as resp:
                assert resp.status == 200
        await wait_for(pilot, lambda: "started with FOO=bar baz" in main.log_view.lines, what="its log")
        await settings_settled(pilot, main, new_id)
        engine.api.remove_container(new_id, force=True)


async def test_compose_stack_groups_and_stops_as_one(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """Containers labelled as one compose project sit together under the project's name, and `g` marks the whole
    stack so one key stops it, leaving other containers alone."""
    tag = uuid.uuid4().hex[:6]
    project = f"pststack{tag}"
    ids = []
    for service in ("web", "db"):
        name = f"{project}-{service}-1"
        hc = engine.api.create_host_config(network_mode="none")
        cid = engine.api.create_container(
            engine.busybox, SLEEPER, name=name, host_config=hc,
            labels={"com.docker.compose.project": project, "com.docker.compose.service": service},
        )["Id"]
        engine.api.start(cid)
        ids.append(cid)
    other = engine.run(SLEEPER, f"pst-outside-{tag}")
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 45)) as pilot:
        main = main_screen(app)
        cl = main.container_list
        await wait_for(pilot, lambda: all(i in cl.rows_by_id for i in [*ids, other]), what="all listed")
        assert {cl.rows_by_id[i].project for i in ids} == {project}
        assert cl.rows_by_id[ids[0]].service == "web"
        # the filter knows the project; the stack's rows are adjacent in the list
        cl.set_filter(tag)
        await pilot.pause(0.1)
        shown = cl._shown
        assert set(shown) == {*ids, other}
        assert abs(shown.index(ids[0]) - shown.index(ids[1])) == 1
        assert str(cl.get_cell(ids[0], "name")) == f"{project} / web-1"
        cl.focus()
        assert cl.select_id(ids[1])
        await pilot.press("g")
        assert cl.marked == set(ids)
        await pilot.press("x")
        await wait_for(pilot, lambda: all(cl.rows_by_id[i].state == "exited" for i in ids), timeout=30,
                       what="the stack exited")
        assert cl.rows_by_id[other].state == "running"
    for cid in [*ids, other]:
        engine.api.remove_container(cid, force=True)


async def test_registry_search_tag_picker_runs_the_chosen_tag(engine: Engine, registry, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """With the test registry configured (and one that does not answer), typing finds the registry's busybox; the
    unreachable one is a note, not an error; t lists its tags, typing filters them, Enter pulls and runs that tag."""
    from app.screens.new_container import NewContainerScreen, TagScreen

    cfg = engine.config()
    cfg.registries = [registry.host, "127.0.0.1:1"]
    app = PortsideApp(host=engine.url, config=cfg)
    ref = f"{registry.host}/testbed/busybox"
    async with app.run_test(size=(160, 45)) as pilot:
        main = main_screen(app)
        await wait_for(pilot, lambda: app.connected and main.loaded.is_set(), what="connection")
        await pilot.press("c")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, NewContainerScreen) and app.screen)
        await pilot.press(*"busybox")
        await wait_for(pilot, lambda: screen.by_source.get(f"registry {registry.host}"), what="registry results")
        assert [c.reference for c in screen.by_source[f"registry {registry.host}"]] == [ref]
        await wait_for(pilot, lambda: "127.0.0.1:1 not reachable" in str(screen.query_one("#search-note").render()),
                       what="the unreachable registry noted")
        await pilot.press("down")
        screen.results.highlighted = next(i for i, c in enumerate(screen.shown) if c.source.startswith("registry"))
        await pilot.press("t")
        tags = await wait_for(pilot, lambda: isinstance(app.screen, TagScreen) and app.screen, what="the tags")
        assert tags.tags[0] == "latest" and "oci" in tags.tags
        await pilot.press(*"oc")
        assert tags.shown == ["oci"]
        await pilot.press("enter")
        cid = await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and main.selected_id and any(
            c["Id"] == main.selected_id and c["Image"] == f"{ref}:oci" for c in engine.api.containers(all=True))
            and main.selected_id, timeout=60, what="a container of the chosen tag selected")
        assert engine.api.inspect_container(cid)["Config"]["Image"] == f"{ref}:oci"
        assert not [n for n in app._notifications if n.severity == "error"]


async def test_escape_hides_a_pull_that_goes_on_and_reports_its_end(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """A pull from a registry that accepts and never answers: Escape closes the dialog and the main screen works
    on; when the registry goes away the failure arrives as a message, and no container was made."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    cfg = engine.config()
    cfg.nginx_image = f"127.0.0.1:{listener.getsockname()[1]}/pst/hang:latest"
    before = {c["Id"] for c in engine.api.containers(all=True)}
    app = PortsideApp(host=engine.url, config=cfg)
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            from app.screens.pull import PullScreen

            main = main_screen(app)
            await wait_for(pilot, lambda: app.connected and main.loaded.is_set(), what="connection")
            await pilot.press("w")
            pull = await wait_for(pilot, lambda: isinstance(app.screen, PullScreen) and app.screen, what="the dialog")
            await wait_for(pilot, lambda: held, what="the engine at the registry")
            assert pull.result is None
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is main, what="the dialog hidden")
            assert pull.hidden and any("Still working" in n.message for n in app._notifications)
            await pilot.press("slash", "x", "escape")  # the main screen answers keys meanwhile
            assert main.query_one("#filter", Input).display is False
            _close(listener, held)
            await wait_for(pilot, lambda: any(n.title == f"Could not run {cfg.nginx_image}" and n.severity == "error"
                                              for n in app._notifications), timeout=90, what="the failure message")
            assert app.screen is main and pull.result is not None and pull.result[1]
    finally:
        _close(listener, held)
    assert {c["Id"] for c in engine.api.containers(all=True)} == before


def _close(listener, held) -> None:  # type: ignore[no-untyped-def]
    """Shut the listener first: a plain close leaves a thread blocked in accept() holding it open (Linux)."""
    import contextlib
    import socket

    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    for s in list(held):
        s.close()
