"""The API tests' daemon and images, and a check that a manifest is what the Kubernetes API would take."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.api.conftest import PortsideDaemon, busybox, daemon, names  # noqa: F401  (fixtures used here)
from tests.testbed.registry import Registry

# The schemas kubernetes-validate ships for this release (offline: they are package data, not downloaded).
K8S_VERSION = "1.37.0"
ROOT = Path(__file__).resolve().parents[2]


def validate(doc: dict[str, Any]) -> None:
    """Raises kubernetes_validate.ValidationError unless `doc` fits the Kubernetes OpenAPI schema (strict:
    an unknown field fails too)."""
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.fixture(scope="session")
def nginx(daemon: PortsideDaemon, registry: Registry) -> str:  # noqa: F811
    src = f"{registry.host}/testbed/nginx:latest"
    out = daemon.docker("pull", "-q", src)
    assert out.returncode == 0, out.stderr
    assert daemon.docker("tag", src, "nginx:latest").returncode == 0
    return "nginx:latest"


def portside(daemon: PortsideDaemon, *args: str, input: str | None = None,  # noqa: F811
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real `portside` command (python -m app.cli) against the test daemon."""
    env = dict(os.environ, DOCKER_HOST=daemon.host, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "app.cli", *args], input=input, capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture
def volumes(daemon: PortsideDaemon) -> Iterator[list[str]]:  # noqa: F811
    """Volume names a test makes; removed afterwards."""
    made: list[str] = []
    yield made
    for v in made:
        daemon.docker("volume", "rm", "-f", v)
