"""Healthchecks through the real docker CLI: starting -> healthy once the probe passes, unhealthy after Retries
failures, timeouts, `docker ps` status and `--filter health=`, health_status events, no probes once stopped,
probing resumed by a restarted engine, and docker-compose's `depends_on: condition: service_healthy`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.containers import health
from engine.containers.logs import parse_time_ns
from tests.api.conftest import PortsideDaemon, new_daemon, remove_daemon_dirs
from tests.testbed.registry import Registry

pytest.importorskip("engine.exec.runtime", reason="no container runtime in this tree yet")
COMPOSE = shutil.which("docker-compose")


# --- unit ---


def test_image_healthcheck_is_inherited_and_overridden() -> None:
    image = {"Healthcheck": {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 5 * health.SECOND,
                             "Retries": 7}}  # fmt: skip
    cfg: dict[str, Any] = {}
    health.merge_config(cfg, image)
    assert cfg["Healthcheck"]["Test"] == ["CMD-SHELL", "curl -f localhost"] and cfg["Healthcheck"]["Retries"] == 7
    cfg = {"Healthcheck": {"Interval": health.SECOND}}  # --health-interval only: the image's test stays
    health.merge_config(cfg, image)
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": health.SECOND,
                                  "Retries": 7}  # fmt: skip
    cfg = {"Healthcheck": {"Test": ["NONE"]}}  # --no-healthcheck
    health.merge_config(cfg, image)
    assert health.probe_command(cfg) is None
    assert health.probe_command({"Healthcheck": {"Test": ["CMD", "true"]}}) == ["true"]
    assert health.probe_command({"Shell": ["/bin/ash", "-c"], "Healthcheck": {"Test": ["CMD-SHELL", "x"]}}) == [
        "/bin/ash", "-c", "x"]  # fmt: skip


def test_healthcheck_validation_uses_dockerd_words() -> None:
    with pytest.raises(Exception, match="Interval in Healthcheck cannot be less than 1ms"):
        health.validate({"Interval": 1000})
    with pytest.raises(Exception, match="Retries in Healthcheck cannot be negative"):
        health.validate({"Retries": -1})
    health.validate({"Interval": 0, "Timeout": health.SECOND, "Retries": 0})


def test_go_durations_and_ps_suffixes() -> None:
    assert [health.go_duration(n) for n in (30 * health.SECOND, 300_000_000, 90 * health.SECOND, 1_500_000_000)] == [
        "30s", "300ms", "1m30s", "1.5s"]  # fmt: skip
    assert health.status_suffix({"Health": {"Status": "starting"}}) == " (health: starting)"
    assert health.status_suffix({"Health": {"Status": "healthy"}}) == " (healthy)"
    assert health.status_suffix({}) == ""


def test_healthcheck_instruction_and_go_durations_parse() -> None:
    assert health.parse_go_duration("1m30s") == 90 * health.SECOND
    assert health.parse_go_duration("1.5s") == 1_500_000_000 and health.parse_go_duration("200ms") == 200_000_000
    with pytest.raises(Exception, match='invalid duration "5 s"'):
        health.parse_go_duration("5 s")
    assert health.parse_instruction("--interval=200ms --retries=2 CMD test -e /tmp/ok || exit 1") == {
        "Interval": 200_000_000, "Retries": 2, "Test": ["CMD-SHELL", "test -e /tmp/ok || exit 1"]}  # fmt: skip
    assert health.parse_instruction('CMD ["wget", "-q", "localhost"]') == {"Test": ["CMD", "wget", "-q", "localhost"]}
    assert health.parse_instruction("NONE") == {"Test": ["NONE"]}
    with pytest.raises(Exception, match="Unknown flag: bogus"):
        health.parse_instruction("--bogus=1 CMD true")


# --- through the CLI ---


@pytest.fixture(scope="module")
def image(daemon: PortsideDaemon, registry: Registry) -> str:
    src = f"{registry.host}/testbed/busybox:latest"
    out = daemon.docker("pull", "-q", src)
    assert out.returncode == 0, out.stderr
    return src


@pytest.fixture
def names(daemon: PortsideDaemon) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for n in made:
        daemon.docker("rm", "-f", n)


def _inspect(d: PortsideDaemon, name: str) -> dict[str, Any]:
    out = d.docker("inspect", name)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout)[0])


def _until(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _health(d: PortsideDaemon, name: str) -> dict[str, Any]:
    return dict(_inspect(d, name)["State"].get("Health") or {})


def _ps(d: PortsideDaemon, *filters: str) -> list[str]:
    args = ["ps", "-a", "--format", "{{.Names}}\t{{.Status}}"]
    for f in filters:
        args += ["--filter", f]
    out = d.docker(*args)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_probe_turns_healthy_and_shows_in_ps_filters_and_events(daemon: PortsideDaemon, image: str,
                                                               names: list[str]) -> None:  # fmt: skip
    name = f"pst-health-ok-{os.getpid()}"
    names.append(name)
    since = str(int(time.time()) - 1)
    probe = "test -e /tmp/ok && echo fine || { echo missing; exit 1; }"
    out = daemon.docker("run", "-d", "--name", name, "--health-cmd", probe, "--health-interval", "200ms",
                        "--health-retries", "1000", image, "sleep", "300")  # fmt: skip
    assert out.returncode == 0, out.stderr
    cfg = _inspect(daemon, name)["Config"]["Healthcheck"]
    assert cfg == {"Test": ["CMD-SHELL", probe], "Interval": 200_000_000, "Retries": 1000}
    # failing probes while Retries is not reached: still starting, with the streak counting
    h = _until(lambda: (x := _health(daemon, name)) and x["FailingStreak"] >= 2 and x)
    assert h["Status"] == "starting" and h["Log"][-1]["ExitCode"] == 1 and h["Log"][-1]["Output"] == "missing\n"
    assert _ps(daemon, f"name={name}")[0].endswith("(health: starting)")
    assert _ps(daemon, f"name={name}", "health=starting") and not _ps(daemon, f"name={name}", "health=healthy")
    assert daemon.docker("exec", name, "touch", "/tmp/ok").returncode == 0
    h = _until(lambda: (x := _health(daemon, name)) and x["Status"] == "healthy" and x)
    assert h["FailingStreak"] == 0 and h["Log"][-1]["ExitCode"] == 0 and h["Log"][-1]["Output"] == "fine\n"
    assert len(h["Log"]) <= 5 and all(e["Start"] <= e["End"] for e in h["Log"])
    assert _ps(daemon, f"name={name}")[0].endswith("(healthy)")
    assert [ln.split("\t")[0] for ln in _ps(daemon, "health=healthy")].count(name) == 1
    assert not _ps(daemon, f"name={name}", "health=unhealthy")
    assert not _ps(daemon, f"name={name}", "health=none")
    bad = daemon.docker("ps", "--filter", "health=bogus")
    assert bad.returncode != 0 and "Unrecognised filter value for health: bogus" in bad.stderr
    ev = daemon.docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                       f"container={name}", "--format", "{{.Action}}")  # fmt: skip
    assert "health_status: healthy" in ev.stdout.splitlines(), ev.stdout
    # stopped: no more probes, the last health state stays in inspect
    assert daemon.docker("stop", "-t", "1", name).returncode == 0
    before = _health(daemon, name)
    time.sleep(0.8)
    assert _health(daemon, name) == before and before["Status"] == "healthy"
    assert "(healthy)" not in _ps(daemon, f"name={name}")[0]


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_failing_probe_turns_unhealthy_after_retries_and_timeouts_fail(daemon: PortsideDaemon, image: str,
                                                                      names: list[str]) -> None:  # fmt: skip
    name = f"pst-health-bad-{os.getpid()}"
    slow = f"pst-health-slow-{os.getpid()}"
    names += [name, slow]
    out = daemon.docker("run", "-d", "--name", name, "--health-cmd", "echo nope; exit 3", "--health-interval",
                        "100ms", "--health-retries", "3", image, "sleep", "300")  # fmt: skip
    assert out.returncode == 0, out.stderr
    out = daemon.docker("run", "-d", "--name", slow, "--health-cmd", "echo slow; sleep 20", "--health-interval",
                        "100ms", "--health-timeout", "300ms", "--health-retries", "1", image, "sleep", "300")
    assert out.returncode == 0, out.stderr
    # probes run every 100 ms, so a poll may see any streak: every state seen must match its streak
    seen: list[tuple[int, str]] = []

    def unhealthy() -> dict[str, Any] | None:
        x = _health(daemon, name)
        if x:
            seen.append((x["FailingStreak"], x["Status"]))
        return x if x and x["Status"] == "unhealthy" else None

    h = _until(unhealthy)
    assert h and h["FailingStreak"] >= 3 and {e["ExitCode"] for e in h["Log"]} == {3}, h
    assert all((status == "unhealthy") == (streak >= 3) for streak, status in seen), seen
    assert _ps(daemon, f"name={name}")[0].endswith("(unhealthy)")
    assert [ln.split("\t")[0] for ln in _ps(daemon, "health=unhealthy")].count(name) == 1
    h = _until(lambda: (x := _health(daemon, name)) and len(x["Log"]) == 5 and x["FailingStreak"] >= 7 and x)
    assert len(h["Log"]) == 5  # only the last five results are kept
    h = _until(lambda: (x := _health(daemon, slow)) and x["Status"] == "unhealthy" and x)
    last = h["Log"][-1]
    assert last["ExitCode"] == -1 and last["Output"] == "Health check exceeded timeout (300ms): slow\n", last
    # timed-out probes are killed: at most the one running now is left in the container
    _until(lambda: len(_health(daemon, slow)["Log"]) >= 3)
    top = daemon.docker("top", slow)
    assert top.returncode == 0 and top.stdout.count("sleep 20") <= 1, top.stdout


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_no_healthcheck_means_no_health_state(daemon: PortsideDaemon, image: str, names: list[str]) -> None:
    name = f"pst-health-none-{os.getpid()}"
    names.append(name)
    out = daemon.docker("run", "-d", "--name", name, "--no-healthcheck", image, "sleep", "300")
    assert out.returncode == 0, out.stderr
    st = _inspect(daemon, name)["State"]
    assert "Health" not in st
    assert [ln.split("\t")[0] for ln in _ps(daemon, "health=none")].count(name) == 1
    assert _ps(daemon, f"name={name}")[0].split("\t")[1].startswith("Up ")
    assert "(" not in _ps(daemon, f"name={name}")[0]
    # the CLI checks its flags itself; the API answers other clients as dockerd does
    for hc, msg in (({"Test": ["CMD", "true"], "Retries": -1}, "Retries in Healthcheck cannot be negative"),
                    ({"Test": ["CMD", "true"], "Interval": 1000}, "Interval in Healthcheck cannot be less than 1ms")):
        body = json.dumps({"Image": image, "Cmd": ["true"], "Healthcheck": hc}).encode()
        status, _, resp = daemon.request("POST", "/v1.47/containers/create", body,
                                         {"Content-Type": "application/json"})  # fmt: skip
        assert (status, json.loads(resp)["message"]) == (400, msg)


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_restarted_engine_resumes_probing(registry: Registry) -> None:
    d = new_daemon()
    try:
        d.start()
        src = f"{registry.host}/testbed/busybox:latest"
        assert d.docker("pull", "-q", src).returncode == 0
        out = d.docker("run", "-d", "--name", "probed", "--health-cmd", "test -e /tmp/ok", "--health-interval",
                       "200ms", "--health-retries", "1000", src, "sleep", "300")  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert _until(lambda: _health(d, "probed").get("FailingStreak", 0) >= 1)
        pid = _inspect(d, "probed")["State"]["Pid"]
        d.stop()
        # no engine: make the probe pass from the host, through the container's root
        Path(f"/proc/{pid}/root/tmp/ok").touch()
        d.start()
        h = _until(lambda: (x := _health(d, "probed")) and x["Status"] == "healthy" and x)
        assert h and h["Log"][-1]["ExitCode"] == 0, _health(d, "probed")
        assert _inspect(d, "probed")["State"]["Pid"] == pid
        assert d.docker("rm", "-f", "probed").returncode == 0
    finally:
        d.stop()
        d.cleanup_containers()
        d.destroy_network_state()
        remove_daemon_dirs(d)


PROJECT = """
version: "2.4"
services:
  db:
    image: {image}
    command: ["sh", "-c", "sleep 1.5; touch /tmp/ready; sleep 300"]
    healthcheck:
      test: ["CMD-SHELL", "test -e /tmp/ready"]
      interval: 200ms
      retries: 100
  app:
    image: {image}
    command: ["sleep", "300"]
    depends_on:
      db:
        condition: service_healthy
