"""`kube generate`: containers run on the test daemon with every option the issue names, turned into manifests
that the Kubernetes 1.37 OpenAPI schema accepts (strict), with what cannot be expressed said on stderr."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from engine.kube import quantity
from engine.kube.generate import generate
from tests.api.conftest import PortsideDaemon

from .conftest import portside, validate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _run(daemon: PortsideDaemon, *args: str) -> str:
    out = daemon.docker("run", "-d", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_every_option_maps_and_validates(daemon: PortsideDaemon, busybox: str, names: list[str],
                                         volumes: list[str], tmp_path) -> None:
    tag = os.getpid()
    name, vol = f"pst-kgen-{tag}", f"pst-kvol-{tag}"
    names.append(name)
    volumes.append(vol)
    (tmp_path / "conf").mkdir()
    _run(daemon, "--name", name, "-e", "GREETING=hi there", "-w", "/tmp", "-u", "1000:1001",
         "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD", "--read-only", "-p", "127.0.0.1:18081:80",
         "-p", "18082:81/udp", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50", "--restart", "on-failure",
         "--health-cmd", "true", "--health-interval", "5s", "--health-retries", "4", "--health-timeout", "2s",
         "--label", "tier=web", "--label", "note=has spaces, so an annotation",
         "-v", f"{vol}:/data", "-v", f"{tmp_path / 'conf'}:/conf:ro", "--tmpfs", "/scratch:size=8m",
         busybox, "sleep", "300")
    out = portside(daemon, "kube", "generate", "--service", name)
    assert out.returncode == 0, out.stderr
    docs = list(yaml.safe_load_all(out.stdout))
    for d in docs:
        validate(d)
    kinds = [d["kind"] for d in docs]
    assert kinds == ["PersistentVolumeClaim", "Pod", "Service"], kinds
    claim, pod, svc = docs
    assert claim["metadata"]["name"] == vol
    assert pod["metadata"]["name"] == f"{name}-pod"
    assert pod["metadata"]["labels"] == {"tier": "web", "app": f"{name}-pod"}
    assert pod["metadata"]["annotations"]["note"] == "has spaces, so an annotation"
    assert pod["metadata"]["annotations"][f"io.portside.kube/pids-limit.{name}"] == "50"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "OnFailure"
    (c,) = spec["containers"]
    assert c["name"] == name and c["image"] == busybox
    assert c["args"] == ["sleep", "300"] and "command" not in c  # busybox's Cmd is sh, its Entrypoint none
    assert c["env"] == [{"name": "GREETING", "value": "hi there"}]  # the image's PATH is left out
    assert c["workingDir"] == "/tmp"
    assert c["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1001,
                                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                                    "readOnlyRootFilesystem": True}
    # --service moves the host ports into the Service
    assert sorted((p["containerPort"], p["protocol"]) for p in c["ports"]) == [(80, "TCP"), (81, "UDP")]
    assert not any("hostPort" in p for p in c["ports"])
    assert sorted((p["port"], p["targetPort"], p["protocol"]) for p in svc["spec"]["ports"]) == [
        (18081, 80, "TCP"), (18082, 81, "UDP")]
    assert svc["spec"]["selector"] == {"app": f"{name}-pod"}
    assert c["resources"] == {"limits": {"memory": "64Mi", "cpu": "500m"}}
    assert c["livenessProbe"] == {"exec": {"command": ["/bin/sh", "-c", "true"]}, "periodSeconds": 5,
                                  "timeoutSeconds": 2, "failureThreshold": 4}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    by_name = {v["name"]: v for v in spec["volumes"]}
    assert by_name[mounts["/data"]["name"]] == {"name": vol, "persistentVolumeClaim": {"claimName": vol}}
    assert by_name[mounts["/conf"]["name"]]["hostPath"] == {"path": str(tmp_path / "conf")}
    assert mounts["/conf"]["readOnly"] is True
    assert by_name[mounts["/scratch"]["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Mi"}
    # what Kubernetes cannot say is on stderr
    assert "hostPath" in out.stderr and str(tmp_path / "conf") in out.stderr
    assert "pids limit" in out.stderr
    assert "ClusterIP" in out.stderr  # 18081 is outside the node-port range


def test_shared_network_namespace_is_one_pod_and_deployment(daemon: PortsideDaemon, busybox: str,
                                                            names: list[str]) -> None:
    tag = os.getpid()
    web, side = f"pst-kweb-{tag}", f"pst-kside-{tag}"
    names.extend([web, side])
    _run(daemon, "--name", web, "-p", "127.0.0.1:31080:80", "--restart", "always", busybox, "sleep", "300")
    _run(daemon, "--name", side, "--network", f"container:{web}", "--privileged", busybox, "sleep", "301")
    out = portside(daemon, "kube", "generate", "--type", "deployment", "--service", side, web)
    assert out.returncode == 0, out.stderr
    docs = list(yaml.safe_load_all(out.stdout))
    for d in docs:
        validate(d)
    dep, svc = docs
    assert dep["kind"] == "Deployment" and dep["spec"]["replicas"] == 1
    tmpl = dep["spec"]["template"]
    assert dep["spec"]["selector"]["matchLabels"] == {"app": f"{web}-pod"} == {"app": tmpl["metadata"]["labels"]["app"]}
    containers = tmpl["spec"]["containers"]
    assert [c["name"] for c in containers] == [web, side]  # the namespace owner first
    assert containers[1]["securityContext"] == {"privileged": True}
    assert svc["spec"] == {"type": "NodePort", "selector": {"app": f"{web}-pod"},
                           "ports": [{"name": "80-tcp", "port": 31080, "targetPort": 80, "protocol": "TCP",
                                      "nodePort": 31080}]}


def test_missing_container_is_exit_1(daemon: PortsideDaemon) -> None:
    out = portside(daemon, "kube", "generate", "pst-no-such-container")
    assert out.returncode == 1
    assert "no such container: pst-no-such-container" in out.stderr
    assert out.stdout == ""


def test_unit_shapes_without_a_daemon() -> None:
    """The translation alone: entrypoint and cmd, names as user, CMD-SHELL, anonymous volumes, quantities."""
    c = {"Id": "a" * 64, "Name": "/Web_1", "Image": "sha256:1",
         "Config": {"Image": "nginx", "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
                    "User": "www-data", "Env": ["PATH=/usr/bin"],
                    "Healthcheck": {"Test": ["CMD-SHELL", "wget -q -O- localhost"], "Interval": 1_500_000_000},
                    "Labels": {"com.docker.compose.project": "demo"}},
         "HostConfig": {"NetworkMode": "bridge", "RestartPolicy": {"Name": "unless-stopped"}, "CpuShares": 512,
                        "Memory": 100_000_000},
         "Mounts": [{"Type": "volume", "Name": "f" * 64, "Destination": "/cache", "RW": True}]}
    out = generate([c], {"sha256:1": {"Config": {"Env": ["PATH=/usr/bin"], "Cmd": ["nginx"]}}})
    (pod,) = out.docs
    validate(pod)
    assert pod["metadata"]["name"] == "web-1-pod"
    (spec,) = pod["spec"]["containers"]
    assert spec["command"] == ["/docker-entrypoint.sh"] and spec["args"] == ["nginx", "-g", "daemon off;"]
    assert "env" not in spec
    assert spec["livenessProbe"]["exec"]["command"] == ["/bin/sh", "-c", "wget -q -O- localhost"]
    assert spec["livenessProbe"]["periodSeconds"] == 2
    assert spec["resources"] == {"limits": {"memory": "100000000"}, "requests": {"cpu": "500m"}}
    assert pod["spec"]["volumes"][0]["emptyDir"] == {}
    assert pod["metadata"]["labels"]["com.docker.compose.project"] == "demo"
    text = json.dumps(out.warnings)
    for said in ("www-data", "unless-stopped", "anonymous volume", "rounded up"):
        assert said in text, (said, out.warnings)
    assert quantity.bytes_of("512Mi") == 512 << 20 and quantity.nanocpus_of("250m") == 250_000_000
    assert quantity.bytes_of("1G") == 10**9 and quantity.cpu(1_500_000_000) == "1500m"
