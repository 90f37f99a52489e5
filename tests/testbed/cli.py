"""The docker CLI against a test engine, dockerd or portside alike."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# the docker 28 CLI where scripts/install puts it, else Debian's
DOCKER = shutil.which("docker", path="/usr/local/bin") or "docker"


def docker(host: str, config_dir: Path, *args: str, input: str | None = None, timeout: float = 120,
           cli: str = DOCKER) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run `cli -H host args...` with a config dir of its own (no user's config, no stray login); never raises on
    a non-zero exit: the tests read its returncode and stderr."""
    return subprocess.run([cli, "-H", host, *args], capture_output=True, text=True, input=input, timeout=timeout,
                          check=False, env={**os.environ, "DOCKER_CONFIG": str(config_dir)})  # fmt: skip
