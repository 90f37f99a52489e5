"""Fetching Debian packages as .deb files and extracting them, with a cache shared between runs."""

from __future__ import annotations

import subprocess
from pathlib import Path


def candidate_version(package: str) -> str:
    """The version apt would install: part of the cache key, so a Debian update rebuilds the images."""
    out = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                return version
    raise RuntimeError(f"apt knows no candidate version of {package}; run apt-get update")


def download(packages: list[str], dest: Path) -> dict[str, Path]:
    """Download each package's .deb into dest (kept as a cache) and return package -> .deb path."""
    dest.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for pkg in packages:
        version = candidate_version(pkg).replace(":", "%3a")
        hits = sorted(dest.glob(f"{pkg}_{version}_*.deb"))
        if hits:
            found[pkg] = hits[0]
        else:
            missing.append(pkg)
    if missing:
        cmd = ["apt-get", "download", "-q", *missing]
        res = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, timeout=600, check=False)
        if res.returncode != 0:
            # Lists may be missing on a fresh machine: update once and try again.
            subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600, capture_output=True)
            subprocess.run(cmd, cwd=dest, check=True, timeout=600, capture_output=True)
        for pkg in missing:
            version = candidate_version(pkg).replace(":", "%3a")
            hits = sorted(dest.glob(f"{pkg}_{version}_*.deb"))
            if not hits:
                raise RuntimeError(f"apt-get download {pkg} left no .deb in {dest}")
            found[pkg] = hits[0]
    return found


def extract(deb: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True, timeout=300)
