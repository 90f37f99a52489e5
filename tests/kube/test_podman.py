"""Round trips with Podman, the peer `kube generate`/`kube play` are matched against (skipped without podman).

Podman runs fenced in (tests.testbed.podman: its own roots and configuration, a CNI bridge that changes nothing on
the host, an infra image built from the test bed's busybox), with the test bed's busybox copied in with skopeo. It
reaches nothing but its bridge; a pod it plays is reached at its bridge address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.api.conftest import PortsideDaemon
from tests.conftest import TestBed
from tests.testbed.podman import Podman, available, fenced

from .conftest import portside, validate
from .test_play import fetch, free_port, managed, played  # noqa: F401  (played is a fixture)

pytestmark = pytest.mark.skipif(not available(), reason="podman (with runc and skopeo) is not installed, or not root")

HTTPD = "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 8000 -h /www"


@pytest.fixture
def podman(testbed: TestBed) -> Iterator[Podman]:
    with fenced(testbed.layouts["busybox"]) as pm:
        pm.copy_in(testbed.layouts["busybox"], "docker.io/library/busybox:latest")
        yield pm


def test_portside_yaml_is_played_by_podman(daemon: PortsideDaemon, busybox: str, podman: Podman,
                                          names: list[str]) -> None:
    names.append("pst-kpeer")
    out = daemon.docker("run", "-d", "--name", "pst-kpeer", "-p", "127.0.0.1::8000", "-e", "WHO=portside",
                        "busybox", "sh", "-c", HTTPD.format(text="from-portside-yaml"))
    assert out.returncode == 0, out.stderr
    gen = portside(daemon, "kube", "generate", "pst-kpeer")
    assert gen.returncode == 0, gen.stderr
    # busybox is the short name docker uses; podman's copy is the same image under its full name
    text = gen.stdout.replace("image: busybox", "image: docker.io/library/busybox:latest")
    podman.run("kube", "play", "--network", podman.network, "-", input=text)
    pods = json.loads(podman.run("pod", "ps", "--format", "json").stdout)
    assert [p["Name"] for p in pods] == ["pst-kpeer-pod"]  # the pod name generate gave, as podman does
    ctr = next(c["Names"] for c in pods[0]["Containers"] if not c["Names"].endswith("-infra"))
    env = json.loads(podman.run("inspect", ctr).stdout)[0]["Config"]["Env"]
    assert "WHO=portside" in env
    ip = podman.ip(ctr)
    assert fetch(f"http://{ip}:8000/", b"from-portside-yaml") == b"from-portside-yaml\n"


def test_podman_yaml_is_played_by_portside_and_generated_back(daemon: PortsideDaemon, busybox: str,
                                                              podman: Podman, tmp_path: Path,
                                                              played: list[Path]) -> None:  # noqa: F811
    port = free_port()
    podman.run("pod", "create", "--name", "pst-kfrompod", "--network", podman.network, "-p", f"127.0.0.1:{port}:8000")
    podman.run("run", "-d", "--pod", "pst-kfrompod", "--name", "web", "-e", "WHO=podman",
               "docker.io/library/busybox:latest", "sh", "-c", HTTPD.format(text="from-podman-yaml"))
    gen = podman.run("kube", "generate", "pst-kfrompod")
    (pod_doc,) = [d for d in yaml.safe_load_all(gen.stdout) if d]
    assert pod_doc["kind"] == "Pod"
    # podman names the busybox it has by its full name; portside's test daemon has the same image as `busybox`
    text = gen.stdout.replace("docker.io/library/busybox:latest", "busybox")
    path = tmp_path / "from-podman.yaml"
    path.write_text(text)
    played.append(path)
    podman.run("pod", "rm", "-f", "-t", "0", "pst-kfrompod")  # its host port goes to portside now
    out = portside(daemon, "kube", "play", str(path))
    assert out.returncode == 0, out.stderr
    assert fetch(f"http://127.0.0.1:{port}/", b"from-podman-yaml") == b"from-podman-yaml\n"
    ctrs, _ = managed(daemon)
    assert len(ctrs) == 1
    # generate after play: the same pod back
    back = portside(daemon, "kube", "generate", ctrs[0])
    assert back.returncode == 0, back.stderr
    (doc,) = [d for d in yaml.safe_load_all(back.stdout) if d]
    validate(doc)
    (want,) = pod_doc["spec"]["containers"]
    (got,) = doc["spec"]["containers"]
    assert doc["kind"] == "Pod" and doc["metadata"]["name"] == "pst-kfrompod"
    assert got["command"] == want["command"] and got["image"] == "busybox"
    assert {"name": "WHO", "value": "podman"} in got["env"]
    assert [(p["containerPort"], p.get("hostPort")) for p in got["ports"]] == [(8000, port)]
