"""The rest of the Dockerfile language on portside's builder: ONBUILD, SHELL, the escape directive, --cache-from,
remote contexts, private base images (X-Registry-Config), the build's network and extra hosts."""

from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import PortsideDaemon
from tests.api.test_build import _tag, build, cleanup, image_id, write
from tests.testbed.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
__all__ = ["cleanup"]  # the fixture, imported for these tests


def test_onbuild_triggers_run_in_the_child_build(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                 cleanup: list[str]) -> None:
    parent, child = _tag(), _tag()
    cleanup.extend([child, parent])
    write(tmp_path / "p", {"Dockerfile": "FROM busybox\nONBUILD COPY marker /from-trigger\n"
                                         "ONBUILD RUN cat /from-trigger > /copied\n"})
    out = build(daemon, tmp_path / "p", "-t", parent)
    assert out.returncode == 0, out.stderr
    onbuild = json.loads(daemon.docker("inspect", "-f", "{{json .Config.OnBuild}}", parent).stdout)
    assert onbuild == ["COPY marker /from-trigger", "RUN cat /from-trigger > /copied"]
    write(tmp_path / "c", {"Dockerfile": f"FROM {parent}\n", "marker": "triggered\n"})
    out = build(daemon, tmp_path / "c", "-t", child)
    assert out.returncode == 0, out.stderr
    assert "# Executing 2 build triggers" in out.stdout
    assert daemon.docker("run", "--rm", child, "cat", "/copied").stdout == "triggered\n"
    # the triggers do not carry on to the child's own children
    assert daemon.docker("inspect", "-f", "{{json .Config.OnBuild}}", child).stdout.strip() in ("null", "[]")


def test_shell_escape_directive_and_continuations(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                  cleanup: list[str]) -> None:
    tag = _tag()
    cleanup.append(tag)
    write(tmp_path, {"Dockerfile": "# escape=`\n# syntax=docker/dockerfile:1\nFROM busybox\n"
                                   "SHELL [\"/bin/sh\", \"-ec\"]\n"
                                   "ENV DIR=C:\\path\\kept\n"
                                   "RUN echo one `\n    two > /lines && echo \"$DIR\" >> /lines\n"
                                   "CMD echo shell-form\n"})
    out = build(daemon, tmp_path, "-t", tag)
    assert out.returncode == 0, out.stderr
    assert "directive is ignored" in out.stdout
    assert daemon.docker("run", "--rm", tag, "cat", "/lines").stdout == "one two\nC:\\path\\kept\n"
    cfg = json.loads(daemon.docker("inspect", "-f", "{{json .Config}}", tag).stdout)
    assert cfg["Shell"] == ["/bin/sh", "-ec"] and cfg["Cmd"] == ["/bin/sh", "-ec", "echo shell-form"]
    assert daemon.docker("run", "--rm", tag).stdout == "shell-form\n"


def test_cache_from_an_image_without_local_parents(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                   cleanup: list[str]) -> None:
    tag, again = _tag(), _tag()
    cleanup.extend([again, tag])
    write(tmp_path, {"Dockerfile": f"FROM busybox\nENV K={tag}\nRUN echo {tag} > /f\nCMD [\"cat\", \"/f\"]\n"})
    assert build(daemon, tmp_path, "-t", tag).returncode == 0
    first = image_id(daemon, tag)
    # a saved and reloaded image has no parent links: only --cache-from can use it
    saved = daemon.docker("save", "-o", str(tmp_path / "img.tar"), tag)
    assert saved.returncode == 0, saved.stderr
    assert daemon.docker("rmi", tag).returncode == 0
    assert daemon.docker("load", "-i", str(tmp_path / "img.tar")).returncode == 0
    out = build(daemon, tmp_path, "-t", again)
    assert "Using cache" not in out.stdout  # the parent chain is gone
    daemon.docker("rmi", again)
    out = build(daemon, tmp_path, "--cache-from", tag, "-t", again)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(" ---> Using cache") == 3, out.stdout
    assert image_id(daemon, again) == first


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def files_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}
    handler = type("Handler", (_Files,), {"files": files})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", files
    finally:
        srv.shutdown()


