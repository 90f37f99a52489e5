"""`kube play` / `kube down` on the test daemon: the example Deployment + Service + ConfigMap serves its
ConfigMap page on 127.0.0.1, `generate` gives the manifest back, `down` removes exactly what play made, and a
bad file or a failing start leaves nothing behind."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from engine.kube import names as labels
from tests.api.conftest import PortsideDaemon

from .conftest import ROOT, portside, validate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, want: bytes, timeout: float = 30) -> bytes:
    body, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = urllib.request.urlopen(url, timeout=2).read()
            if want in body:
                return body
        except OSError:
            pass
        time.sleep(0.1)
    return body


def managed(daemon: PortsideDaemon) -> tuple[list[str], list[str]]:
    ps = daemon.docker("ps", "-a", "--filter", f"label={labels.MANAGED}=true", "--format", "{{.Names}}")
    vols = daemon.docker("volume", "ls", "-q", "--filter", f"label={labels.MANAGED}=true")
    return sorted(ps.stdout.split()), sorted(vols.stdout.split())


@pytest.fixture
def played(daemon: PortsideDaemon, tmp_path: Path) -> Iterator[list[Path]]:
    """Files a test plays; `kube down` each afterwards, and force-remove whatever still carries the label."""
    files: list[Path] = []
    yield files
    for f in files:
        portside(daemon, "kube", "down", str(f))
    ctrs, vols = managed(daemon)
    for c in ctrs:
        daemon.docker("rm", "-f", c)
    for v in vols:
        daemon.docker("volume", "rm", "-f", v)


def example(tmp_path: Path, port: int) -> Path:
    text = (ROOT / "examples" / "kube" / "web.yaml").read_text()
    text = re.sub(r"\bweb\b", "pst-kweb", text).replace("port: 8080", f"port: {port}")
    path = tmp_path / "web.yaml"
    path.write_text(text)
    return path


def test_example_serves_its_configmap_and_round_trips(daemon: PortsideDaemon, nginx: str, tmp_path: Path,
                                                      played: list[Path]) -> None:
    port = free_port()
    path = example(tmp_path, port)
    played.append(path)
    out = portside(daemon, "kube", "play", "--publish-address", "127.0.0.1", str(path))
    assert out.returncode == 0, out.stderr
    assert f"127.0.0.1:{port} balanced across its pods" in out.stdout
    body = fetch(f"http://127.0.0.1:{port}/", b"Hello from a ConfigMap")
    assert b"<h1>Hello from a ConfigMap</h1>" in body
    ctrs, _ = managed(daemon)
    assert ctrs == ["pst-kweb-pod-0-nginx", "pst-kweb-pod-1-nginx"]
    for c in ctrs:
        insp = json.loads(daemon.docker("inspect", c).stdout)[0]
        assert "GREETING=hello" in insp["Config"]["Env"]
        assert insp["State"]["Running"] and insp["HostConfig"]["Memory"] == 128 << 20
        assert insp["HostConfig"]["NanoCpus"] == 500_000_000
    # the same objects again: refused without --replace, replaced with it
    again = portside(daemon, "kube", "play", "--publish-address", "127.0.0.1", str(path))
    assert again.returncode == 125 and "already exists" in again.stderr
    again = portside(daemon, "kube", "play", "--replace", "--publish-address", "127.0.0.1", str(path))
    assert again.returncode == 0, again.stderr
    assert b"Hello from a ConfigMap" in fetch(f"http://127.0.0.1:{port}/", b"Hello from a ConfigMap")
    assert managed(daemon)[0] == ctrs

    # generate after play gives the Deployment and Service back
    gen = portside(daemon, "kube", "generate", "--type", "deployment", "--service", *ctrs)
    assert gen.returncode == 0, gen.stderr
    docs = list(yaml.safe_load_all(gen.stdout))
    for d in docs:
        validate(d)
    original = {d["kind"]: d for d in yaml.safe_load_all(path.read_text())}
    dep, svc = (next(d for d in docs if d["kind"] == k) for k in ("Deployment", "Service"))
    assert dep["metadata"]["name"] == "pst-kweb" and dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == original["Deployment"]["spec"]["selector"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    (want,) = original["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert (c["name"], c["image"], c["resources"]) == (want["name"], want["image"], want["resources"])
    assert c["env"] == [{"name": "GREETING", "value": "hello"}]  # the ConfigMap's value, resolved
    assert [p["containerPort"] for p in c["ports"]] == [80]
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(port, 80)]
    assert svc["spec"]["selector"] == {"app": "pst-kweb"}

    down = portside(daemon, "kube", "down", str(path))
    assert down.returncode == 0, down.stderr
    assert managed(daemon) == ([], [])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


HOSTNAMES = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: pst-kbal}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: pst-kbal}}}}
  template:
    metadata: {{labels: {{app: pst-kbal}}}}
    spec:
      containers:
        - name: httpd
          image: busybox
          command: [sh, -c]
          args: ["mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8000 -h /www"]
          ports: [{{containerPort: 8000, name: web}}]
---
apiVersion: v1
kind: Service
metadata: {{name: pst-kbal}}
spec:
  selector: {{app: pst-kbal}}
  ports: [{{port: {port}, targetPort: web}}]
"""


