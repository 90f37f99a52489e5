"""The Build flow: the form's checks and Tab completion (no engine), the stream parser on what each engine really
sends for a build (recorded here from docker-py's api.build, then also cut into other pieces), and Pilot runs of
the Images screen's `b` against each engine: a build streamed step by step and its image run with `r`, a failing
RUN, and a build hidden with Escape, shown again with `b` and cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from textual.widgets import Input, Label, ProgressBar

from app.build_stream import (
    BuildJob,
    BuildParser,
    BuildRequest,
    Built,
    Failed,
    Output,
    Step,
    Tagged,
    check_folder,
    complete_directory,
    parse_build_args,
)
from app.screens.build import _STEP_CURRENT, _STEP_DONE, _STEP_FAILED, BuildFormScreen, BuildLog, BuildScreen
from app.screens.confirm import ConfirmScreen
from app.screens.resources import ImagesScreen
from app.tui import PortsideApp
from tests.testbed.registry import Registry
from tests.tui.conftest import Engine, main_screen, open_screen, row_keys, wait_for

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- the form, without an engine ---

def test_build_args_are_name_value_pairs_split_at_commas_before_a_name() -> None:
    assert parse_build_args("") == {}
    assert parse_build_args("  A=1 ") == {"A": "1"}
    assert parse_build_args("A=1, B=two words,C=") == {"A": "1", "B": "two words", "C": ""}
    # a value keeps commas and '=' that no NAME= follows
    assert parse_build_args("NO_PROXY=a,b,c, URL=http://x/?q=1") == {"NO_PROXY": "a,b,c", "URL": "http://x/?q=1"}
    for bad in ("A", "=1", "1A=x", "A B=1"):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            parse_build_args(bad)


def test_tab_completes_folders_as_a_shell_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for d in ("app", "apple", "apricot/inner", ".hidden", "bin"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "apfile").write_text("not a folder")
    (tmp_path / "linked").symlink_to(tmp_path / "bin")
    root = f"{tmp_path}/"
    assert complete_directory(root + "apr") == (root + "apricot/", [])  # one match: completed, with its '/'
    assert complete_directory(root + "ap") == (root + "ap", ["app", "apple", "apricot"])  # files never match
    assert complete_directory(root + "app") == (root + "app", ["app", "apple"])
    assert complete_directory(root + "apricot/") == (root + "apricot/inner/", [])
    assert complete_directory(root + "li") == (root + "linked/", [])  # a symlink to a folder is a folder
    assert complete_directory(root + "zz") == (root + "zz", [])
    assert complete_directory(root + "nowhere/x") == (root + "nowhere/x", [])
    assert complete_directory(root) == (root, ["app", "apple", "apricot", "bin", "linked"])  # no hidden ones
    assert complete_directory(root + ".h") == (root + ".hidden/", [])
    # relative to the working directory, and ~ kept as typed
    assert complete_directory("bi", cwd=tmp_path) == ("bin/", [])
    monkeypatch.setenv("HOME", str(tmp_path))
    assert complete_directory("~") == ("~/", [])
    assert complete_directory("~/appl") == ("~/apple/", [])


def test_the_folder_must_hold_a_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    assert check_folder(str(tmp_path / "ctx")) == (None, f"{tmp_path / 'ctx'} has no Dockerfile")
    assert check_folder(str(tmp_path / "none"))[1] == f"{tmp_path / 'none'} is not a folder"
    assert check_folder("  ")[1] == "type the folder that holds the Dockerfile"
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    assert check_folder("ctx/", cwd=tmp_path) == (tmp_path / "ctx", "")


# --- the parser, on each engine's real streams ---

def _context(where: Path, busybox: str, body: str, files: dict[str, str] | None = None) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "Dockerfile").write_text(f"FROM {busybox}\n{body}")
    for name, text in (files or {}).items():
        (where / name).write_text(text)
    return where


def _events(items: list[dict[str, Any]]) -> list[Any]:
    parser = BuildParser()
    out: list[Any] = []
    for item in items:
        out += parser.feed(item)
    return out + parser.flush()


def _recut(items: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The same stream with each text cut into `size`-character pieces (an engine may flush anywhere)."""
    out: list[dict[str, Any]] = []
    for item in items:
        if set(item) == {"stream"}:
            text = item["stream"]
            out += [{"stream": text[i : i + size]} for i in range(0, len(text), size)]
        else:
            out.append(item)
    return out


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_parser_on_real_build_streams(engine: Engine, tmp_path: Path) -> None:
    tag = f"pst-build-{uuid.uuid4().hex[:8]}:v1"
    marker = f"marker-{uuid.uuid4().hex[:6]}"
    ok = _context(tmp_path / "ok", engine.busybox, f"COPY note.txt /note.txt\nRUN echo {marker} && cat /note.txt\n"
                  "RUN printf 'counting 1\\rcounting 2\\n'\nRUN printf 'no line end'\n",
                  {"note.txt": "from the context\n"})
    bad = _context(tmp_path / "bad", engine.busybox, "RUN echo before-the-failure && exit 3\nRUN echo never\n")
    before = _snapshot(engine)
    try:
        good_items = list(engine.api.build(path=str(ok), tag=tag, rm=True, decode=True))
        bad_items = list(engine.api.build(path=str(bad), rm=True, decode=True))
        image_id = engine.api.inspect_image(tag)["Id"]
    finally:
        _remove_new(engine, before)

    events = _events(good_items)
    steps = [e for e in events if isinstance(e, Step)]
    assert [(s.n, s.total) for s in steps] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert steps[0].text == f"FROM {engine.busybox}" and steps[1].text == "COPY note.txt /note.txt"
    lines = [e.line for e in events if isinstance(e, Output)]
    assert marker in lines and "from the context" in lines
    assert "counting 2" in lines and not any("counting 1" in line for line in lines)  # as a terminal shows it
    assert any(line.startswith("no line end") for line in lines)  # its line ends with the engine's next message
    built = [e for e in events if isinstance(e, Built)]
    assert len(built) == 1 and image_id.endswith(built[0].image_id.removeprefix("sha256:"))
    assert [e for e in events if isinstance(e, Tagged)] == [Tagged(tag)]
    assert not [e for e in events if isinstance(e, Failed)]
    # the marker comes after its step and before the next one
    order = [e for e in events if isinstance(e, Step) or (isinstance(e, Output) and e.line == marker)]
    assert order.index(Output(marker)) == 3

    failed = _events(bad_items)
    assert [(s.n, s.total) for s in failed if isinstance(s, Step)] == [(1, 3), (2, 3)]
    assert "before-the-failure" in [e.line for e in failed if isinstance(e, Output)]
    assert isinstance(failed[-1], Failed) and failed[-1].code == 3 and "exit 3" in failed[-1].message
    assert not [e for e in failed if isinstance(e, Built | Tagged)]

    for size in (1, 2, 3, 7, 50):  # the same events whatever the pieces
        assert _events(_recut(good_items, size)) == events, size
        assert _events(_recut(bad_items, size)) == failed, size


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_parser_on_a_build_that_pulls_its_base(engine: Engine, registry: Registry, tmp_path: Path) -> None:
    """A FROM the engine does not have is pulled inside the build: the pull's milestones become lines (as
    `docker pull` prints them), its byte counts do not."""
    base = f"{registry.host}/testbed/layers:latest"
    with contextlib.suppress(docker.errors.NotFound):
        engine.api.remove_image(base)
    ctx = tmp_path / "pulls"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN echo after-the-pull\n")
    before = _snapshot(engine)
    try:
        items = list(engine.api.build(path=str(ctx), rm=True, decode=True))
    finally:
        _remove_new(engine, before)
        with contextlib.suppress(docker.errors.NotFound):
            engine.api.remove_image(base)
    assert any(i.get("progressDetail") for i in items)  # the engine did send byte counts
    events = _events(items)
    lines = [e.line for e in events if isinstance(e, Output)]
    assert "latest: Pulling from testbed/layers" in lines
    assert any(line.endswith(": Pull complete") for line in lines)
    assert not any(": Downloading" in line or ": Extracting" in line for line in lines)
    assert lines.index("latest: Pulling from testbed/layers") < lines.index("after-the-pull")
    assert [(e.n, e.total) for e in events if isinstance(e, Step)] == [(1, 2), (2, 2)]
    assert len([e for e in events if isinstance(e, Built)]) == 1


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_job_sends_target_and_build_args_and_keeps_the_last_lines(engine: Engine, tmp_path: Path) -> None:
    """BuildJob on its own (as the dialog's thread runs it): the target stage and the build args reach the engine,
    and a long output keeps only the last `max_lines` lines with the step lines still marked right."""
    ctx = _context(tmp_path / "stages", engine.busybox,
                   "ARG COUNT\nRUN seq 1 $COUNT\nRUN echo first-stage-done\n"
                   "FROM first AS second\nRUN echo second-stage\n")
    dockerfile = ctx / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("\n", " AS first\n", 1))
    tag = f"pst-build-{uuid.uuid4().hex[:8]}:first"
    job = BuildJob(BuildRequest(ctx, tag, {"COUNT": "2500"}, "first"))
    job.max_lines = 1000
    seen: list[Any] = []
    job.attach(seen.append)
    before = _snapshot(engine)
    try:
        job.run(engine.api)
        assert job.ok, job.error
        assert engine.api.inspect_image(tag)["Id"].endswith(job.image_id.removeprefix("sha256:"))
    finally:
        _remove_new(engine, before)
    assert job.finished and seen[-1] is None and job.tags == [tag]
    assert "first-stage-done" in job.lines and not any("second-stage" in line for line in job.lines)
    assert job.step is not None and job.step.text == "RUN echo first-stage-done" and job.step.n == job.step.total
    # 2500 lines of seq: the first ones let go, the last kept, every marked line still a step line
    assert job.dropped > 0 and len(job.lines) <= 1000 and "2500" in job.lines and "1" not in job.lines
    marked = [job.lines[n - job.dropped] for n, kind in job.kinds.items() if kind == "step"]
    assert marked and all(line.startswith("Step ") for line in marked)
    assert job.lines[job.step_lines[-1] - job.dropped] == job.step.line
    assert [e for e in seen if isinstance(e, Step)][-1] == job.step
    backlog: list[tuple[list[str], int]] = []
    job.attach(None, backlog=lambda lines, first: backlog.append((lines, first)))
    assert backlog == [(job.lines, job.dropped)]  # what a view opened now starts from


