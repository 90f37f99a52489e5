"""Manifests to the requests `portside kube apply` sends a cluster with the official `kubernetes` client.

Each document becomes a server-side apply (PATCH, application/apply-patch+yaml, fieldManager=portside, force),
which creates or updates as `kubectl apply --server-side` does. The body is the client's own model of the kind
(`V1Pod.from_dict` ...), so a wrong type fails here, before anything is sent; a field the model does not know
(which the model would drop without a word) is an error too, as kubectl's strict field validation makes it.
No I/O here: app/kube_cli.py sends what this builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.kube.manifests import Manifest, ManifestError, where

FIELD_MANAGER = "portside"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"

# kind -> (apiVersion, the client's API class, the method suffix, the model class)
KINDS: dict[str, tuple[str, str, str, str]] = {
    "Pod": ("v1", "CoreV1Api", "namespaced_pod", "V1Pod"),
    "Service": ("v1", "CoreV1Api", "namespaced_service", "V1Service"),
    "ConfigMap": ("v1", "CoreV1Api", "namespaced_config_map", "V1ConfigMap"),
    "Secret": ("v1", "CoreV1Api", "namespaced_secret", "V1Secret"),
    "PersistentVolumeClaim": ("v1", "CoreV1Api", "namespaced_persistent_volume_claim", "V1PersistentVolumeClaim"),
    "Deployment": ("apps/v1", "AppsV1Api", "namespaced_deployment", "V1Deployment"),
}


@dataclass
class ApplyRequest:
    kind: str
    name: str
    namespace: str
    api: str  # the client's API class name
    method: str  # e.g. patch_namespaced_pod
    body: dict[str, Any]  # the model, serialized by the client's own ApiClient

    def kwargs(self, dry_run: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "body": self.body,
                               "field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY_CONTENT_TYPE}
        if dry_run:
            out["dry_run"] = "All"
        return out


def build(docs: list[Manifest], namespace: str, namespace_given: bool = False) -> list[ApplyRequest]:
    """The requests for `docs`, in file order (ConfigMaps before the Pods that use them, as written)."""
    from kubernetes import client

    serializer = client.ApiClient()
    out: list[ApplyRequest] = []
    for d in docs:
        w = where(d)
        kind = d.get("kind", "")
        if kind not in KINDS:
            raise ManifestError(w, f"field kind: {kind!r} is not one kube apply sends (it takes {', '.join(KINDS)})")
        api_version, api, suffix, model_name = KINDS[kind]
        if d.get("apiVersion") != api_version:
            raise ManifestError(w, f"field apiVersion: {kind} is {api_version}, not {d.get('apiVersion')!r}")
        body = {k: v for k, v in d.items() if k != "_where"}
        ns = (body.get("metadata") or {}).get("namespace")
        if ns and namespace_given and ns != namespace:
            raise ManifestError(w, f"field metadata.namespace: {ns!r} is not the namespace given ({namespace!r})")
        ns = ns or namespace
        body = {**body, "metadata": {**body["metadata"], "namespace": ns}}
        try:
            model = getattr(client, model_name).from_dict(body)
        except Exception as e:  # pydantic's ValidationError: its text names the nested model and field
            raise ManifestError(w, f"not a valid {kind}: {_first_lines(str(e))}") from e
        sent = serializer.sanitize_for_serialization(model)
        dropped = _dropped(body, sent)
        if dropped:
            raise ManifestError(w, f"field {dropped}: unknown to {kind} (not in the client's {model_name})")
        out.append(ApplyRequest(kind, body["metadata"]["name"], ns, api, f"patch_{suffix}", sent))
    return out


def _first_lines(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.strip().startswith("For further")]
    return "; ".join(lines[:3])


def _dropped(given: Any, sent: Any, path: str = "") -> str | None:
    """The first field of `given` that the model did not keep (None and empty values aside)."""
    if isinstance(given, dict):
        if not isinstance(sent, dict):
            return path or "."
        for k, v in given.items():
            sub = f"{path}.{k}" if path else str(k)
            if k not in sent:
                if v not in (None, {}, []):
                    return sub
                continue
            found = _dropped(v, sent[k], sub)
            if found:
                return found
    elif isinstance(given, list) and isinstance(sent, list):
        for i, (a, b) in enumerate(zip(given, sent, strict=False)):
            found = _dropped(a, b, f"{path}[{i}]")
            if found:
                return found
    return None
