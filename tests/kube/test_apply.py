"""`kube apply` against a recording HTTP stub on 127.0.0.1 (no cluster can run here): what the official client
sends for each kind (server-side apply, dry run), the checks against the client's models before anything is
sent, and the words when no cluster is configured or reachable."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from engine.kube.cluster import build
from engine.kube.manifests import load
from tests.api.conftest import PortsideDaemon

from .conftest import ROOT, portside

pytestmark = pytest.mark.timeout(120)


@dataclass
class Stub:
    url: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def stub() -> Iterator[Stub]:
    """An API server stand-in that records each request and answers with the object it was sent."""
    box: list[Stub] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            parts = urlsplit(self.path)
            s = box[0]
            s.seen.append({"method": "PATCH", "path": parts.path, "query": parse_qs(parts.query),
                           "content_type": self.headers.get("Content-Type"), "body": body})
            out = json.dumps(body if s.status == 200 else
                             {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "message": "admission webhook said no", "code": s.status}).encode()
            self.send_response(s.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Stub(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "pst-stub",
        "clusters": [{"name": "pst-stub", "cluster": {"server": server}},
                     {"name": "pst-other", "cluster": {"server": server}}],
        "users": [{"name": "pst-user", "user": {"token": "pst-token"}}],
        "contexts": [{"name": "pst-stub", "context": {"cluster": "pst-stub", "user": "pst-user",
                                                       "namespace": "pst-ns"}},
                     {"name": "pst-other", "context": {"cluster": "pst-other", "user": "pst-user"}}],
    }))
    return path


def kube(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "DOCKER_HOST")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "app.cli", "kube", "apply", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT)


EXAMPLE = str(ROOT / "examples" / "kube" / "web.yaml")


def test_server_dry_run_sends_a_server_side_apply_per_document(stub: Stub, tmp_path: Path) -> None:
    cfg = kubeconfig(tmp_path / "config", stub.url)
    out = kube(EXAMPLE, "--kubeconfig", str(cfg), "--dry-run=server", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "configmap/web-content applied in pst-ns (server dry run)",
        "deployment/web applied in pst-ns (server dry run)",
        "service/web applied in pst-ns (server dry run)"]
    assert [s["path"] for s in stub.seen] == ["/api/v1/namespaces/pst-ns/configmaps/web-content",
                                              "/apis/apps/v1/namespaces/pst-ns/deployments/web",
                                              "/api/v1/namespaces/pst-ns/services/web"]
    originals = list(yaml.safe_load_all(Path(EXAMPLE).read_text()))
    for seen, doc in zip(stub.seen, originals, strict=True):
        assert seen["method"] == "PATCH"
        assert seen["content_type"] == "application/apply-patch+yaml"
        assert seen["query"] == {"dryRun": ["All"], "fieldManager": ["portside"], "force": ["true"]}
        doc["metadata"]["namespace"] = "pst-ns"
        assert seen["body"] == doc  # the manifest as written, namespaced


def test_context_and_namespace_flags(stub: Stub, tmp_path: Path) -> None:
    cfg = kubeconfig(tmp_path / "config", stub.url)
    out = kube(EXAMPLE, "--kubeconfig", str(cfg), "--context", "pst-other", "-n", "pst-team", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert {s["path"].split("/")[-3] for s in stub.seen} == {"pst-team"}
    assert all("dryRun" not in s["query"] for s in stub.seen)
    # no -n and a context without a namespace: default
    stub.seen.clear()
    out = kube(EXAMPLE, "--kubeconfig", str(cfg), "--context", "pst-other", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert {s["path"].split("/")[-3] for s in stub.seen} == {"default"}
    bad = kube(EXAMPLE, "--kubeconfig", str(cfg), "--context", "pst-nope", home=tmp_path)
    assert bad.returncode == 1 and "context 'pst-nope' is not in" in bad.stderr


def test_cluster_refusal_is_reported(stub: Stub, tmp_path: Path) -> None:
    stub.status = 403
    cfg = kubeconfig(tmp_path / "config", stub.url)
    out = kube(EXAMPLE, "--kubeconfig", str(cfg), home=tmp_path)
    assert out.returncode == 1
    assert "ConfigMap pst-ns/web-content: the cluster answered 403 admission webhook said no" in out.stderr
    assert len(stub.seen) == 1  # it stops at the first refusal


def test_no_cluster_configured_or_reachable(tmp_path: Path) -> None:
    out = kube(EXAMPLE, home=tmp_path)
    assert out.returncode == 1
    assert f"no cluster configured: there is no kubeconfig at {tmp_path}/.kube/config" in out.stderr
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = kubeconfig(tmp_path / "config", f"http://127.0.0.1:{port}")
    out = kube(EXAMPLE, "--kubeconfig", str(cfg), home=tmp_path)
    assert out.returncode == 1
    assert f"no cluster is reachable at http://127.0.0.1:{port}" in out.stderr


def test_client_dry_run_checks_against_the_models_and_sends_nothing(tmp_path: Path) -> None:
    out = kube(EXAMPLE, "--dry-run=client", home=tmp_path)  # no kubeconfig needed: nothing is sent
    assert out.returncode == 0, out.stderr
    docs = list(yaml.safe_load_all(out.stdout))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service"]
    assert all(d["metadata"]["namespace"] == "default" for d in docs)
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
                   "  - {name: c, image: busybox, imagePullPolicy: Always, portz: [80]}\n")
    out = kube(str(bad), "--dry-run=client", home=tmp_path)
    assert out.returncode == 125
    assert "document 1 (Pod p): field spec.containers[0].portz: unknown to Pod" in out.stderr


def test_models_reject_wrong_types_before_sending() -> None:
    docs = load("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
                "spec: {replicas: two, selector: {matchLabels: {a: b}}, template: {}}\n", "f.yaml")
    with pytest.raises(Exception, match=r"f.yaml: document 1 \(Deployment d\): not a valid Deployment: .*replicas"):
        build(docs, "default")
    with pytest.raises(Exception, match=r"metadata.namespace: 'a' is not the namespace given \('b'\)"):
        build(load("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: a}\n"), "b", namespace_given=True)


@pytest.mark.integration
def test_apply_names_generates_for_containers(daemon: PortsideDaemon, busybox: str, names: list[str],
                                               stub: Stub, tmp_path: Path) -> None:
    name = f"pst-kapply-{os.getpid()}"
    names.append(name)
    assert daemon.docker("run", "-d", "--name", name, busybox, "sleep", "300").returncode == 0
    cfg = kubeconfig(tmp_path / "config", stub.url)
    out = portside(daemon, "kube", "apply", name, "--kubeconfig", str(cfg), "--type", "deployment")
    assert out.returncode == 0, out.stderr
    (seen,) = stub.seen
    assert seen["path"] == f"/apis/apps/v1/namespaces/pst-ns/deployments/{name}-pod"
    assert seen["body"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["sleep", "300"]
