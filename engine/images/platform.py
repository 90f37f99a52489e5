"""Platforms (`os/arch[/variant]`): the host's, parsing `--platform`, and choosing from a manifest list."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidArgument, NotFound

_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    def normalized(self) -> Platform:
        arch = _ARCH.get(self.architecture, self.architecture)
        variant = self.variant
        if arch == "arm64" and variant == "v8":
            variant = ""
        if arch == "amd64" and variant == "v1":
            variant = ""
        return Platform(self.os.lower(), arch, variant)

    def matches(self, other: Platform) -> bool:
        a, b = self.normalized(), other.normalized()
        if a.os != b.os or a.architecture != b.architecture:
            return False
        return not a.variant or not b.variant or a.variant == b.variant


def host() -> Platform:
    machine = _platform.machine()
    arch = _ARCH.get(machine, machine)
    variant = ""
    if machine == "armv7l":
        variant = "v7"
    elif machine == "armv6l":
        variant = "v6"
    return Platform("linux", arch, variant)


def parse(spec: str) -> Platform:
    parts = spec.strip().split("/")
    if not spec or len(parts) > 3 or not all(parts):
        raise InvalidArgument(f"\"{spec}\": unknown operating system or architecture: invalid argument")
    if len(parts) == 1:
        # A bare architecture means linux, as in containerd's platforms.Parse.
        if parts[0] in _ARCH or parts[0] in _ARCH.values():
            return Platform("linux", parts[0]).normalized()
        return Platform(parts[0], host().architecture).normalized()
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "").normalized()


def of_descriptor(desc: dict[str, Any]) -> Platform | None:
    p = desc.get("platform")
    if not isinstance(p, dict):
        return None
    return Platform(p.get("os", ""), p.get("architecture", ""), p.get("variant", "") or "")


def choose(manifests: list[dict[str, Any]], want: Platform) -> dict[str, Any]:
    """The best entry of an index for `want`: exact variant first, then any compatible one."""
    candidates = []
    for d in manifests:
        p = of_descriptor(d)
        if p is None or p.os == "unknown":
            continue  # attestation manifests and the like
        if p.matches(want):
            exact = p.normalized() == want.normalized()
            candidates.append((0 if exact else 1, d))
    if not candidates:
        raise NotFound(f"no matching manifest for {want} in the manifest list entries")
    candidates.sort(key=lambda c: c[0])
    return candidates[0][1]
