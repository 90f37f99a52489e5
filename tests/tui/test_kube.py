"""The Kubernetes hand-off in the TUI: the main screen's `k` (Export to Kubernetes) on a compose container with a
bind mount, toggled to the container alone and to a Deployment, copied and saved; the Images screen's `k` (Play
Kubernetes YAML) running a pod file on each engine, and a bad file said with its document and field."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from textual.widgets import Input

from app.build_stream import complete_directory
from app.screens.kube import KubeExportScreen, KubePlayScreen, KubeSaveScreen
from app.screens.resources import ImagesScreen
from app.tui import PortsideApp
from engine.kube import names
from tests.tui.conftest import Engine, open_screen, select_container, wait_for

pytestmark = [pytest.mark.tui]


def test_file_completion_takes_file_names(tmp_path: Path) -> None:
    (tmp_path / "pods").mkdir()
    (tmp_path / "pod.yaml").write_text("")
    (tmp_path / "web.yaml").write_text("")
    root = f"{tmp_path}/"
    assert complete_directory(root + "w", files=True) == (root + "web.yaml", [])  # a file: no '/'
    assert complete_directory(root + "pod", files=True) == (root + "pod", ["pod.yaml", "pods"])
    assert complete_directory(root + "pods", files=True) == (root + "pods/", [])  # a folder keeps its '/'
    assert complete_directory(root + "w") == (root + "w", [])  # a folder picker still ignores files


def _compose_container(engine: Engine, project: str, service: str, bind: Path) -> str:
    hc = engine.api.create_host_config(network_mode="none", binds={str(bind): {"bind": "/data", "mode": "ro"}})
    cid: str = engine.api.create_container(
        engine.busybox, ["sleep", "300"], name=f"pstkube-{project}-{service}", host_config=hc,
        labels={"com.docker.compose.project": project, "com.docker.compose.service": service})["Id"]
    engine.api.start(cid)
    return cid


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_export_shows_the_yaml_with_its_warnings_copies_and_saves(engine: Engine, tmp_path: Path,
                                                                      tmp_config_home: Path) -> None:
    project = f"p{uuid.uuid4().hex[:6]}"
    (tmp_path / "data").mkdir()
    web = _compose_container(engine, project, "web", tmp_path / "data")
    _compose_container(engine, project, "db", tmp_path / "data")
    app = PortsideApp(host=engine.url, config=engine.config())
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.connected, what="connection")
        main = await select_container(pilot, web)
        main.container_list.focus()
        screen = await open_screen(pilot, "k", KubeExportScreen)
        await wait_for(pilot, lambda: screen.yaml_text or screen.error, what="the YAML")
        assert not screen.error, screen.error
        # the compose project: both its containers, each a Pod naming the image
        pods = [d for d in _docs(screen.yaml_text) if d["kind"] == "Pod"]
        assert len(pods) == 2, screen.yaml_text
        assert all(p["spec"]["containers"][0]["image"] == engine.busybox for p in pods)
        assert any("bind mount" in w and "hostPath" in w for w in screen.warnings), screen.warnings
        shown = str(screen.query_one("#kube-warnings").render())
        assert "hostPath" in shown
        # the container alone, as a Deployment
        await pilot.press("p")
        await wait_for(pilot, lambda: not screen.whole_project and screen.yaml_text and
                       len(_docs(screen.yaml_text)) == 1, what="the container alone")
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.yaml_text and _docs(screen.yaml_text)[0]["kind"] == "Deployment",
                       what="a Deployment")
        dep = _docs(screen.yaml_text)[0]
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == engine.busybox
        volumes = dep["spec"]["template"]["spec"]["volumes"]
        assert any(v.get("hostPath", {}).get("path") == str(tmp_path / "data") for v in volumes), volumes
        await pilot.press("c")
        assert app.clipboard == screen.yaml_text
        # save: to a file under tmp, which parses back to the same documents
        save = await open_screen(pilot, "s", KubeSaveScreen)
        target = tmp_path / "out" / "web.yaml"
        box = save.query_one(Input)
        box.value = str(tmp_path / "nowhere" / "x" / "web.yaml")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, KubeSaveScreen)  # a folder that is not there: said, the dialog stays
        assert "Cannot write" in str(save.query_one("#kube-error").render())
        target.parent.mkdir()
        box.value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen, what="the save dialog closed")
        assert _docs(target.read_text()) == _docs(screen.yaml_text)


def _pod_yaml(image: str, pod: str) -> str:
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {pod}
spec:
  restartPolicy: Never
  containers:
    - name: main
      image: {image}
      command: ["sleep", "300"]
    - name: side
      image: {image}
      command: ["sleep", "300"]
"""


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_play_runs_a_pod_file_and_says_what_is_wrong_with_a_bad_one(engine: Engine, tmp_path: Path,
                                                                         tmp_config_home: Path) -> None:
    pod = f"pstkube-{uuid.uuid4().hex[:6]}"
    good = tmp_path / "pod.yaml"
    good.write_text(_pod_yaml(engine.busybox, pod))
    bad = tmp_path / "bad.yaml"
    bad.write_text(_pod_yaml(engine.busybox, pod) + "---\napiVersion: v1\nkind: Frob\nmetadata:\n  name: x\n")
    app = PortsideApp(host=engine.url, config=engine.config())
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            await wait_for(pilot, lambda: app.connected, what="connection")
            await open_screen(pilot, "I", ImagesScreen)
            play = await open_screen(pilot, "k", KubePlayScreen)
            box = play.query_one(Input)
            # Tab completes the file name
            box.value = str(tmp_path / "b")
            await pilot.press("tab")
            assert box.value == str(bad)
            await pilot.press("enter")
            await wait_for(pilot, lambda: play.error, what="the bad file's error")
            assert "document 2 (Frob x)" in play.error and "field kind" in play.error, play.error
            assert not engine.api.containers(all=True, filters={"name": pod})  # nothing half-made
            box.value = str(good)
            await pilot.press("enter")
            await wait_for(pilot, lambda: play.made or play.error, timeout=60, what="the play")
            assert not play.error, play.error
            assert play.made == [f"{pod}-main", f"{pod}-side"]
            result = str(play.query_one("#kube-play-result").render())
            assert f"Pod {pod}: {pod}-main, {pod}-side" in result, result
            for name in play.made:
                state = engine.api.inspect_container(name)["State"]
                assert state["Running"], (name, state)
            # again without replace: the dialog says what is in the way; with it, the pod is made anew
            old = engine.api.inspect_container(f"{pod}-main")["Id"]
            await pilot.press("enter")
            await wait_for(pilot, lambda: play.error, what="the already-exists error")
            assert "already exists" in play.error
            play.query_one("#kube-replace").value = True  # type: ignore[attr-defined]
            box.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: play.made and not play.error, timeout=60, what="the replacing play")
            assert engine.api.inspect_container(f"{pod}-main")["Id"] != old
    finally:
        for c in engine.api.containers(all=True, filters={"label": f"{names.OWNER}=Pod/{pod}"}):
            engine.api.remove_container(c["Id"], force=True)
