"""Fixtures for the runtime's tests: one Runtime per session under a `portside-test-<random>` cgroup parent, and
bundles whose rootfs is an overlay over the shared busybox rootfs (which is never written)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.exec import cgroups, spec
from engine.exec.runtime import Runtime


@pytest.fixture(scope="session")
def runtime() -> Iterator[Runtime]:
    base = Path(tempfile.mkdtemp(prefix="portside-test-exec-"))
    rt = Runtime(base / "exec", f"portside-test-{uuid.uuid4().hex[:8]}")
    try:
        yield rt
    finally:
        left = rt.list()
        for cid in left:
            with contextlib.suppress(Exception):
                asyncio.run(rt.delete(cid, force=True))
        rt.close()
        cgroups.remove_parent(rt.cgroup_parent)
        leftover_cgroups = [d for d in Path("/sys/fs/cgroup").glob(f"*/{rt.cgroup_parent}") if d.exists()]
        shutil.rmtree(base, ignore_errors=True)
        # every test removes what it made: containers, their cgroups and exec-root directories
        assert not left, f"containers left in the exec-root: {left}"
        assert not leftover_cgroups, f"cgroups left: {leftover_cgroups}"


@dataclass
class Bundle:
    dir: Path
    spec: dict[str, Any]
    log: Path

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    def logs(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stream(self, name: str) -> str:
        return "".join(e["log"] for e in self.logs() if e["stream"] == name)


MakeBundle = Callable[..., Bundle]


@pytest.fixture
def make_bundle(testbed: Any) -> Iterator[MakeBundle]:
    made: list[Path] = []

    def make(cmd: list[str] | None = None, config: dict[str, Any] | None = None,
             host_config: dict[str, Any] | None = None, netns: str | None = None) -> Bundle:  # fmt: skip
        base = Path(tempfile.mkdtemp(prefix="portside-test-bundle-"))
        made.append(base)
        for d in ("rootfs", "upper", "work"):
            (base / d).mkdir()
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={testbed.busybox_rootfs},upperdir={base}/upper,workdir={base}/work", str(base / "rootfs")],
            check=True,
        )  # fmt: skip
        cfg = dict(config or {})
        if cmd is not None:
            cfg["Cmd"] = cmd
        cfg.setdefault("Hostname", "pst-" + base.name[-6:].lower())
        oci = spec.build(cfg, host_config or {}, {}, rootfs=base / "rootfs", netns=netns)
        (base / "config.json").write_text(json.dumps(oci))
        return Bundle(base, oci, base / "container.log")

    try:
        yield make
    finally:
        for base in made:
            subprocess.run(["umount", "-l", str(base / "rootfs")], check=False, capture_output=True)
            shutil.rmtree(base, ignore_errors=True)


def new_id() -> str:
    return "pst" + uuid.uuid4().hex[:12]


async def run(rt: Runtime, b: Bundle, **kw: Any) -> Any:
    """create + start + wait + delete; returns the exit state."""
    cid = new_id()
    await rt.create(cid, b.dir, log_path=b.log, **kw)
    try:
        await rt.start(cid)
        return await asyncio.wait_for(rt.wait(cid), 60)
    finally:
        await rt.delete(cid, force=True)