def test_remote_contexts_a_tarball_and_a_plain_dockerfile(daemon: PortsideDaemon, busybox: str,
                                                          files_server: tuple[str, dict[str, bytes]],
                                                          cleanup: list[str]) -> None:
    base, files = files_server
    tag, tag2 = _tag(), _tag()
    cleanup.extend([tag, tag2])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY msg /msg\n"), ("msg", b"remote-tar\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    files["/ctx.tar.gz"] = buf.getvalue()
    files["/Dockerfile"] = b"FROM busybox\nRUN echo plain-remote > /msg\n"
    out = daemon.docker("build", "-t", tag, f"{base}/ctx.tar.gz")
    assert out.returncode == 0, out.stderr
    assert daemon.docker("run", "--rm", tag, "cat", "/msg").stdout == "remote-tar\n"
    out = daemon.docker("build", "-t", tag2, f"{base}/Dockerfile")
    assert out.returncode == 0, out.stderr
    assert daemon.docker("run", "--rm", tag2, "cat", "/msg").stdout == "plain-remote\n"
    missing = daemon.docker("build", f"{base}/nope.tar")
    assert missing.returncode != 0 and "404" in missing.stderr, missing.stderr


def test_network_mode_and_extra_hosts_of_run_steps(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                   cleanup: list[str]) -> None:
    tag = _tag()
    cleanup.append(tag)
    write(tmp_path, {"Dockerfile": "FROM busybox\nRUN grep pst-extra /etc/hosts > /hosts; ls /sys/class/net > /ifs\n"})
    out = build(daemon, tmp_path, "--network", "none", "--add-host", "pst-extra:127.0.0.9", "-t", tag)
    assert out.returncode == 0, out.stderr
    assert daemon.docker("run", "--rm", tag, "cat", "/ifs").stdout == "lo\n"
    assert "127.0.0.9\tpst-extra" in daemon.docker("run", "--rm", tag, "cat", "/hosts").stdout


def test_a_private_base_image_is_pulled_with_the_clients_credentials(daemon: PortsideDaemon, busybox: str,
                                                                    auth_registry: Registry, tmp_path: Path,
                                                                    cleanup: list[str]) -> None:
    certs = daemon.data_root / "certs.d" / auth_registry.host
    certs.mkdir(parents=True, exist_ok=True)
    assert auth_registry.ca_cert is not None
    (certs / "ca.crt").write_bytes(auth_registry.ca_cert.read_bytes())
    ref = f"{auth_registry.host}/testbed/busybox:latest"
    tag = _tag()
    cleanup.extend([tag, ref])
    daemon.docker("rmi", ref)
    write(tmp_path, {"Dockerfile": f"FROM {ref}\nRUN echo private > /p\n"})
    daemon.docker("logout", auth_registry.host)
    denied = build(daemon, tmp_path, "-t", tag)
    assert denied.returncode != 0
    login = daemon.docker("login", "-u", auth_registry.username or "", "--password-stdin", auth_registry.host,
                          input=f"{auth_registry.password}\n")
    assert login.returncode == 0, login.stderr
    try:
        out = build(daemon, tmp_path, "-t", tag)  # the CLI sends every stored login in X-Registry-Config
        assert out.returncode == 0, out.stderr
        assert daemon.docker("run", "--rm", tag, "cat", "/p").stdout == "private\n"
    finally:
        daemon.docker("logout", auth_registry.host)  # the CLI config is the session's: later tests start logged out


def test_a_built_image_pushes_and_pulls_back(daemon: PortsideDaemon, busybox: str, registry: Registry,
                                             tmp_path: Path, cleanup: list[str]) -> None:
    ref = f"{registry.host}/{_tag()}:v1"
    cleanup.append(ref)
    write(tmp_path, {"Dockerfile": "FROM busybox\nCOPY f /f\nRUN cat /f > /g\nENV X=1\n", "f": "pushed\n"})
    out = build(daemon, tmp_path, "-t", ref)
    assert out.returncode == 0, out.stderr
    built = image_id(daemon, ref)
    push = daemon.docker("push", ref)
    assert push.returncode == 0, push.stderr
    assert daemon.docker("rmi", ref).returncode == 0
    pull = daemon.docker("pull", ref)
    assert pull.returncode == 0, pull.stderr
    assert image_id(daemon, ref) == built  # the same config, so the same id
    assert daemon.docker("run", "--rm", ref, "cat", "/g").stdout == "pushed\n"