"""


@pytest.mark.integration
@pytest.mark.timeout(240)
@pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed")
def test_compose_waits_for_service_healthy(daemon: PortsideDaemon, image: str, tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(PROJECT.format(image=image))
    project = f"psthealth{os.getpid()}"
    env = dict(os.environ, DOCKER_HOST=daemon.host, COMPOSE_PROJECT_NAME=project)

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        assert COMPOSE is not None
        return subprocess.run([COMPOSE, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
                              check=False)  # fmt: skip

    try:
        up = compose("up", "-d")
        assert up.returncode == 0, up.stderr
        db, app = _inspect(daemon, f"{project}_db_1"), _inspect(daemon, f"{project}_app_1")
        assert db["State"]["Health"]["Status"] == "healthy"
        first_pass = next(e for e in db["State"]["Health"]["Log"] if e["ExitCode"] == 0)
        # the app started only after the db's first passing probe
        started = parse_time_ns(app["State"]["StartedAt"])
        assert app["State"]["Running"] and started >= parse_time_ns(first_pass["End"]), (app["State"], first_pass)
    finally:
        down = compose("down", "-v")
        assert down.returncode == 0, down.stderr


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_image_healthcheck_is_inherited_by_new_containers(daemon: PortsideDaemon, image: str,
                                                          names: list[str]) -> None:  # fmt: skip
    base, tag = f"pst-health-base-{os.getpid()}", f"pst-health-img-{os.getpid()}:latest"
    child, over, off = (f"pst-health-{k}-{os.getpid()}" for k in ("child", "over", "off"))
    names += [base, child, over, off]
    try:
        assert daemon.docker("create", "--name", base, image, "sleep", "300").returncode == 0
        out = daemon.docker("commit", "--change", "HEALTHCHECK --interval=200ms --retries=2 CMD test -e /etc/passwd",
                            base, tag)  # fmt: skip
        assert out.returncode == 0, out.stderr
        img = json.loads(daemon.docker("image", "inspect", tag).stdout)[0]
        assert img["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "test -e /etc/passwd"],
                                                "Interval": 200_000_000, "Retries": 2}  # fmt: skip
        assert daemon.docker("run", "-d", "--name", child, tag).returncode == 0
        assert _until(lambda: _health(daemon, child).get("Status") == "healthy")
        # the container's flags override the image's field by field; --no-healthcheck disables it
        assert daemon.docker("run", "-d", "--name", over, "--health-cmd", "false", tag).returncode == 0
        assert _inspect(daemon, over)["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "false"],
                                                                   "Interval": 200_000_000, "Retries": 2}
        assert _until(lambda: _health(daemon, over).get("Status") == "unhealthy")
        assert daemon.docker("run", "-d", "--name", off, "--no-healthcheck", tag).returncode == 0
        time.sleep(0.5)
        assert "Health" not in _inspect(daemon, off)["State"]
    finally:
        for n in (child, over, off):
            daemon.docker("rm", "-f", n)
        daemon.docker("rmi", "-f", tag)
