"""The cgroup v2 code on this hybrid host's unified hierarchy (no controllers there, but freeze and kill work)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from engine.exec.cgroups import Cgroup

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

UNIFIED = "/sys/fs/cgroup/unified"


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not os.path.exists(UNIFIED + "/cgroup.procs"), reason="no cgroup2 mount at " + UNIFIED)
def test_v2_create_freeze_kill_delete() -> None:
    parent = f"portside-test-v2-{uuid.uuid4().hex[:6]}"
    cg = Cgroup(f"{parent}/c1", v2_root=UNIFIED)
    cg.create()
    proc = subprocess.Popen(["sleep", "30"])
    try:
        cg.add(proc.pid)
        assert cg.procs() == [proc.pid]
        cg.freeze()
        assert cg.frozen()
        cg.thaw()
        assert not cg.frozen()
        cg.kill_all()  # cgroup.kill
        assert proc.wait(5) == -9
        deadline = time.monotonic() + 5
        while cg.procs() and time.monotonic() < deadline:
            time.sleep(0.01)
        cg.delete()
        assert not cg.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for d in (f"{UNIFIED}/{parent}/c1", f"{UNIFIED}/{parent}"):
            if os.path.isdir(d):
                os.rmdir(d)
