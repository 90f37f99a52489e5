"""Names and labels both sides share: what play stamps on what it makes, and Kubernetes' naming rules."""

from __future__ import annotations

import re

PREFIX = "io.portside.kube."
MANAGED = PREFIX + "managed"  # "true" on every container and volume `kube play` made (what `kube down` removes)
OWNER = PREFIX + "owner"  # "Pod/web", "Deployment/web", "PersistentVolumeClaim/data": the document it came from
POD = PREFIX + "pod"  # the pod a container belongs to
CONTAINER = PREFIX + "container"  # the container's name inside its pod
ANNOTATIONS = PREFIX + "annotations"  # the pod's annotations, JSON (the Engine API has no annotations)
BALANCED = PREFIX + "balanced"  # JSON PortBindings of Service ports a balancer publishes for this pod
PIDS_ANNOTATION = "io.portside.kube/pids-limit"  # + ".<container>": a limit Kubernetes has no per-pod field for

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def dns_name(name: str, limit: int = 63) -> str:
    """A container name as a DNS-1123 label (Pod, container and volume names must be one)."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower().lstrip("/")).strip("-")[:limit].strip("-")
    return out or "container"


def is_dns_name(name: str, limit: int = 63) -> bool:
    return len(name) <= limit and bool(_DNS1123.match(name))


def is_label(key: str, value: str) -> bool:
    """Whether Kubernetes takes key=value as a label (else it goes into the annotations)."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not all(_DNS1123.match(p) for p in prefix.split("."))):
        return False
    return (0 < len(name) <= 63 and bool(_LABEL_NAME.match(name)) and len(value) <= 63
            and bool(_LABEL_VALUE.match(value)))


def ours(key: str) -> bool:
    return key.startswith(PREFIX)
