"""Session fixtures shared by every test: the offline image test bed and the registries that serve it."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import leaks
from tests.testbed import images
from tests.testbed.registry import Registry, fill

_before: set[str] = set()


def pytest_sessionstart(session: pytest.Session) -> None:
    _before.update(leaks.snapshot())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Session fixtures are torn down by now: whatever carries a test name and is new is a leak.
    leaked = sorted(leaks.snapshot() - _before)
    # some things go asynchronously (the kernel destroys a removed sandbox's veth with its netns): let them settle
    deadline = time.monotonic() + 3
    while any(x.startswith("link ") for x in leaked) and time.monotonic() < deadline:
        time.sleep(0.1)
        leaked = sorted(leaks.snapshot() - _before)
    if not leaked:
        return
    print("\nLEAKED by this test session (mounts, links, netns, cgroups, nft tables, processes):", flush=True)
    for item in leaked:
        print(f"  {item}", flush=True)
    # Other sessions on a developer's machine can create such resources meanwhile; CI runs alone.
    if os.environ.get("CI") and session.exitstatus == 0:
        session.exitstatus = 1


@dataclass(frozen=True)
class TestBed:
    __test__ = False  # a fixture's value, not a test class

    busybox_rootfs: Path
    nginx_rootfs: Path
    layouts: dict[str, Path]


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the test bed builds root filesystems with real owners and needs root")


@pytest.fixture(scope="session")
def testbed() -> TestBed:
    """The test images, built from Debian packages once and cached on disk between runs."""
    _need_root()
    built = images.ensure_built()
    return TestBed(built.busybox_rootfs, built.nginx_rootfs, built.layouts)


@pytest.fixture(scope="session")
def registry(testbed: TestBed) -> Iterator[Registry]:
    """Debian's docker-registry on 127.0.0.1 (plain HTTP) holding every image of the test bed."""
    if not shutil.which("docker-registry") or not shutil.which("skopeo"):
        pytest.fail("docker-registry and skopeo are test dependencies: run ./scripts/install --test")
    workdir = Path(tempfile.mkdtemp(prefix="portside-test-registry-"))
    reg = Registry(workdir)
    try:
        reg.start()
        fill(reg, testbed.layouts)
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def auth_registry(testbed: TestBed) -> Iterator[Registry]:
    """A second registry with TLS (a CA made here) and htpasswd basic auth, holding testbed/busybox:latest."""
    workdir = Path(tempfile.mkdtemp(prefix="portside-test-authreg-"))
    reg = Registry(workdir, tls=True, username="portside", password="s3cret-test-pw")
    try:
        reg.start()
        reg.push_layout(testbed.layouts["busybox"], "latest", "testbed/busybox:latest", fmt="v2s2")
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
