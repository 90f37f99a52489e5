"""Round trips with Podman, the peer `kube generate`/`kube play` are matched against (skipped without podman).

Podman runs fenced in: its own --root/--runroot under a test directory, a test-only containers.conf
(CONTAINERS_CONF) whose CNI config dir holds one bridge network with no portmap/firewall/masquerade plugin (so it
adds no iptables rules to the host), an infra image built locally from the test bed's busybox (so it never pulls
its default pause image), and the test bed's busybox copied in with skopeo. It reaches nothing but that bridge;
a pod it plays is reached at its bridge address. Everything is removed afterwards: pods, storage mounts, the
bridge, the CNI IPAM state, the directory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.api.conftest import PortsideDaemon
from tests.conftest import TestBed

from .conftest import portside, validate
from .test_play import fetch, free_port, managed, played  # noqa: F401  (played is a fixture)

pytestmark = pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")

PAUSE = '#!/bin/sh\ntrap "exit 0" TERM INT\nwhile :; do sleep 1000 & wait; done\n'
HTTPD = "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 8000 -h /www"


@dataclass
class Podman:
    root: Path
    network: str
    bridge: str

    def run(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        # runc: crun 1.8 refuses this host's hybrid cgroups; cgroupfs: no systemd here
        cmd = ["podman", "--root", str(self.root / "root"), "--runroot", str(self.root / "run"),
               "--cgroup-manager", "cgroupfs", "--runtime", "runc", *args]
        env = dict(os.environ, CONTAINERS_CONF=str(self.root / "containers.conf"),
                   CONTAINERS_REGISTRIES_CONF=str(self.root / "registries.conf"))
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, input=input)
        if check:
            assert out.returncode == 0, f"{' '.join(args)}: {out.stderr}"
        return out

    def ip(self, container: str) -> str:
        out = self.run("inspect", container, "--format", f"{{{{.NetworkSettings.Networks.{self.network}.IPAddress}}}}")
        return out.stdout.strip()


def _free_subnet() -> str:
    used = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for third in range(200, 250):
        net = f"10.213.{third}.0/24"
        if net.split("/")[0].rsplit(".", 1)[0] + "." not in used:
            return net
    pytest.skip("no free 10.213.x.0/24 for podman's test bridge")


@pytest.fixture
def podman(testbed: TestBed) -> Iterator[Podman]:
    tag = uuid.uuid4().hex[:6]
    root = Path(tempfile.mkdtemp(prefix="pst-kpodman-"))
    pm = Podman(root, f"pstkpod{tag}", f"pstkpod{tag}")
    subnet = ipaddress.ip_network(_free_subnet())
    gateway = str(subnet.network_address + 1)
    (root / "cni").mkdir()
    (root / "cni" / f"{pm.network}.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": pm.network,
        "plugins": [{"type": "bridge", "bridge": pm.bridge, "isGateway": True, "ipMasq": False,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": str(subnet), "gateway": gateway}]]}}]}))
    (root / "containers.conf").write_text(
        "[containers]\n"
        # this sandbox's hard limits are below podman's defaults (runc would fail setting them)
        'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
        "[network]\n"
        'network_backend = "cni"\n'
        f'network_config_dir = "{root / "cni"}"\n'
        f'default_network = "{pm.network}"\n'
        "[engine]\n"
        'infra_image = "localhost/pst-pause:latest"\n')
    (root / "registries.conf").write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
    try:
        store = f"containers-storage:[overlay@{root / 'root'}+{root / 'run'}]docker.io/library/busybox:latest"
        out = subprocess.run(["skopeo", "copy", "-q", f"oci:{testbed.layouts['busybox']}", store],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        (root / "ctx").mkdir()
        (root / "ctx" / "pause").write_text(PAUSE)
        (root / "ctx" / "pause").chmod(0o755)
        (root / "ctx" / "Containerfile").write_text(
            'FROM docker.io/library/busybox:latest\nCOPY pause /pause\nCMD ["/pause"]\n')
        pm.run("build", "-q", "--network", "none", "--pull=never", "-t", "localhost/pst-pause:latest",
               str(root / "ctx"))
        yield pm
    finally:
        pm.run("pod", "rm", "-a", "-f", "-t", "0", check=False)
        pm.run("rm", "-a", "-f", "-t", "0", check=False)
        pm.run("image", "rm", "-a", "-f", check=False)
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            target = line.split()[1]
            if target.startswith(str(root)):
                subprocess.run(["umount", "-l", target], capture_output=True)
        subprocess.run(["ip", "link", "del", pm.bridge], capture_output=True)
        # podman's cgroupfs manager leaves its (by now empty) parent cgroup in every hierarchy
        for parent in Path("/sys/fs/cgroup").glob("*/libpod_parent"):
            for d in sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                d.rmdir()
            parent.rmdir()
        shutil.rmtree(f"/var/lib/cni/networks/{pm.network}", ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


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