# --- Pilot, against each engine ---

async def _start_build(pilot: Any, images: ImagesScreen, folder: Path, tag: str = "", args: str = "") -> BuildScreen:
    """Open the form with b, fill it by keys (the folder by Tab completion) and build."""
    form = await open_screen(pilot, "b", BuildFormScreen)
    path = form.query_one("#build-path", Input)
    path.value = ""
    name = folder.name
    await pilot.press(*f"{folder.parent}/{name[:-2]}", "tab")
    await wait_for(pilot, lambda: path.value == f"{folder}/", what="the folder completed")
    await pilot.press("tab")  # nothing left to complete: on to the tag
    await wait_for(pilot, lambda: form.focused is not None and form.focused.id == "build-tag", what="the tag focused")
    await pilot.press(*tag, "tab", *args, "enter")
    screen: BuildScreen = await wait_for(pilot, lambda: isinstance(pilot.app.screen, BuildScreen) and pilot.app.screen,
                                         what="the build dialog")
    return screen


def _line_style(log: BuildLog, index: int) -> Any:
    """The style the view paints line `index` with (scrolled there first)."""
    log.scroll_to(y=index, animate=False, immediate=True)
    return next(iter(log.render_line(index - log.scroll_offset.y))).style


def _image_ids(engine: Engine) -> set[str]:
    return {i["Id"] for i in engine.api.images(all=True)}