def test_service_is_balanced_across_the_pods_it_selects(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                        played: list[Path]) -> None:
    port = free_port()
    path = tmp_path / "bal.yaml"
    path.write_text(HOSTNAMES.format(port=port))
    played.append(path)
    out = portside(daemon, "kube", "play", "--publish-address", "127.0.0.1", str(path))
    assert out.returncode == 0, out.stderr
    fetch(f"http://127.0.0.1:{port}/", b"pst-kbal-pod")
    seen = {fetch(f"http://127.0.0.1:{port}/", b"pst-kbal-pod").strip() for _ in range(6)}
    assert seen == {b"pst-kbal-pod-0", b"pst-kbal-pod-1"}
    # a second play of the same Service port is refused; --replace takes the port over
    again = portside(daemon, "kube", "play", "--publish-address", "127.0.0.1", str(path))
    assert again.returncode == 125 and "already" in again.stderr
    again = portside(daemon, "kube", "play", "--replace", "--publish-address", "127.0.0.1", str(path))
    assert again.returncode == 0, again.stderr
    seen = {fetch(f"http://127.0.0.1:{port}/", b"pst-kbal-pod").strip() for _ in range(6)}
    assert seen == {b"pst-kbal-pod-0", b"pst-kbal-pod-1"}
    # generate gives the balanced Service port back
    gen = portside(daemon, "kube", "generate", "--type", "deployment", "--service", "pst-kbal-pod-0-httpd",
                   "pst-kbal-pod-1-httpd")
    assert gen.returncode == 0, gen.stderr
    svc = next(d for d in yaml.safe_load_all(gen.stdout) if d["kind"] == "Service")
    validate(svc)
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(port, 8000)]
    down = portside(daemon, "kube", "down", str(path))
    assert down.returncode == 0, down.stderr
    assert "stopped the balancer of Service pst-kbal" in down.stdout
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


POD_WITH_CLAIM = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: pst-kclaim}}
spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: pst-ksecret}}
stringData: {{token: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: pst-kpod, labels: {{tier: db}}}}
spec:
  restartPolicy: Never
  containers:
    - name: main
      image: busybox
      command: [sh, -c]
      args: ["echo $TOKEN > /data/t; sleep 300"]
      envFrom: [{{secretRef: {{name: pst-ksecret}}, prefix: X_}}]
      env: [{{name: TOKEN, valueFrom: {{secretKeyRef: {{name: pst-ksecret, key: token}}}}}}]
      ports: [{{containerPort: 7000, hostPort: {port}, hostIP: 127.0.0.1}}]
      volumeMounts:
        - {{name: data, mountPath: /data}}
        - {{name: cred, mountPath: /etc/cred, readOnly: true}}
        - {{name: scratch, mountPath: /scratch}}
    - name: side
      image: busybox
      command: [sleep, "300"]
      volumeMounts: [{{name: data, mountPath: /shared}}]
  volumes:
    - {{name: data, persistentVolumeClaim: {{claimName: pst-kclaim}}}}
    - {{name: cred, secret: {{secretName: pst-ksecret, defaultMode: 0400}}}}
    - {{name: scratch, emptyDir: {{medium: Memory, sizeLimit: 4Mi}}}}
"""


def test_pod_shares_its_network_and_mounts_claims_secrets_tmpfs(daemon: PortsideDaemon, busybox: str,
                                                                tmp_path: Path, played: list[Path]) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(POD_WITH_CLAIM.format(port=free_port()))
    played.append(path)
    out = portside(daemon, "kube", "play", str(path))
    assert out.returncode == 0, out.stderr
    ctrs, vols = managed(daemon)
    assert (ctrs, vols) == (["pst-kpod-main", "pst-kpod-side"], ["pst-kclaim"])
    main = json.loads(daemon.docker("inspect", "pst-kpod-main").stdout)[0]
    side = json.loads(daemon.docker("inspect", "pst-kpod-side").stdout)[0]
    assert side["HostConfig"]["NetworkMode"] == f"container:{main['Id']}" or \
        side["HostConfig"]["NetworkMode"] == "container:pst-kpod-main"
    assert main["Config"]["Labels"]["tier"] == "db" and main["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert "X_token=s3cret" in main["Config"]["Env"] and "TOKEN=s3cret" in main["Config"]["Env"]
    # the claim's volume is shared, the secret is a file with its mode, the emptyDir a sized tmpfs
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        shared = daemon.docker("exec", "pst-kpod-side", "cat", "/shared/t")
        if shared.stdout == "s3cret\n":
            break
        time.sleep(0.1)
    assert shared.stdout == "s3cret\n", shared.stderr
    cred = daemon.docker("exec", "pst-kpod-main", "stat", "-c", "%a %n", "/etc/cred/token")
    assert cred.stdout == "400 /etc/cred/token\n", cred.stderr
    df = daemon.docker("exec", "pst-kpod-main", "grep", " /scratch ", "/proc/mounts")
    assert df.stdout.startswith("tmpfs /scratch tmpfs") and "size=4096k" in df.stdout, df.stdout
    # one network namespace for the pod
    ns_main = daemon.docker("exec", "pst-kpod-main", "readlink", "/proc/self/ns/net").stdout
    ns_side = daemon.docker("exec", "pst-kpod-side", "readlink", "/proc/self/ns/net").stdout
    assert ns_main.startswith("net:[") and ns_main == ns_side

    down = portside(daemon, "kube", "down", str(path))
    assert down.returncode == 0, down.stderr
    assert managed(daemon) == ([], [])


@pytest.mark.parametrize(("text", "said"), [
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: a\n", "document 1: not valid YAML at line"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\napiVersion: batch/v1\nkind: Job\n"
     "metadata: {name: j}\n", "document 2 (Job j): field kind: 'Job' is not supported"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c}]\n",
     "document 1 (Pod p): field spec.containers[0].image is missing"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
     "    env: [{name: A, valueFrom: {configMapKeyRef: {name: nope, key: k}}}]\n",
     "field spec.containers[0].env[0].valueFrom.configMapKeyRef: ConfigMap 'nope' is not in the file"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {labels: {}}\n", "document 1 (Pod): field metadata.name is missing"),
])
def test_bad_file_names_document_and_field_and_makes_nothing(daemon: PortsideDaemon, tmp_path: Path,
                                                              text: str, said: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: pst-kbad}\n---\n" + text
                    if "YAML" not in said else text)
    out = portside(daemon, "kube", "play", str(path))
    assert out.returncode == 125
    want = said.replace("document 2", "document 3").replace("document 1", "document 2") if "YAML" not in said \
        else said
    assert want in out.stderr, out.stderr
    assert str(path) in out.stderr
    assert managed(daemon) == ([], [])


def test_failed_start_rolls_back(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                 played: list[Path]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = tmp_path / "pod.yaml"
        path.write_text(POD_WITH_CLAIM.format(port=port))
        played.append(path)
        out = portside(daemon, "kube", "play", str(path))
    assert out.returncode == 125, out.stdout
    assert "nothing was left behind" in out.stderr
    assert managed(daemon) == ([], [])