def _container_ids(engine: Engine) -> set[str]:
    return {c["Id"] for c in engine.api.containers(all=True)}


def _snapshot(engine: Engine) -> tuple[set[str], set[str]]:
    return _container_ids(engine), _image_ids(engine)


def _remove_new(engine: Engine, before: tuple[set[str], set[str]]) -> None:
    """What the test's builds made: the container a failed step keeps (the classic builder's rm without forcerm),
    then the tagged images and the intermediate ones a failed build keeps (children first: an image with children
    cannot go)."""
    for cid in _container_ids(engine) - before[0]:
        with contextlib.suppress(docker.errors.APIError):
            engine.api.remove_container(cid, force=True)
    for _ in range(10):
        new = _image_ids(engine) - before[1]
        if not new:
            return
        for image_id in new:
            with contextlib.suppress(docker.errors.APIError):
                engine.api.remove_image(image_id, force=True)
    raise AssertionError(f"images left behind: {_image_ids(engine) - before[1]}")


@pytest.mark.integration
@pytest.mark.tui
@pytest.mark.timeout(240)
async def test_build_streams_steps_and_r_runs_the_image(engine: Engine, tmp_path: Path, tmp_config_home: Any) -> None:
    repo = f"pst-build-{uuid.uuid4().hex[:8]}"
    greeting = f"hello-{uuid.uuid4().hex[:6]}"
    folder = _context(tmp_path / f"ctx-{repo}", engine.busybox,
                      "ARG GREETING\nCOPY index.html /www/index.html\nRUN echo \"marker $GREETING\"\n"
                      "EXPOSE 8080\nCMD [\"busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
                      {"index.html": f"built by {repo}\n"})
    before = _snapshot(engine)
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_for(pilot, lambda: app.connected, what="connection")
            main = main_screen(app)
            images = await open_screen(pilot, "I", ImagesScreen)
            screen = await _start_build(pilot, images, folder, tag=repo, args=f"GREETING={greeting}")
            job = screen.job
            assert job.request.buildargs == {"GREETING": greeting} and job.request.path == folder
            await wait_for(pilot, lambda: job.finished, timeout=180, what="the build finished")
            assert job.ok, job.error
            log = screen.log_view
            await wait_for(pilot, lambda: len(log.lines) == len(job.lines), what="every line in the view")
            assert f"marker {greeting}" in log.lines  # the RUN's output
            steps = [log.lines[i] for i in job.step_lines]
            assert len(steps) == 6 and steps[0] == f"Step 1/6 : FROM {engine.busybox}"
            assert steps[3] == 'Step 4/6 : RUN echo "marker $GREETING"'
            bar = screen.query_one("#build-progress", ProgressBar)
            await wait_for(pilot, lambda: bar.total == 6 and bar.progress == 6,
                           what="the bar at the last step")
            assert _line_style(log, job.step_lines[2]) == _STEP_DONE
            result = str(screen.query_one("#build-result").render())
            assert job.image_id in result and f"{repo}:latest" in result
            # the new image in the Images list underneath
            await wait_for(pilot, lambda: f"{repo}:latest" in row_keys(images), what="the image listed")
            # r: back to the containers, the image running with its port published and its URL checked
            await pilot.press("r")
            cid = await wait_for(pilot, lambda: app.screen is main and main.selected_id and any(
                c["Id"] == main.selected_id and c["Image"] == f"{repo}:latest" for c in engine.api.containers())
                and main.selected_id, timeout=60, what="the built image running, selected")
            port = engine.api.inspect_container(cid)["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
            url = f"http://127.0.0.1:{port}/index.html"
            await wait_for(pilot, lambda: any(f":{port}" in u for u in main.url_states), what="the URL shown")

            def served() -> bool:
                try:
                    with NO_PROXY.open(url, timeout=2) as resp:
                        return bool(resp.read().decode() == f"built by {repo}\n")
                except OSError:
                    return False

            await wait_for(pilot, served, what="the COPY'd file served by the new container")
            engine.api.remove_container(cid, force=True)
    finally:
        _remove_new(engine, before)


@pytest.mark.integration
@pytest.mark.tui
@pytest.mark.timeout(240)
async def test_a_failing_step_stays_in_view_with_its_error(engine: Engine, tmp_path: Path,
                                                           tmp_config_home: Any) -> None:
    repo = f"pst-build-{uuid.uuid4().hex[:8]}"
    folder = _context(tmp_path / f"ctx-{repo}", engine.busybox,
                      "RUN echo started-ok\nRUN echo output-before-failing && exit 3\nRUN echo never-run\n")
    before = _snapshot(engine)
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_for(pilot, lambda: app.connected, what="connection")
            images = await open_screen(pilot, "I", ImagesScreen)
            screen = await _start_build(pilot, images, folder, tag=repo)
            job = screen.job
            await wait_for(pilot, lambda: job.finished, timeout=180, what="the build finished")
            assert job.error is not None and job.error.code == 3 and not job.ok
            error = job.error
            assert job.failed_step is not None and (job.failed_step.n, job.failed_step.total) == (3, 4)
            log = screen.log_view
            await wait_for(pilot, lambda: error.message in log.lines, what="the error in the log")
            lines = log.lines
            failing = lines.index("Step 3/4 : RUN echo output-before-failing && exit 3")
            assert lines.index("output-before-failing") > failing and "never-run" not in lines
            assert _line_style(log, failing) == _STEP_FAILED
            assert _line_style(log, lines.index(error.message)).color.name == "red"
            result = screen.query_one("#build-result", Label)
            # the dialog shows the end once it has read its message (the log's lines come apart from it)
            await wait_for(pilot, lambda: str(result.render()) == f"Step 3/4 failed: {error.message}",
                           what="the failure under the log")
            assert "red" in str(result.content)
            bar = screen.query_one("#build-progress", ProgressBar)
            assert (bar.total, bar.progress) == (4, 2)  # the steps before the failing one
            await pilot.press("r")  # nothing to run: the dialog stays, nothing starts
            await pilot.pause()
            assert app.screen is screen
            assert not engine.api.images(name=repo)
            assert not [c for c in engine.api.containers() if c["Image"].startswith(repo)]
    finally:
        _remove_new(engine, before)


@pytest.mark.integration
@pytest.mark.tui
@pytest.mark.timeout(240)
async def test_escape_hides_b_shows_again_and_c_cancels(engine: Engine, tmp_path: Path, tmp_config_home: Any) -> None:
    repo = f"pst-build-{uuid.uuid4().hex[:8]}"
    folder = _context(tmp_path / f"ctx-{repo}", engine.busybox, "RUN echo long-step-started && sleep 300\n")
    before = _snapshot(engine)
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_for(pilot, lambda: app.connected, what="connection")
            images = await open_screen(pilot, "I", ImagesScreen)
            screen = await _start_build(pilot, images, folder, tag=repo)
            job = screen.job
            await wait_for(pilot, lambda: "long-step-started" in screen.log_view.lines, timeout=120,
                           what="the RUN step running")
            assert _line_style(screen.log_view, job.step_lines[-1]) == _STEP_CURRENT
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is images, what="the dialog hidden")
            assert not job.finished and any(n.title == "Build" for n in app._notifications)
            # b shows the same build again, its lines so far included
            again = await open_screen(pilot, "b", BuildScreen)
            assert again.job is job
            await wait_for(pilot, lambda: "long-step-started" in again.log_view.lines, what="the backlog shown")
            await open_screen(pilot, "c", ConfirmScreen)
            await pilot.press("y")
            await wait_for(pilot, lambda: job.finished, timeout=60, what="the build ended")
            assert job.cancelled and job.error is None
            await wait_for(pilot, lambda: "Cancelled" in str(again.query_one("#build-result").render()),
                           what="the dialog says so")
            # the engine stopped the build and removed its container

            def leftovers() -> list[str]:
                return [c["Id"] for c in engine.api.containers(all=True) if c["Id"] not in before[0]]

            await wait_for(pilot, lambda: not leftovers(), timeout=60, what="the build's container removed")
            assert not engine.api.images(name=repo)
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is images, what="the dialog closed")
            # the outcome was seen: b is a new form, filled with the last build's fields
            form = await open_screen(pilot, "b", BuildFormScreen)
            assert form.query_one("#build-tag", Input).value == repo
    finally:
        _remove_new(engine, before)


@pytest.mark.integration
@pytest.mark.tui
@pytest.mark.timeout(120)
async def test_build_key_rebinds_palette_offers_it_and_the_form_says_what_is_wrong(
        engine: Engine, tmp_path: Path, tmp_config_home: Any) -> None:
    """[keys] image_build moves the key (the palette's entry and the empty list's hint name the new one), and the
    form keeps a folder without a Dockerfile or a malformed build arg from being sent."""
    from textual.binding import Binding
    from textual.command import CommandList, CommandPalette

    cfg = engine.config()
    cfg.keys = {"image_build": "ctrl+b"}
    app = PortsideApp(host=engine.url, config=cfg)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.connected, what="connection")
        images = await open_screen(pilot, "I", ImagesScreen)
        display = app.get_key_display(Binding("ctrl+b", ""))
        commands = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert commands["Build (Images)"] == f"key {display}"
        await wait_for(pilot, lambda: engine.busybox in row_keys(images), what="the images listed")
        hint = images.query_one("#images-hint")
        assert not hint.display  # images there: no hint
        images.rows_loaded([])  # what an engine without images gives the screen
        assert hint.display and display in str(hint.render()) and "builds one from a folder" in str(hint.render())
        await pilot.press("b")  # moved away
        await pilot.pause()
        assert app.screen is images
        palette = await open_screen(pilot, "ctrl+p", CommandPalette)
        await pilot.press(*"Build (Ima")
        hits = palette.query_one(CommandList)
        await wait_for(pilot, lambda: hits.highlighted is not None and "Build (Images)" in str(
            hits.get_option_at_index(hits.highlighted).prompt), what="the Build command offered")
        form = await open_screen(pilot, "enter", BuildFormScreen)
        error = form.query_one("#build-form-error")
        path = form.query_one("#build-path", Input)
        (tmp_path / "empty").mkdir()
        path.value = f"{tmp_path}/empty"
        path.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "has no Dockerfile" in str(error.render()), what="the folder refused")
        assert app.screen is form
        (tmp_path / "empty" / "Dockerfile").write_text(f"FROM {engine.busybox}\n")
        form.query_one("#build-args", Input).value = "VERSION"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "NAME=VALUE" in str(error.render()), what="the build arg refused")
        form.query_one("#build-tag", Input).value = "Not/Valid:tag"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "not a valid tag" in str(error.render()), what="the tag refused")
        assert app.screen is form
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is images, what="the form closed")


@pytest.mark.integration
@pytest.mark.tui
@pytest.mark.timeout(240)
async def test_quitting_the_app_stops_a_hidden_build(engine: Engine, tmp_path: Path, tmp_config_home: Any) -> None:
    """The build's thread does not hold the app's exit, and the build does not outlive the app: the engine stops
    it and removes its container."""
    repo = f"pst-build-{uuid.uuid4().hex[:8]}"
    folder = _context(tmp_path / f"ctx-{repo}", engine.busybox, "RUN echo long-step-started && sleep 300\n")
    before = _snapshot(engine)
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_for(pilot, lambda: app.connected, what="connection")
            images = await open_screen(pilot, "I", ImagesScreen)
            screen = await _start_build(pilot, images, folder, tag=repo)
            job = screen.job
            await wait_for(pilot, lambda: "long-step-started" in screen.log_view.lines, timeout=120,
                           what="the RUN step running")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is images, what="the dialog hidden")
            assert any(c["Id"] not in before[0] for c in engine.api.containers())  # the RUN's container
        assert job.cancelled
        deadline = time.monotonic() + 60
        while not job.finished or _container_ids(engine) - before[0]:
            assert time.monotonic() < deadline, "the build outlived the app"
            await asyncio.sleep(0.1)  # polling the engine for the condition, the app is gone
    finally:
        _remove_new(engine, before)
